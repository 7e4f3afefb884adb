"""Dense vs compressed SmolLM2, and the compressed model in memory vs its reloaded checkpoint.

Compresses the bundled SmolLM2 with a calibration set from the offline
``wiki`` source, evaluates the in-memory result, saves a compressed-tensors
checkpoint, reloads it through ``evaluate(path)`` and prints both tables and
their largest difference (expected: 0).  Prints, never asserts on time.

    python benchmarks/bench_eval_compressed_reload.py --method wanda --tasks ppl:wiki,arc_easy --limit 50
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--method", default="wanda")
    parser.add_argument("--sparsity", type=float, default=0.5)
    parser.add_argument("--tasks", default="ppl:wiki,arc_easy")
    parser.add_argument("--limit", type=int, default=50)
    parser.add_argument("--max-windows", type=int, default=4)
    parser.add_argument("--calib-n", type=int, default=16)
    parser.add_argument("--calib-seq-len", type=int, default=256)
    args = parser.parse_args()

    from calibench.compress import compress
    from calibench.data.draw import build_calibration_set
    from calibench.evaluation import evaluate
    from calibench.models import load_model, load_tokenizer

    tokenizer = load_tokenizer(args.model)
    model = load_model(args.model)
    common = dict(tokenizer=tokenizer, limit=args.limit, max_windows=args.max_windows)

    t = time.perf_counter()
    dense = evaluate(model, args.tasks, **common)
    print(f"dense evaluated in {time.perf_counter() - t:.0f} s")

    calib = build_calibration_set("wiki", tokenizer, n=args.calib_n, seq_len=args.calib_seq_len, seed=0)
    t = time.perf_counter()
    params = {"sparsity": args.sparsity} if args.method in ("wanda", "sparsegpt", "magnitude") else {}
    result = compress(model, calib, args.method, tokenizer=tokenizer, **params)
    print(f"{args.method} compressed in {time.perf_counter() - t:.0f} s")

    t = time.perf_counter()
    in_memory = evaluate(result.model, args.tasks, **common)
    print(f"in-memory evaluated in {time.perf_counter() - t:.0f} s")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ckpt"
        result.save(path, tokenizer)
        t = time.perf_counter()
        reloaded = evaluate(str(path), args.tasks, limit=args.limit, max_windows=args.max_windows)
        print(f"reloaded checkpoint evaluated in {time.perf_counter() - t:.0f} s")

    print(f"\n{'task':<12} {'metric':<11} {'dense':>9} {'in-memory':>10} {'reloaded':>10} {'|diff|':>8}")
    worst = 0.0
    for d, m, r in zip(dense.rows, in_memory.rows, reloaded.rows):
        diff = abs(m.value - r.value)
        worst = max(worst, diff)
        print(f"{m.task:<12} {m.metric:<11} {d.value:>9.4f} {m.value:>10.4f} {r.value:>10.4f} {diff:>8.2g}")
    print(
        f"largest in-memory vs reloaded difference: {worst:.3g} "
        f"(n and limit: {[(r.n, r.limit) for r in reloaded.rows]})"
    )


if __name__ == "__main__":
    main()
