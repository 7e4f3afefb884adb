"""Scale model: calibench's compress and evaluation path on Llama-3-8B- and 70B-wide decoder layers, on CPU.

Every model is a ``LlamaForCausalLM`` built from a config (random float32
weights: this CPU has AVX2 and no bf16 matrix units, so float32 is the fast
dtype here) with the real widths of a Llama-3 model, ``num_hidden_layers``
1 and a 1,024-token vocabulary (the head is not what is measured).  Each
measurement runs in its own process, so its peak resident memory
(``ru_maxrss``) is its own:

* ``compress``: ``calibench.compress.compress`` with GPTQ (W4 g128),
  SparseGPT (50%), Wanda (50%) and RTN (W4 g128) on a random-token
  ``CalibrationSet`` of N x S tokens.  llm-compressor's own functions are
  wrapped with timers (no behaviour change), so the seconds split into the
  per-Linear *solve* (GPTQ's ``quantize_weight``, SparseGPT's and Wanda's
  ``sparsify_weight``: independent of the token count) and the Hessian
  accumulation (``accumulate_hessian``: proportional to it); the rest of the
  wall time is the calibration forward passes and llm-compressor's pipeline.
* ``eval``: ``calibench.evaluation.evaluate(model, "ppl:<text file>")`` over
  N windows of S tokens: the evaluation forward.
* ``matmul``: a float32 matrix product, the CPU's achieved dense rate, the
  yardstick for the projection's efficiencies.

The projection (``--project``, on by default) turns the measured seconds
into an H100 estimate per paper-scale cell (128 x 2048 calibration tokens,
every layer of the real model): each stage's FLOPs, divided by an assumed
H100 rate times the efficiency the same stage reached on this CPU relative to
its own matmul rate.  Assumed H100 rates (SXM, achievable, not peak): bf16
dense matmul 400 TFLOP/s (forward passes), fp32 50 TFLOP/s (Hessian
accumulation and the solve, which llm-compressor runs in float32), memory
bandwidth 3.35 TB/s (a floor for reading the weights once per pass).  It is
a projection, not a measurement: nothing here ran on a GPU.

A width whose GPTQ, SparseGPT or Wanda run was not made (it takes too long
on the machine at hand) borrows the per-stage efficiencies of a width where
it ran, and says so (``measured_as``); ``1b`` (Llama-3.2-1B widths) is the
cheap width for that.  Single measurements run as
``--one compress|eval SHAPE METHOD N SEQ`` (one JSON line), and
``--from-json FILE [--markdown]`` recomputes the projection and prints the
docs' tables.

    nice -n 5 python benchmarks/scale_model.py                # the full plan: over an hour on 2 shared cores
    python benchmarks/scale_model.py --tiny                   # the mechanics in a few minutes

Writes ``$OUT/scale_model.json`` when ``$OUT`` is set (or ``--json``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("LLM_COMPRESSOR_LOG_LEVEL", "WARNING")
sys.path.insert(0, str(Path(__file__).resolve().parent))

SHAPES: dict[str, dict[str, Any]] = {
    "8b": dict(hidden_size=4096, intermediate_size=14336, num_attention_heads=32, num_key_value_heads=8, layers=32,
               vocab=128256),
    "70b": dict(hidden_size=8192, intermediate_size=28672, num_attention_heads=64, num_key_value_heads=8, layers=80,
                vocab=128256),
    "1b": dict(hidden_size=2048, intermediate_size=8192, num_attention_heads=32, num_key_value_heads=8, layers=16,
               vocab=128256),
    "tiny": dict(hidden_size=256, intermediate_size=512, num_attention_heads=4, num_key_value_heads=2, layers=2,
                 vocab=1024),
}  # fmt: skip
METHODS: dict[str, dict[str, Any]] = {
    "rtn": {"bits": 4, "group_size": 128},
    "gptq": {"bits": 4, "group_size": 128},
    "sparsegpt": {"sparsity": 0.5},
    "wanda": {"sparsity": 0.5},
}
VOCAB = 1024

# the assumed H100 (SXM) rates of the projection: achievable, not peak
H100 = {"bf16_tflops": 400.0, "fp32_tflops": 50.0, "mem_tb_s": 3.35}

# examples/paper-study.yaml's lm-eval tasks: (loglikelihood requests, mean tokens per request), full test or
# validation splits as lm-eval scores them; the token means are estimates for a Llama-3 tokenizer
LM_EVAL_LOAD = {
    "arc_easy": (2376 * 4, 50),
    "arc_challenge": (1172 * 4, 55),
    "boolq": (3270 * 2, 150),
    "hellaswag": (10042 * 4, 100),
    "lambada_openai": (5153, 80),
    "openbookqa": (500 * 4, 35),
    "piqa": (1838 * 2, 55),
    "rte": (277 * 2, 80),
    "storycloze": (1871 * 2, 70),
    "winogrande": (1267 * 2, 30),
}
PPL_TOKENS = {"ppl:wikitext2": 290_000, "ppl:c4": 256 * 2048}  # wikitext-2 test; calibench's c4 windows (estimate)


# ----------------------------------------------------------------------------- one measurement (child process)


def build(shape: str) -> Any:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    s = SHAPES[shape]
    config = LlamaConfig(hidden_size=s["hidden_size"], intermediate_size=s["intermediate_size"],
                         num_attention_heads=s["num_attention_heads"], num_key_value_heads=s["num_key_value_heads"],
                         num_hidden_layers=1 if shape != "tiny" else 2, vocab_size=VOCAB,
                         max_position_embeddings=8192, tie_word_embeddings=False, bos_token_id=0, eos_token_id=1,
                         pad_token_id=2)  # fmt: skip
    # llm-compressor's oneshot re-reads the config from name_or_path: a config-only directory
    config_dir = Path(tempfile.mkdtemp(prefix=f"scale-{shape}-"))
    config.save_pretrained(config_dir)
    config._name_or_path = str(config_dir)
    torch.manual_seed(0)
    model = LlamaForCausalLM._from_config(config, dtype=torch.float32)
    return model.eval()


def timed(module: Any, name: str, bucket: dict[str, float]) -> None:
    """Wrap ``module.name`` so its seconds add up in ``bucket[name]`` (the call itself is unchanged)."""
    original = getattr(module, name)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            bucket[name] = bucket.get(name, 0.0) + time.perf_counter() - started
            bucket[name + "_calls"] = bucket.get(name + "_calls", 0) + 1

    setattr(module, name, wrapper)


def rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def one(kind: str, shape: str, method: str, n: int, seq: int) -> dict[str, Any]:
    import torch

    out: dict[str, Any] = {"kind": kind, "shape": shape, "method": method, "n": n, "seq": seq,
                           "threads": torch.get_num_threads()}  # fmt: skip
    if kind == "matmul":
        a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
        a @ b
        started, reps = time.perf_counter(), 8
        for _ in range(reps):
            a @ b
        out["tflops"] = reps * 2 * 2048**3 / (time.perf_counter() - started) / 1e12
        return out
    from gpu_check import make_tokenizer, random_set, stdlib_text

    tokenizer, _ = make_tokenizer(None, VOCAB)
    model = build(shape)
    out["layer_params"] = sum(p.numel() for p in model.model.layers[0].parameters())
    out["rss_after_build_gib"] = rss_gib()
    if kind == "eval":
        from calibench.evaluation import evaluate

        text = Path(tempfile.mkdtemp(prefix="scale-text-")) / "text.txt"
        text.write_text(stdlib_text(("functools", "enum", "shutil", "subprocess", "tarfile", "zipfile", "ast",
                                     "argparse", "inspect", "typing", "dataclasses", "pathlib")))  # fmt: skip
        started = time.perf_counter()
        result = evaluate(model, f"ppl:{text}", tokenizer=tokenizer, seq_len=seq, max_windows=n, batch_size=1)
        out["seconds"] = time.perf_counter() - started
        out["windows"] = result.rows[0].n
        out["peak_rss_gib"] = rss_gib()
        return out
    from llmcompressor.modifiers.gptq import base as gptq_base
    from llmcompressor.modifiers.pruning.sparsegpt import base as sgpt_base
    from llmcompressor.modifiers.pruning.wanda import base as wanda_base

    from calibench.compress import compress

    bucket: dict[str, float] = {}
    timed(gptq_base, "quantize_weight", bucket)
    timed(gptq_base, "accumulate_hessian", bucket)
    timed(sgpt_base, "sparsify_weight", bucket)
    timed(sgpt_base, "accumulate_hessian", bucket)
    timed(wanda_base, "sparsify_weight", bucket)
    timed(wanda_base, "accumulate_row_scalars", bucket)
    calib = random_set(tokenizer, n, seq, seed=0)
    started = time.perf_counter()
    compress(model, calib, method, tokenizer=tokenizer, seed=0, **METHODS[method])
    out["seconds"] = time.perf_counter() - started
    solve_keys = ("quantize_weight", "sparsify_weight")
    out["solve_s"] = sum(bucket.get(k, 0.0) for k in solve_keys)
    out["hessian_s"] = bucket.get("accumulate_hessian", 0.0) + bucket.get("accumulate_row_scalars", 0.0)
    out["solve_calls"] = sum(int(bucket.get(k + "_calls", 0)) for k in solve_keys)
    out["rest_s"] = out["seconds"] - out["solve_s"] - out["hessian_s"]
    out["peak_rss_gib"] = rss_gib()
    return out


# ----------------------------------------------------------------------------- FLOPs and the projection


def linears(shape: str) -> list[tuple[int, int]]:
    """(in, out) of the seven Linears of one decoder layer."""
    s = SHAPES[shape]
    d, ff = s["hidden_size"], s["intermediate_size"]
    kv = d // s["num_attention_heads"] * s["num_key_value_heads"]
    return [(d, d), (d, kv), (d, kv), (d, d), (d, ff), (d, ff), (ff, d)]


def layer_flops(shape: str, tokens: int, seq: int) -> dict[str, float]:
    """Per decoder layer: one forward pass, the Hessians (2 T in^2 each) and the GPTQ/SparseGPT solve."""
    d = SHAPES[shape]["hidden_size"]
    lin = linears(shape)
    params = sum(i * o for i, o in lin)
    return {
        "forward": 2 * params * tokens + 4 * seq * d * tokens,  # + attention's QK^T and AV, no causal halving
        "hessian": sum(2 * tokens * i * i for i, _ in lin),
        "solve": sum(i**3 + o * i * i for i, o in lin),
        "params": params,
    }


def fit(rows: list[dict[str, Any]], key: str) -> tuple[float, float]:
    """Seconds = a + b * tokens through the two token counts (a single one: a = 0)."""
    pts = sorted((r["n"] * r["seq"], r[key]) for r in rows)
    if len(pts) < 2 or pts[-1][0] == pts[0][0]:
        t, s = pts[-1]
        return 0.0, s / t
    (t0, s0), (t1, s1) = pts[0], pts[-1]
    b = (s1 - s0) / (t1 - t0)
    return s0 - b * t0, b


def project(results: list[dict[str, Any]], cpu_tflops: float) -> dict[str, Any]:
    """Per paper-scale cell on an H100, from the CPU efficiencies of each stage; the paper study's GPU hours."""
    seq = 2048
    out: dict[str, Any] = {"assumed_h100": H100, "cpu_matmul_tflops": cpu_tflops, "cells": {}}
    for shape in ("1b", "8b", "70b"):
        s = SHAPES[shape]
        runs = [r for r in results if r["shape"] == shape and r.get("status") == "ok"]
        if not runs and shape == "1b":
            continue
        per_shape: dict[str, Any] = {}
        evals = [r for r in runs if r["kind"] == "eval"]
        fwd_eff = None
        if evals:  # the evaluation forward's efficiency relative to this CPU's matmul
            r = evals[-1]
            f = layer_flops(shape, r["n"] * r["seq"], r["seq"])["forward"]
            fwd_eff = min(1.0, f / r["seconds"] / 1e12 / cpu_tflops)
            per_shape["eval_forward_cpu_efficiency"] = fwd_eff
        for method in METHODS:
            per_shape[method] = _project_method(shape, method, runs, cpu_tflops, out["cells"])
        per_shape = {k: v for k, v in per_shape.items() if v is not None}
        if shape == "1b":  # measured for the efficiencies of the wider shapes only
            out["cells"][shape] = per_shape
            continue
        # evaluation of the paper study's tasks on the full model (every layer plus the 128k head)
        eval_tokens = sum(n * t for n, t in LM_EVAL_LOAD.values()) + sum(PPL_TOKENS.values())
        full_params = layer_flops(shape, 1, seq)["params"] * s["layers"] + 2 * s["vocab"] * s["hidden_size"]
        eval_flops = 2 * full_params * eval_tokens
        eff = fwd_eff or out["cells"].get("8b", {}).get("eval_forward_cpu_efficiency") or 0.5  # 70B: the 8B's
        per_shape["eval"] = {"tokens": eval_tokens, "tflop": eval_flops / 1e12, "efficiency": eff,
                             "h100_floor_s": eval_flops / (H100["bf16_tflops"] * 1e12),
                             "h100_s": eval_flops / (H100["bf16_tflops"] * 1e12 * eff)}  # fmt: skip
        out["cells"][shape] = per_shape
    out["paper_study"] = paper_study(out["cells"])
    return out


def _project_method(shape: str, method: str, runs: list[dict[str, Any]], cpu_tflops: float,
                    cells: dict[str, Any]) -> dict[str, Any] | None:  # fmt: skip
    """One method's CPU efficiencies per stage, and the H100 seconds per layer and per cell they project to.

    A method not run at this width borrows the efficiencies of a width where it ran (SparseGPT GPTQ's: the same
    Hessian and O(in^3) solve), with this width's forward efficiency where Wanda ran at it.
    """
    tokens, seq = 128 * 2048, 2048
    s = SHAPES[shape]
    compress_runs = [r for r in runs if r["kind"] == "compress"]
    rows = [r for r in compress_runs if r["method"] == method]
    measured_as = method
    if not rows and method == "sparsegpt":
        rows, measured_as = [r for r in compress_runs if r["method"] == "gptq"], "gptq"
    weights_bytes = layer_flops(shape, 1, seq)["params"] * 2  # bf16 on the GPU
    full = layer_flops(shape, tokens, seq)
    memory_floor = 2 * weights_bytes / (H100["mem_tb_s"] * 1e12)  # the weights read once per pass, two passes
    eff: dict[str, float | None]
    cpu: dict[str, Any] = {}
    if rows:
        last = rows[-1]
        t_last = last["n"] * last["seq"]
        per_token = layer_flops(shape, 1, last["seq"])
        fl = layer_flops(shape, t_last, last["seq"])
        a_rest, b_rest = fit(rows, "rest_s")  # forward passes and the pipeline: seconds = a + b * tokens
        _, b_hess = fit(rows, "hessian_s")
        rest_rate = b_rest if b_rest > 0 else last["rest_s"] / t_last
        hess_rate = b_hess if b_hess > 0 else last["hessian_s"] / t_last
        solve_s = max(r["solve_s"] for r in rows) if method in ("gptq", "sparsegpt") else 0.0
        eff = {
            "forward": min(1.0, 2 * per_token["forward"] / rest_rate / 1e12 / cpu_tflops),
            "hessian": min(1.0, per_token["hessian"] / max(hess_rate, 1e-12) / 1e12 / cpu_tflops),
            "solve": min(1.0, fl["solve"] / solve_s / 1e12 / cpu_tflops) if solve_s > 0 else None,
        }
        cpu = {"cpu_per_layer_s_at": {"tokens": t_last, "total": last["seconds"], "solve": solve_s,
                                      "hessian": last["hessian_s"], "forward_and_pipeline": last["rest_s"]},
               "cpu_fit_forward_s_per_1k_tokens": 1000 * b_rest, "cpu_fit_forward_intercept_s": a_rest,
               "cpu_fit_hessian_s_per_1k_tokens": 1000 * b_hess,
               "cpu_peak_rss_gib": max(r["peak_rss_gib"] for r in rows)}  # fmt: skip
    else:  # borrowed from a width where it ran: Hessian and solve efficiency, and the forward efficiency of the
        # calibration passes (this width's Wanda run where there is one)
        wanted = "gptq" if method == "sparsegpt" else method
        donors = [sh for sh, per in cells.items() if per.get(wanted, {}).get("measured_as") == wanted]
        if not donors:
            return None
        donor = cells[donors[0]][wanted]
        own_wanda = [r for r in compress_runs if r["method"] == "wanda"]
        wanda = _project_method(shape, "wanda", runs, cpu_tflops, {}) if own_wanda else None
        forward_from = f"{shape} wanda" if wanda else f"{donors[0]} {wanted}"
        eff = {**donor["cpu_efficiency"], "forward": (wanda or donor)["cpu_efficiency"]["forward"]}
        measured_as = f"{donors[0]} {wanted} (efficiencies), forward: {forward_from}"
    if method == "rtn":  # data-free: no calibration pass, one pass over the weights
        h_forward = memory_floor / 2
    else:
        forward_eff = eff["forward"] or 1.0
        h_forward = max(2 * full["forward"] / (H100["bf16_tflops"] * 1e12 * forward_eff), memory_floor)
    uses_hessian = method in ("gptq", "sparsegpt")
    h_hessian = full["hessian"] / (H100["fp32_tflops"] * 1e12 * (eff["hessian"] or 1.0)) if uses_hessian else 0.0
    h_solve = full["solve"] / (H100["fp32_tflops"] * 1e12 * eff["solve"]) if uses_hessian and eff["solve"] else 0.0
    stages = {"forward": h_forward, "hessian": h_hessian, "solve": h_solve}
    # the FLOP floor: every stage at the assumed H100 rate, no efficiency loss
    floor_forward = max(2 * full["forward"] / (H100["bf16_tflops"] * 1e12), memory_floor)
    floor = {"forward": memory_floor / 2 if method == "rtn" else floor_forward,
             "hessian": full["hessian"] / (H100["fp32_tflops"] * 1e12) if uses_hessian else 0.0,
             "solve": full["solve"] / (H100["fp32_tflops"] * 1e12) if uses_hessian else 0.0}  # fmt: skip
    shown = {k: (v if uses_hessian or k == "forward" else None) for k, v in eff.items()}
    return {**cpu, "h100_floor_per_layer_s": floor, "h100_floor_cell_s": sum(floor.values()) * s["layers"],
            "cpu_efficiency": shown,
            "h100_per_layer_s": stages, "h100_cell_compress_s": sum(stages.values()) * s["layers"],
            "measured_as": measured_as, "dominant": max(stages.items(), key=lambda kv: kv[1])[0]}  # fmt: skip


def paper_study(cells: dict[str, Any]) -> dict[str, Any]:
    """examples/paper-study.yaml: 1 model x 8 methods x 6 sources x 10 sets + 1 dense cell, each evaluated."""
    import yaml

    spec = yaml.safe_load((Path(__file__).resolve().parents[1] / "examples" / "paper-study.yaml").read_text())
    sets = sum(s.get("sets", 1) for s in spec["sources"])
    per_method = sets * len(spec["n"]) * len(spec["seq_len"])
    # the methods not measured here, by what they run: w4a16 is GPTQ; fp8 and nvfp4 calibrate observers in one
    # calibration pipeline (as Wanda's); awq searches 20 scales per mapping (20 more forwards of the layer's
    # parts, about 10 times the two calibration passes: an assumption);
    # sparsegpt+gptq runs both solves
    as_measured = {"gptq": ["gptq"], "awq": [], "sparsegpt": ["sparsegpt"], "wanda": ["wanda"],
                   "sparsegpt+gptq": ["sparsegpt", "gptq"], "w4a16": ["gptq"], "fp8": ["wanda"],
                   "nvfp4": ["wanda"]}  # fmt: skip
    out: dict[str, Any] = {"models": spec["models"], "methods": [m["name"] for m in spec["methods"]],
                           "cells_per_method": per_method, "tasks": spec["eval"]["tasks"]}  # fmt: skip
    for shape, per in cells.items():
        if "eval" not in per or not all(m in per for m in METHODS):
            continue
        n_cells = per_method * len(out["methods"]) + len(spec["models"])
        layers = SHAPES[shape]["layers"]
        for variant, cell_key, layer_key, eval_key in (
            ("projected", "h100_cell_compress_s", "h100_per_layer_s", "h100_s"),
            ("floor", "h100_floor_cell_s", "h100_floor_per_layer_s", "h100_floor_s"),
        ):
            compress_s, by_method = 0.0, {}
            for m in out["methods"]:
                if m == "awq":  # the calibration passes (Wanda's) and a 20-point scale search: about 11 times them
                    seconds = per["wanda"][layer_key]["forward"] * 11 * layers
                else:
                    seconds = sum(per[p][cell_key] for p in as_measured[m])
                by_method[m] = seconds
                compress_s += per_method * seconds
            eval_s = n_cells * per["eval"][eval_key]
            out.setdefault(shape, {})[variant] = {
                "cells": n_cells, "cell_compress_s": by_method, "cell_eval_s": per["eval"][eval_key],
                "compress_gpu_h": compress_s / 3600, "eval_gpu_h": eval_s / 3600,
                "total_gpu_h": (compress_s + eval_s) / 3600,
                "dominant": "evaluation" if eval_s > compress_s else "compression"}  # fmt: skip
    return out


# ----------------------------------------------------------------------------- driver


def run_child(args: argparse.Namespace, kind: str, shape: str, method: str, n: int, seq: int) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--one", kind, shape, method, str(n), str(seq)]
    started = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.child_timeout)
    except subprocess.TimeoutExpired:
        proc = subprocess.CompletedProcess(cmd, -1, "", f"over --child-timeout {args.child_timeout:.0f} s")
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        row = {"kind": kind, "shape": shape, "method": method, "n": n, "seq": seq, "status": "failed",
               "error": " | ".join(tail)}  # fmt: skip
    else:
        row = json.loads(proc.stdout.strip().splitlines()[-1])
        row["status"] = "ok"
    print(f"[{time.perf_counter() - args.started:6.0f} s] {kind} {shape} {method} {n}x{seq}: "
          + (f"{row.get('seconds', row.get('tflops', 0)):.2f}" if row["status"] == "ok" else row["error"])
          + (f" (solve {row['solve_s']:.1f} s, hessian {row['hessian_s']:.1f} s, peak {row['peak_rss_gib']:.1f} GiB)"
             if "solve_s" in row else "")
          + f" [{time.perf_counter() - started:.0f} s wall]", flush=True)  # fmt: skip
    return row


def enough_memory(shape: str, method: str) -> bool:
    """A GPTQ/SparseGPT solve holds the weights, the Hessian of the widest input and two solve copies of it."""
    widest = max(i for i, _ in linears(shape))
    need = 4 * (layer_flops(shape, 1, 1)["params"] + 3 * widest**2) + 2**30
    avail = next(int(line.split()[1]) * 1024 for line in Path("/proc/meminfo").read_text().splitlines()
                 if line.startswith("MemAvailable"))  # fmt: skip
    return avail > need * 1.2


def parse_tokens(text: str) -> list[tuple[int, int]]:
    return [(int(a), int(b)) for a, b in (part.split("x") for part in text.split(","))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--one", nargs=5, metavar=("KIND", "SHAPE", "METHOD", "N", "SEQ"), help=argparse.SUPPRESS)
    ap.add_argument("--tiny", action="store_true", help="tiny widths and tokens: the mechanics in < 1 min")
    ap.add_argument("--tokens-8b", default="2x512,8x512", help="N x S calibration sets for the 8B width")
    ap.add_argument("--tokens-70b", default="2x512", help="N x S for the 70B width (one count: its solve dominates)")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument(
        "--methods-70b",
        default="rtn,wanda,gptq",
        help="the 70B width's methods (SparseGPT's solve there is projected from GPTQ's: same FLOPs)",
    )
    ap.add_argument(
        "--single-count",
        default="sparsegpt,rtn",
        help="methods measured at the last token count only (RTN never reads the tokens)",
    )
    ap.add_argument("--shapes", default="8b,70b")
    ap.add_argument("--child-timeout", type=float, default=1500)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--from-json", type=Path, default=None, help="recompute the projection from an earlier run's JSON")
    ap.add_argument("--markdown", action="store_true", help="with --from-json: print the docs' tables")
    args = ap.parse_args()
    if args.from_json:
        report = json.loads(args.from_json.read_text())
        matmul = next(r for r in report["runs"] if r["kind"] == "matmul")
        report["projection"] = project(report["runs"], matmul["tflops"])
        args.from_json.write_text(json.dumps(report, indent=2) + "\n")
        print(markdown(report) if args.markdown else json.dumps(report["projection"], indent=2))
        return 0
    if args.one:
        kind, shape, method, n, seq = args.one
        print(json.dumps(one(kind, shape, method, int(n), int(seq))))
        return 0
    args.started = time.perf_counter()
    json_path = args.json or (Path(os.environ["OUT"]) / "scale_model.json" if os.environ.get("OUT") else None)
    plan: dict[str, list[tuple[int, int]]] = {}
    if args.tiny:
        plan = {"tiny": [(2, 64), (4, 64)]}
    else:
        token_args = {"8b": args.tokens_8b, "70b": args.tokens_70b}
        plan = {s: parse_tokens(token_args[s]) for s in args.shapes.split(",")}
    results = [run_child(args, "matmul", "none", "none", 0, 0)]
    cpu_tflops = results[0]["tflops"]
    for shape, counts in plan.items():
        n, seq = counts[-1]
        results.append(run_child(args, "eval", shape, "none", n, seq))
        methods = (args.methods_70b if shape == "70b" else args.methods).split(",")
        for method in methods:
            for n, seq in counts if method not in args.single_count.split(",") else counts[-1:]:
                if not enough_memory(shape, method):
                    results.append(
                        {
                            "kind": "compress",
                            "shape": shape,
                            "method": method,
                            "n": n,
                            "seq": seq,
                            "status": "skipped",
                            "error": "not enough free memory on this shared machine",
                        }
                    )
                    continue
                results.append(run_child(args, "compress", shape, method, n, seq))
                if json_path:
                    json_path.parent.mkdir(parents=True, exist_ok=True)
                    json_path.write_text(json.dumps({"runs": results}, indent=2) + "\n")
    projection = project(results, cpu_tflops) if not args.tiny else project_tiny(results)
    report = {"runs": results, "projection": projection, "elapsed_s": time.perf_counter() - args.started}
    if json_path:
        json_path.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(projection, indent=2))
    return 0


def markdown(report: dict[str, Any]) -> str:
    """The docs' tables: CPU measurements per decoder layer, the H100 projection per cell, the paper study."""
    lines = ["| width | run | tokens | total s | solve s | Hessian s | forward + pipeline s | peak RSS GiB |",
             "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in report["runs"]:
        if r["kind"] == "matmul" or r.get("status") != "ok":
            continue
        name = "eval (ppl forward)" if r["kind"] == "eval" else r["method"]
        solve = f"{r['solve_s']:.1f}" if "solve_s" in r else ""
        hess = f"{r['hessian_s']:.1f}" if "hessian_s" in r else ""
        rest = f"{r['rest_s']:.1f}" if "rest_s" in r else ""
        lines.append(f"| {r['shape']} | {name} | {r['n']} x {r['seq']} | {r['seconds']:.1f} | {solve} | {hess} | "
                     f"{rest} | {r['peak_rss_gib']:.1f} |")  # fmt: skip
    proj = report["projection"]
    lines += ["", "| width | method | H100 floor s/cell | H100 projected s/cell | dominant stage | measured as |",
              "|---|---|---|---|---|---|"]  # fmt: skip
    for shape, per in proj["cells"].items():
        for method in METHODS:
            if method in per:
                m = per[method]
                lines.append(f"| {shape} | {method} | {m['h100_floor_cell_s']:.0f} | {m['h100_cell_compress_s']:.0f} | "
                             f"{m['dominant']} | {m['measured_as']} |")  # fmt: skip
        if "eval" not in per:
            continue
        ev = per["eval"]
        lines.append(f"| {shape} | evaluation ({ev['tokens'] / 1e6:.1f} M tokens) | {ev['h100_floor_s']:.0f} | "
                     f"{ev['h100_s']:.0f} | forward | eval efficiency {ev['efficiency']:.2f} |")  # fmt: skip
    lines += ["", "| width | variant | cells | compress GPU-h | eval GPU-h | total GPU-h | dominant |",
              "|---|---|---|---|---|---|---|"]  # fmt: skip
    for shape in ("8b", "70b"):
        for variant, v in proj["paper_study"].get(shape, {}).items():
            lines.append(f"| {shape} | {variant} | {v['cells']} | {v['compress_gpu_h']:.1f} | {v['eval_gpu_h']:.1f} | "
                         f"{v['total_gpu_h']:.1f} | {v['dominant']} |")  # fmt: skip
    return "\n".join(lines)


def project_tiny(results: list[dict[str, Any]]) -> dict[str, Any]:
    return {"note": "--tiny checks the mechanics only", "ok": all(r["status"] == "ok" for r in results)}


if __name__ == "__main__":
    sys.exit(main())
