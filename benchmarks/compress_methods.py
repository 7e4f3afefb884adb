"""Every compression method on the bundled SmolLM2 with one 16 x 256 `wiki` set, on this machine.

For each method: wall time (and its ratio to RTN, measured in the same run),
achieved sparsity and bits per weight, perplexity on held-out `wiki` windows,
and whether the saved checkpoint reloads to the same logits.  Run:

    python benchmarks/compress_methods.py [--methods gptq,wanda] [--max-windows 32]

Numbers depend on the machine and its load; compare ratios, not seconds.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from calibench.compress import compress
from calibench.core.nll import window_nll
from calibench.data.draw import build_calibration_set
from calibench.models import load_model, load_tokenizer

RUNS = {
    "dense": ("", {}),
    "rtn W4 g64": ("rtn", {"bits": 4, "group_size": 64}),
    "gptq W4 g64": ("gptq", {"bits": 4, "group_size": 64}),
    "awq W4 g64": ("awq", {"bits": 4, "group_size": 64}),
    "sparsegpt 50%": ("sparsegpt", {"sparsity": 0.5}),
    "wanda 50%": ("wanda", {"sparsity": 0.5}),
    "wanda 2:4": ("wanda", {"structure": "2:4"}),
    "magnitude 50%": ("magnitude", {"sparsity": 0.5}),
    "sparsegpt 2:4 + gptq W4 g64": ("sparsegpt+gptq", {"structure": "2:4", "bits": 4, "group_size": 64}),
    # compressed-tensors preset schemes (W4A16's and W8A16's groups of 128 do not divide SmolLM2's 576: refused)
    "w8a8 int8": ("w8a8", {}),
    "fp8": ("fp8", {}),
    "fp8-dynamic": ("fp8-dynamic", {}),
    "dense bf16": ("", {}, "bfloat16"),
    "nvfp4a16 bf16": ("nvfp4a16", {}, "bfloat16"),
    "nvfp4 bf16": ("nvfp4", {}, "bfloat16"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--runs", default=",".join(RUNS), help="comma-separated keys of RUNS")
    parser.add_argument("--max-windows", "--heldout-n", dest="max_windows", type=int, default=32)
    args = parser.parse_args()

    tokenizer = load_tokenizer(args.model)
    calib = build_calibration_set("wiki", tokenizer, n=16, seq_len=256, seed=0)
    heldout = build_calibration_set("wiki", tokenizer, n=args.max_windows, seq_len=256, seed=0, split="heldout")
    rows = []
    for key in args.runs.split(","):
        method, params, *dtype = RUNS[key]
        model = load_model(args.model, dtype=dtype[0] if dtype else "float32", device="cpu")
        started = time.perf_counter()
        record = {"achieved": {"sparsity": 0.0, "bits_per_weight": 32.0}}
        if method:
            result = compress(model, calib, method, tokenizer=tokenizer, **params)
            model, record = result.model, result.record
        wall = time.perf_counter() - started
        ppl = window_nll(model, heldout.input_ids, batch_size=8).perplexity
        reload_diff = float("nan")
        if method:
            from transformers import AutoModelForCausalLM

            with tempfile.TemporaryDirectory() as tmp:
                result.save(Path(tmp) / "ckpt", tokenizer)
                reloaded = AutoModelForCausalLM.from_pretrained(Path(tmp) / "ckpt").eval()
                ids = torch.from_numpy(heldout.input_ids[:2].astype("int64"))
                with torch.no_grad():
                    reload_diff = float((model(ids).logits - reloaded(ids).logits).abs().max())
        rows.append(
            (key, wall, record["achieved"]["sparsity"], record["achieved"]["bits_per_weight"], ppl, reload_diff)
        )
        print(f"{key}: {wall:.1f}s ppl {ppl:.2f}", flush=True)

    base = next((r[1] for r in rows if r[0].startswith("rtn")), None)
    print("\n| method | wall s | x RTN | sparsity | bits/weight | wiki held-out ppl | reload max |dlogit| |")
    print("|---|---|---|---|---|---|---|")
    for key, wall, sparsity, bits, ppl, diff in rows:
        ratio = f"{wall / base:.1f}" if base and key != "dense" else "-"
        print(f"| {key} | {wall:.1f} | {ratio} | {sparsity:.3f} | {bits:.3f} | {ppl:.2f} | {diff:.2g} |")


if __name__ == "__main__":
    main()
