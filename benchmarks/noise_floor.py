"""Where results stop being machine-independent, and how big that numerical noise is.

Why this exists.  `make demo` on another 2-core machine (AMD EPYC) reproduced
the dense row of docs/demo-report (wiki ppl 21.37) but 20 of 30 compressed
cells differed (gptq-w4g64/code 49.35 vs 47.30, gptq/wiki 35.67 vs 34.99).
Without a second machine, this script emulates "another machine" with the
switches that select CPU kernels, each set in a fresh subprocess before torch
is imported:

* ``ATEN_CPU_CAPABILITY=avx2|default``: torch's own vectorised kernels
  (RMSNorm reductions, SiLU/softmax/exp, SDPA, sums) run the AVX2 or scalar
  build instead of AVX-512;
* ``MKL_ENABLE_INSTRUCTIONS=AVX2``: MKL (torch's BLAS/LAPACK here, see
  ``torch.__config__.show()``) dispatches its AVX2 code path, as on a CPU
  without AVX-512;
* ``ONEDNN_MAX_CPU_ISA=AVX2``: oneDNN's ISA cap (fp32 matmuls do not go
  through oneDNN, so this is expected to change nothing; it is measured);
* torch thread count 1 vs 2 and evaluation batch size 1/4/16.

It then finds the FIRST step of the pipeline whose output changes when its
inputs are held identical:

  (a) calibration-set bytes (set ids of wiki/code/math/random-vocab, 3 sets
      each, and of a ``self`` set generated with seed 0);
  (b) the calibration forward: activations inside decoder layer 0 (and the
      last hidden state) on the same wiki set 0, batch 1 per sample like
      llm-compressor; plus single ops on identical inputs (RMSNorm, one
      Linear, SiLU) to attribute a difference to ATen or to MKL;
  (c) GPTQ's Hessian for layer 0's q_proj (576) and down_proj (1536),
      accumulated with llm-compressor's own ``accumulate_hessian`` from the
      reference configuration's inputs (same X), and from the
      configuration's own inputs;
  (d) the GPTQ solve (llm-compressor's ``quantize_weight``, W4 g64, damp
      0.01) of those two weights given the reference H;
  (e) evaluation: per-window NLL of the same (dense) weights on the demo's
      ppl:wiki protocol (4 x 256) at batch sizes 1, 4 and 16.

End to end, the demo's gptq-w4g64 and wanda-50% cells on wiki set 0 (8 x 128,
seed 0) are compressed in the configurations marked ``full``: how many 4-bit
codes / mask entries flipped and from which layer on, and ppl:wiki +
arc_easy/piqa (limit 12) at the study's batch size 16 (the reference also at
1 and 4).  The spread of those numbers under perturbations that should not
matter is the noise floor; it is printed next to the across-set std of
docs/demo-report/report.md.

The mirrors in (c) and (d) are checked against the real run: the reference
worker records the Hessian llm-compressor accumulated for layer 0's q_proj
and the weight GPTQ wrote, and the report says whether the mirror matches
them bit for bit.

``pinned`` configurations (``MKL_CBWR=COMPATIBLE`` plus
``ATEN_CPU_CAPABILITY=avx2``) test whether fixing both kernel selections makes
the numbers identical across the emulated ISAs and thread counts, and what
that costs (time ratios against the reference, measured in the same run).

Run:  .venv/bin/python benchmarks/noise_floor.py --out /tmp/noise-floor
      Default: ref, threads2, aten-avx2, mkl-avx2, pinned, pinned+mkl-avx2, epyc-like; measured
      per-worker walls on a quiet 2-core machine put it at ~15-17 min (ref 260 s, epyc-like 250 s,
      threads2 ~200 s, the steps-only workers 50-130 s; pinned ones are slow because
      MKL_CBWR=COMPATIBLE is).  --full adds aten-default, onednn-avx2, pinned+threads2 and
      pinned+mkl-sse4_2, and compresses in aten-avx2, mkl-avx2 and the pinned ones (~45 min).
      --configs a,b runs a subset; --skip-done reuses finished workers; --analyse-only re-renders.
Configurations run one after another (one heavy process at a time).
Nothing under src/ is changed; the script only reads calibench's API.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MODEL = "smollm2-135m"
N, SEQ_LEN, SEED, SETS = 8, 128, 0, 3
TEXT_SOURCES = ("wiki", "code", "math", "random-vocab")
PPL_SEQ_LEN, PPL_WINDOWS = 256, 4
ZS_TASKS, ZS_LIMIT = ["arc_easy", "piqa"], 12
STUDY_BATCH = 16
EVAL_BATCHES = (1, 4, 16)
METHODS = {"gptq": ("gptq-w4g64", {"bits": 4, "group_size": 64}), "wanda": ("wanda-50%", {"sparsity": 0.5})}
GROUP = 64
PROBE_LINEARS = {"q_proj": ("self_attn.q_proj", "ln1"), "down_proj": ("mlp.down_proj", "act")}
CAPTURE_ORDER = ("embed", "ln1", "q", "attn", "ln2", "gate", "act", "layer0", "last")
KNOBS = (
    "ATEN_CPU_CAPABILITY",
    "MKL_ENABLE_INSTRUCTIONS",
    "MKL_CBWR",
    "ONEDNN_MAX_CPU_ISA",
    "MKL_DEBUG_CPU_TYPE",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
)
PINNED = {"MKL_CBWR": "COMPATIBLE", "ATEN_CPU_CAPABILITY": "avx2"}


@dataclass(frozen=True)
class Config:
    name: str
    env: dict[str, str]
    threads: int
    baseline: str | None  # compared against this configuration; None: the reference
    full: bool  # compress + evaluate the demo cells (default run)
    self_gen: bool = False  # generate the ``self`` set (25 s)
    full_only: bool = False  # only with --full
    full_if_full: bool = False  # steps by default, compress+evaluate too with --full
    note: str = ""


CONFIGS = [
    Config(
        "ref",
        {},
        1,
        None,
        True,
        self_gen=True,
        note="native: ATen AVX-512, MKL auto, 1 thread (what a --jobs 2 demo worker uses)",
    ),
    Config("threads2", {}, 2, "ref", True, note="native, 2 threads"),
    Config("aten-avx2", {"ATEN_CPU_CAPABILITY": "avx2"}, 1, "ref", False, self_gen=True, full_if_full=True),
    Config("mkl-avx2", {"MKL_ENABLE_INSTRUCTIONS": "AVX2"}, 1, "ref", False, full_if_full=True),
    Config("aten-default", {"ATEN_CPU_CAPABILITY": "default"}, 1, "ref", False, full_only=True),
    Config("onednn-avx2", {"ONEDNN_MAX_CPU_ISA": "AVX2"}, 1, "ref", False, full_only=True),
    Config(
        "pinned",
        dict(PINNED),
        1,
        "ref",
        False,
        full_if_full=True,
        note="candidate fix: MKL_CBWR=COMPATIBLE + ATEN_CPU_CAPABILITY=avx2",
    ),
    Config(
        "pinned+mkl-avx2",
        {**PINNED, "MKL_ENABLE_INSTRUCTIONS": "AVX2"},
        1,
        "pinned",
        False,
        full_if_full=True,
        note="the fix on an emulated AVX2-only host",
    ),
    Config("pinned+threads2", dict(PINNED), 2, "pinned", False, full_only=True),
    Config(
        "epyc-like",
        {"ATEN_CPU_CAPABILITY": "avx2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"},
        1,
        "ref",
        True,
        self_gen=True,
        note="ATen AVX2 + MKL AVX2 path, as on a CPU without AVX-512",
    ),
    Config("pinned+mkl-sse4_2", {**PINNED, "MKL_ENABLE_INSTRUCTIONS": "SSE4_2"}, 1, "pinned", False, full_only=True),
]
BY_NAME = {c.name: c for c in CONFIGS}


# =============================================================== worker (one configuration)


def _tensor_stats(a: Any, b: Any) -> dict[str, Any]:
    """Bit-exact equality and the size of the difference (max |a-b| / max |b|)."""

    a = a.double() if a.is_floating_point() else a
    b = b.double() if b.is_floating_point() else b
    if a.shape != b.shape:
        return {"equal": False, "maxrel": math.inf, "frac_diff": 1.0, "note": "shape differs"}
    diff = a != b
    scale = float(b.abs().max()) or 1.0
    return {
        "equal": bool(not diff.any()),
        "maxrel": float((a - b).abs().max()) / scale if diff.any() else 0.0,
        "frac_diff": float(diff.double().mean()),
    }


def _run_self_generation(base: Any, tok: Any, max_len: int) -> str:
    from calibench.selfcal.api import run_generation

    return run_generation(base, tok, n=N, seq_len=SEQ_LEN, seed=SEED, max_seq_len=max_len)[0].set_id


def _capture_forward(model: Any, input_ids: Any) -> dict[str, Any]:
    """Activations of decoder layer 0 and the final norm, one sample at a time (llm-compressor's batch 1)."""
    import torch

    layer = model.model.layers[0]
    store: dict[str, list[Any]] = {k: [] for k in CAPTURE_ORDER}

    def grab_in(key: str):
        return lambda _m, args, _out: store[key].append(args[0].detach().clone())

    def grab_out(key: str):
        return lambda _m, _args, out: store[key].append((out[0] if isinstance(out, tuple) else out).detach().clone())

    hooks = [
        layer.register_forward_hook(grab_in("embed")),
        layer.self_attn.q_proj.register_forward_hook(grab_in("ln1")),
        layer.self_attn.q_proj.register_forward_hook(grab_out("q")),
        layer.self_attn.o_proj.register_forward_hook(grab_in("attn")),
        layer.mlp.gate_proj.register_forward_hook(grab_in("ln2")),
        layer.mlp.gate_proj.register_forward_hook(grab_out("gate")),
        layer.mlp.down_proj.register_forward_hook(grab_in("act")),
        layer.register_forward_hook(grab_out("layer0")),
        model.model.norm.register_forward_hook(grab_out("last")),
    ]
    try:
        with torch.no_grad():
            for row in range(input_ids.shape[0]):
                ids = input_ids[row : row + 1]
                model.model(input_ids=ids, attention_mask=torch.ones_like(ids))
    finally:
        for h in hooks:
            h.remove()
    return {k: torch.cat(v) for k, v in store.items()}


def _quant_args() -> Any:
    """W4 g64 symmetric with static activation order, as the demo's cells run (calibench's default).

    (Before calibench passed ``actorder`` explicitly, GPTQModifier 0.14 resolved
    its unset value to STATIC while calibench recorded "off"; this study found that.)"""
    from calibench.compress.methods import MethodParams, weight_args

    return weight_args(MethodParams(bits=4, group_size=GROUP, actorder=True), 4)


def _hessian(module: Any, x: Any) -> Any:
    """GPTQ's H for ``module`` from inputs ``x`` [samples, tokens, d], one sample per call, as llm-compressor does."""
    import torch
    from llmcompressor.modifiers.gptq.helpers import accumulate_hessian, make_empty_hessian

    h = make_empty_hessian(module)
    count = torch.zeros(())
    for row in range(x.shape[0]):
        h, count = accumulate_hessian(x[row : row + 1], module, h, count)
    return h / count  # prepare_batch's normalisation


def _solve(weight: Any, h: Any) -> Any:
    """llm-compressor's GPTQ solve of one weight given H (min-max group scales, as its observer)."""
    import torch
    from compressed_tensors.quantization.utils import calculate_qparams
    from llmcompressor.modifiers.gptq.gptq_quantize import quantize_weight

    args = _quant_args()
    grouped = weight.unflatten(-1, (-1, GROUP))
    scale, zp = calculate_qparams(grouped.amin(-1), grouped.amax(-1), args)
    with torch.no_grad():
        q, _, _ = quantize_weight(
            weight.clone()[None], h.clone()[None], scale[None], zp[None], None, args, blocksize=128, percdamp=0.01
        )
    return q[0], scale


def _codes(weight: Any, scale: Any) -> Any:
    import torch

    return torch.round(weight / scale.repeat_interleave(GROUP, dim=1)).to(torch.int8)


def _ppl_windows(tok: Any) -> Any:
    from calibench.evaluation.heldout import load_heldout_texts
    from calibench.evaluation.perplexity import cut_windows, resolve_bos_option, tokenize_joined
    from calibench.evaluation.tasks import parse_tasks

    spec = parse_tasks("ppl:wiki")[0].heldout
    texts, _ = load_heldout_texts(spec)
    ids = tokenize_joined(texts, tok, spec.joiner)
    bos = resolve_bos_option(tok, "auto")
    return cut_windows(ids, PPL_SEQ_LEN, tok.bos_token_id if bos else None, PPL_WINDOWS)


def _timed(timings: dict[str, float], key: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
    started = time.perf_counter()
    value = fn(*args, **kwargs)
    timings[key] = round(time.perf_counter() - started, 3)
    return value


def _compress_cell(
    method: str, base: Any, tok: Any, calib: Any, timings: dict[str, float]
) -> tuple[Any, dict[str, Any]]:
    """One study cell's compression (runner.run_cell's path), with llm-compressor's layer-0 Hessian recorded."""
    import copy

    import llmcompressor.modifiers.gptq.base as gptq_base

    from calibench.compress import compress
    from calibench.study.runner import quiet_libraries

    label, params = METHODS[method]
    model = copy.deepcopy(base)
    target = model.model.layers[0].self_attn.q_proj
    seen: dict[str, Any] = {}
    original = gptq_base.accumulate_hessian

    def recording(inp: Any, module: Any, hessian: Any, num_samples: Any) -> Any:
        out = original(inp, module, hessian, num_samples)
        if module is target:
            seen["h"], seen["n"] = out[0].detach().clone(), out[1].detach().clone()
        return out

    gptq_base.accumulate_hessian = recording
    try:
        started = time.perf_counter()
        with quiet_libraries():
            result = compress(model, calib, method, tokenizer=tok, seed=SEED, **params)
        timings[f"{method}_compress"] = round(time.perf_counter() - started, 3)
    finally:
        gptq_base.accumulate_hessian = original
    extra: dict[str, Any] = {"record_threads": result.record["threads"]}
    if "h" in seen:
        extra["lc_hessian_q_proj"] = seen["h"] / seen["n"]
    return model, extra


def _signature(method: str, model: Any) -> dict[str, Any]:
    """Per target linear: 4-bit codes (gptq) or the zero mask (wanda), as numpy arrays."""
    import numpy as np

    from calibench.compress.validate import target_linears

    out: dict[str, Any] = {}
    for name, module in target_linears(model).items():
        w = module.weight.detach()
        if method == "gptq":
            scale = module.weight_scale.detach()
            codes = _codes(w, scale)
            out[name] = codes.numpy()
            out[name + "#ongrid"] = np.array(bool((codes.float() * scale.repeat_interleave(GROUP, 1) == w).all()))
        else:
            out[name] = np.packbits((w == 0).numpy(), axis=None)
    return out


def _evaluate(model: Any, tok: Any, batch: int, zeroshot: bool) -> dict[str, Any]:
    from calibench.evaluation import evaluate

    tasks = ["ppl:wiki"] + (ZS_TASKS if zeroshot else [])
    ev = evaluate(
        model,
        tasks,
        tokenizer=tok,
        limit=ZS_LIMIT,
        offline=True,
        batch_size=batch,
        seq_len=PPL_SEQ_LEN,
        max_windows=PPL_WINDOWS,
    )
    out: dict[str, Any] = {}
    for row in ev.rows:
        if row.metric in ("perplexity", "acc"):
            out[row.task] = row.value
    return out


def worker(name: str, out: Path, full: bool) -> None:
    cfg = BY_NAME[name]
    import numpy as np
    import torch

    torch.set_num_threads(cfg.threads)
    from calibench.core.nll import window_nll
    from calibench.data.draw import build_calibration_sets
    from calibench.models import load_model, load_tokenizer, model_max_length

    here = out / name
    here.mkdir(parents=True, exist_ok=True)
    ref_dir = out / "ref"
    is_ref = cfg.baseline is None
    timings: dict[str, float] = {}
    info: dict[str, Any] = {
        "name": name,
        "env": cfg.env,
        "threads": torch.get_num_threads(),
        "aten_capability": torch.backends.cpu.get_cpu_capability(),
        "mkl": torch.backends.mkl.is_available(),
        "timings": timings,
    }
    tok = load_tokenizer(MODEL)
    base = _timed(timings, "load", load_model, MODEL)
    base.eval()
    max_len = model_max_length(MODEL)

    # (a) calibration-set bytes
    set_ids: dict[str, list[str]] = {}
    calib = None
    for source in TEXT_SOURCES:
        built = build_calibration_sets(source, tok, n=N, seq_len=SEQ_LEN, seed=SEED, sets=SETS, max_seq_len=max_len)
        set_ids[source] = [s.set_id for s in built]
        if source == "wiki":
            calib = built[0]
    if cfg.self_gen or full:
        set_ids["self"] = [_timed(timings, "self_generation", _run_self_generation, base, tok, max_len)]
    info["set_ids"] = set_ids
    if is_ref:
        np.save(here / "wiki0_ids.npy", calib.input_ids)
    ref_ids = torch.as_tensor(np.load(ref_dir / "wiki0_ids.npy"), dtype=torch.long)
    info["wiki0_equals_ref_bytes"] = bool(np.array_equal(calib.input_ids, ref_ids.numpy()))

    # (b) calibration forward on the reference's tokens
    caps = _timed(timings, "calib_forward", _capture_forward, base, ref_ids)
    torch.save(caps, here / "forward.pt")
    ref_caps = caps if is_ref else torch.load(ref_dir / "forward.pt")
    layer = base.model.layers[0]
    with torch.no_grad():
        ops = {
            "rmsnorm(ATen)": layer.input_layernorm(ref_caps["embed"]),
            "linear q_proj(MKL sgemm)": layer.self_attn.q_proj(ref_caps["ln1"]),
            "silu(ATen)": layer.mlp.act_fn(ref_caps["gate"]),
            # key kept for comparability with earlier runs: a bmm (MKL) *then* softmax (ATen)
            "softmax(ATen)": torch.softmax(ref_caps["q"][:, :, :64] @ ref_caps["q"][:, :, :64].transpose(1, 2), -1),
            "softmax-only(ATen)": torch.softmax(ref_caps["gate"][:, :, :512], -1),
        }
    torch.save(ops, here / "ops.pt")

    # (c) Hessians, (d) GPTQ solve given the reference H
    hess, solves = {}, {}
    for key, (path, cap) in PROBE_LINEARS.items():
        module = base.model.layers[0].get_submodule(path)
        hess[f"{key}:same_X"] = _timed(timings, f"hessian_{key}", _hessian, module, ref_caps[cap])
        hess[f"{key}:own_X"] = _hessian(module, caps[cap])
    torch.save(hess, here / "hessians.pt")
    ref_hess = hess if is_ref else torch.load(ref_dir / "hessians.pt")
    for key, (path, _) in PROBE_LINEARS.items():
        weight = base.model.layers[0].get_submodule(path).weight.detach().float()
        q, scale = _timed(timings, f"solve_{key}", _solve, weight, ref_hess[f"{key}:same_X"])
        solves[f"{key}:same_H"] = _codes(q, scale)
        solves[f"{key}:same_H:weight"] = q
        q_own, _ = _solve(weight, hess[f"{key}:own_X"])
        solves[f"{key}:own_H:weight"] = q_own
    torch.save(solves, here / "solves.pt")

    # (e) evaluation batching, same (dense) weights
    windows = _ppl_windows(tok)
    nll = {}
    for bs in EVAL_BATCHES:
        started = time.perf_counter()
        nll[bs] = window_nll(base, windows, batch_size=bs).nll_per_window
        timings[f"dense_ppl_bs{bs}"] = round(time.perf_counter() - started, 3)
    np.savez(here / "dense_nll.npz", **{f"bs{bs}": v for bs, v in nll.items()})
    info["dense_ppl"] = {bs: math.exp(float(v.sum()) / (len(v) * (PPL_SEQ_LEN - 1))) for bs, v in nll.items()}

    # compress + evaluate the demo cells
    if cfg.full or (full and (cfg.full_if_full or cfg.full_only)):
        from calibench.compress.fold import fold_weight_quantization

        info["cells"] = {}
        for method in METHODS:
            model, extra = _compress_cell(method, base, tok, calib, timings)
            sig = _signature(method, model)
            np.savez(here / f"{method}_signature.npz", **{k.replace(".", "/"): v for k, v in sig.items()})
            cell: dict[str, Any] = {"record_threads": extra["record_threads"]}
            if method == "gptq":
                lc_h = extra.get("lc_hessian_q_proj")
                mine = (
                    hess["q_proj:own_X"]
                    if torch.equal(ref_ids, torch.as_tensor(calib.input_ids, dtype=torch.long))
                    else None
                )
                cell["mirror_hessian_equals_llmcompressor"] = (
                    None if lc_h is None or mine is None else bool(torch.equal(lc_h, mine))
                )
                if lc_h is not None and mine is not None and not torch.equal(lc_h, mine):
                    cell["mirror_hessian_maxrel"] = _tensor_stats(mine, lc_h)["maxrel"]
                real = model.model.layers[0].self_attn.q_proj.weight.detach()
                cell["mirror_solve_equals_llmcompressor"] = bool(torch.equal(real, solves["q_proj:own_H:weight"]))
                cell["ongrid"] = all(bool(v) for k, v in sig.items() if k.endswith("#ongrid"))
                fold_weight_quantization(model)
            evals = {}
            batches = EVAL_BATCHES if is_ref else (STUDY_BATCH,)
            for bs in batches:
                started = time.perf_counter()
                evals[bs] = _evaluate(model, tok, bs, zeroshot=bs != 4)  # bs 4: perplexity only (time)
                timings[f"{method}_eval_bs{bs}"] = round(time.perf_counter() - started, 3)
            cell["eval"] = evals
            info["cells"][method] = cell
            del model
    (here / "result.json").write_text(json.dumps(info, indent=2, default=str) + "\n")


# =============================================================== driver (analysis)


def run_config(cfg: Config, out: Path, full: bool, python: str) -> float:
    env = {k: v for k, v in os.environ.items() if k not in KNOBS}
    env.update(cfg.env)
    env["TQDM_DISABLE"] = "1"
    cmd = [python, os.path.abspath(__file__), "--worker", cfg.name, "--out", str(out)] + (["--full"] if full else [])
    log = out / f"{cfg.name}.log"
    started = time.perf_counter()
    with log.open("w") as fh:
        proc = subprocess.run(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        tail = log.read_text().splitlines()[-15:]
        raise SystemExit(f"configuration {cfg.name} failed (rc {proc.returncode}); log {log}:\n" + "\n".join(tail))
    return seconds


def _load(out: Path, name: str, what: str) -> Any:
    import torch

    return torch.load(out / name / what)


def _fmt_stat(st: dict[str, Any]) -> str:
    return "=" if st["equal"] else f"≠ {st['maxrel']:.1e}"


def _signature_diff(out: Path, name: str, base: str, method: str) -> dict[str, Any]:
    """Fraction of 4-bit codes / mask entries that differ, overall and per layer; first differing layer."""
    import numpy as np

    a = np.load(out / name / f"{method}_signature.npz")
    b = np.load(out / base / f"{method}_signature.npz")
    total = differ = 0
    first_layer = None
    layer0 = [0, 0]
    for key in b.files:
        if key.endswith("#ongrid"):
            continue
        x, y = a[key], b[key]
        if method == "wanda":
            x, y = np.unpackbits(x), np.unpackbits(y)
        d = int((x != y).sum())
        total += y.size
        differ += d
        layer = int(re.search(r"layers/(\d+)/", key).group(1))
        if layer == 0:
            layer0[0] += d
            layer0[1] += y.size
        if d and (first_layer is None or layer < first_layer):
            first_layer = layer
    return {"frac": differ / total, "count": differ, "first_layer": first_layer, "layer0_frac": layer0[0] / layer0[1]}


def analyse(out: Path, names: list[str], wall: dict[str, float]) -> dict[str, Any]:
    import numpy as np
    import torch

    results = {n: json.loads((out / n / "result.json").read_text()) for n in names}
    rows = []
    for name in names:
        cfg = BY_NAME[name]
        if cfg.baseline is None:
            continue
        base = cfg.baseline
        r, b = results[name], results[base]
        row: dict[str, Any] = {
            "config": name,
            "vs": base,
            "cap": r["aten_capability"],
            "threads": r["threads"],
            "env": " ".join(f"{k}={v}" for k, v in cfg.env.items()) or "-",
        }
        # (a)
        text_same = all(r["set_ids"][s] == b["set_ids"][s] for s in TEXT_SOURCES)
        self_same = (
            (r["set_ids"]["self"] == b["set_ids"]["self"])
            if "self" in r["set_ids"] and "self" in b["set_ids"]
            else None
        )
        row["a_sets"] = ("=" if text_same else "≠") + " / " + {None: "n/a", True: "=", False: "≠"}[self_same]
        # (b)
        fa, fb = _load(out, name, "forward.pt"), _load(out, base, "forward.pt")
        fstats = {k: _tensor_stats(fa[k], fb[k]) for k in CAPTURE_ORDER}
        first = next((k for k in CAPTURE_ORDER if not fstats[k]["equal"]), None)
        row["b_first_capture"] = first or "none"
        row["b_layer0"] = _fmt_stat(fstats["layer0"])
        row["b_last"] = _fmt_stat(fstats["last"])
        oa, ob = _load(out, name, "ops.pt"), _load(out, base, "ops.pt")
        shown = {"softmax(ATen)": "bmm(MKL)+softmax(ATen)"}
        row["b_ops_differ"] = (
            ", ".join(shown.get(k, k) for k in ob if k in oa and not torch.equal(oa[k], ob[k])) or "none"
        )
        # (c)
        ha, hb = _load(out, name, "hessians.pt"), _load(out, base, "hessians.pt")
        row["c_H_sameX"] = " ".join(
            f"{k.split(':')[0]}:{_fmt_stat(_tensor_stats(ha[k], hb[k]))}" for k in hb if k.endswith("same_X")
        )
        row["c_H_ownX"] = " ".join(
            f"{k.split(':')[0]}:{_fmt_stat(_tensor_stats(ha[k], hb[k]))}" for k in hb if k.endswith("own_X")
        )
        # (d)
        sa, sb = _load(out, name, "solves.pt"), _load(out, base, "solves.pt")
        parts = []
        for key in PROBE_LINEARS:
            w = _tensor_stats(sa[f"{key}:same_H:weight"], sb[f"{key}:same_H:weight"])
            flips = int((sa[f"{key}:same_H"] != sb[f"{key}:same_H"]).sum())
            parts.append(f"{key}:{'=' if w['equal'] else f'≠ {flips} codes'}")
        row["d_solve_sameH"] = " ".join(parts)
        # (e)
        na, nb = np.load(out / name / "dense_nll.npz"), np.load(out / base / "dense_nll.npz")
        row["e_dense_bs16_vs_base"] = _fmt_stat(
            _tensor_stats(torch.from_numpy(na["bs16"]), torch.from_numpy(nb["bs16"]))
        )
        row["e_bs1_4_vs_16"] = " ".join(
            f"bs{bs}:{_fmt_stat(_tensor_stats(torch.from_numpy(na[f'bs{bs}']), torch.from_numpy(na['bs16'])))}"
            for bs in (1, 4)
        )
        # end to end
        for method in METHODS:
            if (out / name / f"{method}_signature.npz").exists() and (out / base / f"{method}_signature.npz").exists():
                d = _signature_diff(out, name, base, method)
                row[f"{method}_flips"] = (
                    f"{d['frac']:.2%} (from layer {d['first_layer']}, layer0 {d['layer0_frac']:.2%})"
                    if d["count"]
                    else "identical"
                )
            else:
                row[f"{method}_flips"] = "-"
        # the first step that changes when its inputs are identical
        first_step = "none"
        if not text_same or self_same is False:
            first_step = "(a) sets"
        elif first is not None:
            first_step = f"(b) forward: {first}"
        elif not row["c_H_sameX"].count("=") == len(PROBE_LINEARS):
            first_step = "(c) Hessian"
        elif "≠" in row["d_solve_sameH"]:
            first_step = "(d) solve"
        elif row["e_dense_bs16_vs_base"] != "=":
            first_step = "(e) eval"
        row["first_diverging"] = first_step
        rows.append(row)

    # within-configuration batch-size effect, every configuration (the reference included)
    batch_rows = []
    for name in names:
        na = np.load(out / name / "dense_nll.npz")
        batch_rows.append(
            [name]
            + [_fmt_stat(_tensor_stats(torch.from_numpy(na[f"bs{bs}"]), torch.from_numpy(na["bs16"]))) for bs in (1, 4)]
            + [f"{results[name]['dense_ppl']['16']:.6f}"]
        )
    # noise floor
    noise: dict[str, list[dict[str, Any]]] = {m: [] for m in METHODS}
    for name in names:
        cells = results[name].get("cells") or {}
        for method, cell in cells.items():
            for bs, ev in cell["eval"].items():
                kind = "pinned" if name.startswith("pinned") else "perturbation"
                label = f"{name}" + ("" if int(bs) == STUDY_BATCH else f", eval bs {bs}")
                acc = [ev[t] for t in ZS_TASKS if ev.get(t) is not None]
                noise[method].append(
                    {
                        "perturbation": label,
                        "config": name,
                        "bs": int(bs),
                        "kind": kind,
                        "ppl": ev["ppl:wiki"],
                        **{t: ev.get(t) for t in ZS_TASKS},
                        "avg_acc": sum(acc) / len(acc) if acc else None,
                    }
                )
    return {"rows": rows, "noise": noise, "results": results, "wall": wall, "batch_rows": batch_rows}


def across_set_spread(report: Path) -> dict[str, dict[str, float]]:
    """std and range across the 3 sets, wiki source and mean over sources, from the committed demo report."""
    spread: dict[str, dict[str, float]] = {}
    if not report.exists():
        return spread
    text = report.read_text()
    ppl_part = text.split("## Perplexity across sets")[-1]
    acc_part = text.split("## Average accuracy across sets")[-1].split("##")[0]
    for method, (label, _) in METHODS.items():
        ppl_rows = re.findall(
            rf"\| {re.escape(MODEL)} \| {re.escape(label)} \| ([\w-]+) \|[^\n]*?\| ppl:wiki \| 3 \| "
            r"([\d.]+) \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \|",
            ppl_part,
        )
        acc_rows = re.findall(
            rf"\| {re.escape(MODEL)} \| {re.escape(label)} \| ([\w-]+) \| \d+ \| \d+ \| 3 \| "
            r"([\d.]+) \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \|",
            acc_part,
        )
        entry: dict[str, float] = {}
        for src, mean, std, _mn, _mx, rng in ppl_rows:
            if src == "wiki":
                entry.update(wiki_ppl_mean=float(mean), wiki_ppl_std=float(std), wiki_ppl_range=float(rng))
        if ppl_rows:
            entry["mean_ppl_std_over_sources"] = statistics.mean(float(r[2]) for r in ppl_rows)
        for src, _mean, std, _mn, _mx, rng in acc_rows:
            if src == "wiki":
                entry.update(wiki_acc_std=float(std), wiki_acc_range=float(rng))
        if acc_rows:
            entry["mean_acc_std_over_sources"] = statistics.mean(float(r[2]) for r in acc_rows)
        spread[method] = entry
    return spread


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def render(an: dict[str, Any], spread: dict[str, dict[str, float]]) -> str:
    out = []
    res = an["results"]
    ref = res["ref"]
    out.append(
        f"Reference: ATen {ref['aten_capability']}, MKL {ref['mkl']}, {ref['threads']} thread(s); "
        f"wiki set 0 id {ref['set_ids']['wiki'][0]}; dense ppl:wiki (bs 16) {ref['dense_ppl']['16']:.4f}\n"
    )
    out.append(
        "## First divergence per step (each configuration vs its baseline; '=' bit-identical, '≠ x' max |a-b|/max|b|)\n"
    )
    headers = [
        "config",
        "vs",
        "ATen",
        "thr",
        "env",
        "(a) sets text/self",
        "(b) first differing activation",
        "(b) layer0 out",
        "(b) last hidden",
        "(b) ops differing on same input",
        "(c) H, same X",
        "(c) H, own X",
        "(d) solve, same H",
        "(e) dense NLL bs16",
        "(e) bs1/bs4 vs bs16",
        "gptq codes flipped",
        "wanda mask flipped",
        "first diverging step",
    ]
    keys = [
        "config",
        "vs",
        "cap",
        "threads",
        "env",
        "a_sets",
        "b_first_capture",
        "b_layer0",
        "b_last",
        "b_ops_differ",
        "c_H_sameX",
        "c_H_ownX",
        "d_solve_sameH",
        "e_dense_bs16_vs_base",
        "e_bs1_4_vs_16",
        "gptq_flips",
        "wanda_flips",
        "first_diverging",
    ]
    out.append(_table(headers, [[r[k] for k in keys] for r in an["rows"]]))
    out.append("\n## (e) Dense per-window NLL at eval batch 1 and 4 vs 16, within each configuration\n")
    out.append(_table(["config", "bs1 vs bs16", "bs4 vs bs16", "dense ppl:wiki bs16"], an["batch_rows"]))
    ref_cells = ref.get("cells", {})
    if "gptq" in ref_cells:
        g = ref_cells["gptq"]
        out.append(
            f"\nMirror check (reference run): Hessian of layer 0 q_proj equals llm-compressor's: "
            f"{g.get('mirror_hessian_equals_llmcompressor')}; solve equals the weight GPTQ wrote: "
            f"{g.get('mirror_solve_equals_llmcompressor')}; all GPTQ weights on their 4-bit grid: {g.get('ongrid')}"
        )
    # noise floor
    out.append("\n## Noise floor: demo cells on wiki set 0 under perturbations that should not matter\n")
    for method, (label, _) in METHODS.items():
        rows = an["noise"][method]
        if not rows:
            continue
        table = [
            [label, r["perturbation"], f"{r['ppl']:.4f}"]
            + [f"{r[t]:.4f}" if r[t] is not None else "-" for t in ZS_TASKS]
            + [f"{r['avg_acc']:.4f}" if r["avg_acc"] is not None else "-"]
            for r in rows
        ]
        out.append(_table(["cell", "perturbation", "ppl:wiki", *ZS_TASKS, "avg acc"], table))
        pert = [r for r in rows if r["kind"] == "perturbation"]
        ppls = [r["ppl"] for r in pert]
        accs = [r["avg_acc"] for r in pert if r["avg_acc"] is not None]
        s = spread.get(method, {})

        def sd(v: list[float]) -> float:
            return statistics.stdev(v) if len(v) > 1 else 0.0

        line = (
            f"\n{label}: {len(ppls)} unpinned runs, {len(set(round(p, 10) for p in ppls))} distinct ppl; "
            f"ppl std {sd(ppls):.4f}, range {max(ppls) - min(ppls):.4f} (mean {statistics.mean(ppls):.3f}); "
            f"avg acc std {sd(accs):.4f}, range {max(accs) - min(accs):.4f}"
        )
        if s:
            line += (
                f".  Across sets (docs/demo-report): wiki ppl std {s.get('wiki_ppl_std', float('nan')):.4f}, "
                f"range {s.get('wiki_ppl_range', float('nan')):.4f}; mean ppl std over sources "
                f"{s.get('mean_ppl_std_over_sources', float('nan')):.4f}; wiki avg-acc std "
                f"{s.get('wiki_acc_std', float('nan')):.4f}; ratio floor/across-set ppl std "
                f"{sd(ppls) / s['wiki_ppl_std']:.2f}"
                if s.get("wiki_ppl_std")
                else ""
            )
        out.append(line + "\n")
        pinned = [r for r in rows if r["config"].startswith("pinned")]
        if pinned:
            vals = sorted({round(r["ppl"], 12) for r in pinned})
            out.append(
                f"{label} pinned runs ({', '.join(r['perturbation'] for r in pinned)}): "
                f"{len(vals)} distinct ppl value(s): {', '.join(f'{v:.6f}' for v in vals)}\n"
            )
    # cost
    out.append("## Time (seconds, this run; ratio vs ref in brackets; the machine is shared, so +-10% is noise)\n")
    pieces = [
        "calib_forward",
        "solve_q_proj",
        "solve_down_proj",
        "dense_ppl_bs16",
        "gptq_compress",
        "wanda_compress",
        "gptq_eval_bs16",
        "wanda_eval_bs16",
    ]
    trows = []
    for name, r in res.items():
        t = r["timings"]
        cells = []
        for p in pieces:
            if p in t:
                ratio = t[p] / ref["timings"][p] if p in ref["timings"] and ref["timings"][p] else float("nan")
                cells.append(f"{t[p]:.2f} ({ratio:.2f}x)")
            else:
                cells.append("-")
        trows.append([name, f"{an['wall'].get(name, float('nan')):.0f}"] + cells)
    out.append(_table(["config", "worker wall", *pieces], trows))
    return "\n".join(out) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="directory for tensors, logs and report.md")
    parser.add_argument(
        "--full", action="store_true", help="more configurations, and compress+evaluate in more of them"
    )
    parser.add_argument("--configs", help="comma-separated subset (ref is always run first)")
    parser.add_argument("--analyse-only", action="store_true", help="re-render from an existing --out")
    parser.add_argument(
        "--skip-done", action="store_true", help="do not rerun configurations that have a result in --out"
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    out = args.out.resolve()
    if args.worker:
        worker(args.worker, out, args.full)
        return
    out.mkdir(parents=True, exist_ok=True)
    chosen = [c for c in CONFIGS if args.full or not c.full_only]
    if args.configs:
        wanted = set(args.configs.split(",")) | {"ref"}
        unknown = wanted - set(BY_NAME)
        if unknown:
            raise SystemExit(f"unknown configuration(s): {', '.join(sorted(unknown))}; known: {', '.join(BY_NAME)}")
        chosen = [c for c in CONFIGS if c.name in wanted]
        for c in list(chosen):  # baselines first
            if c.baseline and c.baseline not in {x.name for x in chosen}:
                chosen.insert(0, BY_NAME[c.baseline])
    wall_file = out / "wall.json"
    wall: dict[str, float] = json.loads(wall_file.read_text()) if wall_file.exists() else {}
    if not args.analyse_only:
        started = time.perf_counter()
        for cfg in chosen:
            if args.skip_done and (out / cfg.name / "result.json").exists():
                continue
            print(
                f"[{time.perf_counter() - started:6.0f} s] running {cfg.name} ({cfg.env or 'native'}, "
                f"{cfg.threads} thread(s))",
                flush=True,
            )
            wall[cfg.name] = run_config(cfg, out, args.full, sys.executable)
            wall_file.write_text(json.dumps(wall, indent=2))
        print(f"[{time.perf_counter() - started:6.0f} s] all configurations done", flush=True)
    names = [c.name for c in CONFIGS if (out / c.name / "result.json").exists()]
    an = analyse(out, names, wall)
    spread = across_set_spread(Path(__file__).resolve().parents[1] / "docs" / "demo-report" / "report.md")
    text = render(an, spread)
    (out / "report.md").write_text(text)
    (out / "summary.json").write_text(
        json.dumps({"rows": an["rows"], "noise": an["noise"], "spread": spread, "wall": wall}, indent=2, default=str)
        + "\n"
    )
    print(text)


if __name__ == "__main__":
    main()
