"""Calibration batch size: compress() wall time at batch 1 vs 4 vs 8, and what it does to the result.

For each method (GPTQ W4 g64, Wanda 50%, and RTN W4 g64 as a control: RTN
runs no calibration forward, so its time should not move) and each batch
size, a freshly loaded bundled model (loaded before the clock starts) is
compressed with ``calibench.compress.compress(..., calib_batch_size=B)`` on
the same calibration set; printed per method:

* the median wall time over ``--reps`` runs per batch size and the ratio to
  batch 1 (the speed-up);
* the compressed weights against batch 1's: identical tensors, or the share
  of weights that differ and the largest difference;
* held-out wiki perplexity of each result and its difference to batch 1.

Batch sizes run interleaved per rep (1, 4, 8, 1, 4, 8...) so drift in the
machine's load hits all of them alike.  With ``--ragged`` the windows of the
same set are cut to lengths drawn in [seq_len/4, seq_len] (seeded): calibench
batches only windows of one length (nothing padded), so the forward-pass count
shows how much batching such a set allows.

    python benchmarks/bench_calib_batch.py --methods gptq,wanda,rtn --batches 1,4,8 --n 32 --seq-len 256 [--ragged]

Numbers depend on the machine and its load; the ratios are what to read.
Not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("LLM_COMPRESSOR_LOG_LEVEL", "WARNING")

METHODS: dict[str, tuple[str, dict[str, Any]]] = {
    "gptq": ("gptq", {"bits": 4, "group_size": 64}),
    "wanda": ("wanda", {"sparsity": 0.5}),
    "sparsegpt": ("sparsegpt", {"sparsity": 0.5}),
    "rtn": ("rtn", {"bits": 4, "group_size": 64}),
}


def ragged(calib: Any, tokenizer: Any, seed: int) -> Any:
    """The same windows cut to seeded random lengths in [seq_len/4, seq_len] (the rest masked)."""
    import numpy as np

    from calibench.data.calibset import CalibrationSet

    n, length = calib.input_ids.shape
    rng = np.random.default_rng(seed)
    lengths = rng.integers(length // 4, length + 1, size=n)
    mask = (np.arange(length)[None, :] < lengths[:, None]).astype(np.uint8)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    ids = np.where(mask == 1, calib.input_ids, pad)
    return CalibrationSet.create(
        ids, tokenizer, source=calib.manifest.source, sampling=calib.manifest.sampling, seed=calib.manifest.seed,
        attention_mask=mask,
    )  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--methods", default="gptq,wanda,rtn")
    ap.add_argument("--batches", default="1,4,8")
    ap.add_argument("--n", type=int, default=32)
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--reps", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--ragged", action="store_true", help="cut windows to random lengths (padded batches)")
    ap.add_argument("--ppl-windows", type=int, default=16, help="held-out wiki windows for the perplexity")
    ap.add_argument("--json", default=None, help="also write the numbers here")
    args = ap.parse_args()

    import torch

    from calibench.compress import compress
    from calibench.data.builders import build_sets
    from calibench.evaluation import evaluate
    from calibench.models import load_model, load_tokenizer

    batches = [int(b) for b in args.batches.split(",")]
    tokenizer = load_tokenizer(args.model)
    calib = build_sets("wiki", model=args.model, n=args.n, seq_len=args.seq_len, seed=args.seed)[0]
    if args.ragged:
        calib = ragged(calib, tokenizer, args.seed)
    print(
        f"{args.model}, set {calib.n} x {calib.seq_len} ({calib.num_tokens} real tokens"
        f"{', ragged' if args.ragged else ''}), "
        f"torch threads {torch.get_num_threads()}, reps {args.reps}"
    )
    results: dict[str, Any] = {}
    for name in args.methods.split(","):
        method, params = METHODS[name]
        walls: dict[int, list[float]] = {b: [] for b in batches}
        weights: dict[int, dict[str, torch.Tensor]] = {}
        ppl: dict[int, float] = {}
        passes: dict[int, int] = {}
        for rep in range(args.reps):
            for batch in batches:
                model = load_model(args.model, dtype="float32", device="cpu")
                started = time.perf_counter()
                result = compress(model, calib, method, tokenizer=tokenizer, seed=args.seed,
                                  calib_batch_size=batch, **params)  # fmt: skip
                walls[batch].append(time.perf_counter() - started)
                passes[batch] = result.record["calibration"]["forward_passes"]
                if rep == 0:
                    weights[batch] = {k: v.detach().clone() for k, v in model.state_dict().items()}
                    ev = evaluate(model, ["ppl:wiki"], tokenizer=tokenizer, max_windows=args.ppl_windows,
                                  seq_len=args.seq_len, offline=True)  # fmt: skip
                    ppl[batch] = ev.value("ppl:wiki")
                del model
        base = statistics.median(walls[batches[0]])
        print(f"\n{name} {params}", flush=True)
        print(
            f"  {'batch':>5} {'wall s':>8} {'speed-up':>8} {'passes':>7} {'ppl':>9} {'d ppl':>9}  "
            f"weights vs batch {batches[0]}"
        )
        rows = []
        for batch in batches:
            wall = statistics.median(walls[batch])
            ref, got = weights[batches[0]], weights[batch]
            differ = sum(int((ref[k] != got[k]).sum()) for k in ref if ref[k].is_floating_point())
            total = sum(ref[k].numel() for k in ref if ref[k].is_floating_point())
            largest = max(float((ref[k] - got[k]).abs().max()) for k in ref if ref[k].is_floating_point())
            same = "identical" if differ == 0 else f"{differ / total:.4%} differ, max |diff| {largest:.3g}"
            print(
                f"  {batch:>5} {wall:>8.1f} {base / wall:>7.2f}x {passes[batch]:>7} {ppl[batch]:>9.4f} "
                f"{ppl[batch] - ppl[batches[0]]:>+9.4f}  {same}",
                flush=True,
            )
            rows.append({"batch": batch, "wall_s": walls[batch], "speedup": base / wall,
                         "forward_passes": passes[batch], "ppl": ppl[batch], "weights_differ": differ,
                         "weights_total": total, "max_abs_diff": largest})  # fmt: skip
        results[name] = rows
        if args.json:  # after each method: a long run that is cut off keeps what it measured
            with open(args.json, "w", encoding="utf-8") as fh:
                json.dump({"args": vars(args), "results": results}, fh, indent=1)


if __name__ == "__main__":
    main()
