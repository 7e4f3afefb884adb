"""GPU check: calibench's compress() on a Llama-3.1-8B-shaped model, against the chip's compute floor.

Prepared for one H100/H200 with no network and no weights: every model is
built from a config with random bf16 weights, directly on the GPU (no float32
copy in host RAM), with a fixed seed so each stage compresses the same model.

Stages (each on a freshly built model; JSON rewritten after every stage; run
in the order of ``--stages``, by default 8b-gptq, 1b-cell, offload-probe,
8b-sparsegpt, so that a tight budget drops the second 8B timing first):

1. ``8b-gptq``: Llama-3.1-8B shape (hidden 4096, 32 layers, 32 heads, 8 KV
   heads, intermediate 14336, vocab 128256), GPTQ W4 group 128, through
   ``calibench.compress.compress`` with a 128 x 2048 random-token
   ``CalibrationSet`` (built with ``CalibrationSet.create``);
2. ``8b-sparsegpt``: the same model shape, SparseGPT 50% unstructured;
3. ``1b-cell``: one study cell of a Llama-3.2-1B shape (hidden 2048, 16
   layers, 32 heads, 8 KV heads, intermediate 8192, vocab 128256, tied
   embeddings): GPTQ W4 g128 with the same set, then perplexity through
   ``calibench.evaluation.evaluate(model, "ppl:<local text file>", ...)``;
4. ``offload-probe`` (seconds): a tiny model built on the CPU, compressed
   while a GPU is visible: which device its parameters report afterwards,
   where their storage is, and one forward's time (llm-compressor leaves
   every module dispatched for on/offloading).

For each compression: wall time, peak GPU memory
(``torch.cuda.max_memory_allocated``, reset before the stage), and the ratio
of the time to a compute floor.  The floor, with T = n x seq_len calibration
tokens, L layers, hidden size d, and over every Linear that is compressed
(``in`` x ``out``, the output head excluded):

* forward  = passes x [2 x P_linear_all x T + 4 x L x seq_len x d x T]
  where P_linear_all counts every Linear the pipeline runs (the head
  included) and the second term is attention's QK^T and AV without the causal
  halving; passes = 2 because llm-compressor's sequential pipeline runs every
  layer twice (once to calibrate, once to propagate the compressed outputs);
* hessian  = sum over compressed Linears of 2 x T x in^2 (X^T X, one per
  module, as llm-compressor accumulates it, even where q/k/v share an input);
* solve    = sum over compressed Linears of in^3 (Cholesky and inverse of H)
  + out x in^2 (the column-by-column error feedback W -= err x Hinv,
  one multiply-add per weight per remaining column, on average in/2 columns).

``floor_bf16_s`` puts all of it at the chip's dense bf16 tensor rate
(H100 SXM / H200: 989 TFLOP/s); ``floor_mixed_s`` puts the Hessian and the
solve at the FP32 non-tensor rate (67 TFLOP/s), since llm-compressor
accumulates and solves in float32 with TF32 off (torch's default).  Real
runs sit well above both: GPTQ's solve is a sequential column loop, and the
pipeline moves every layer's activations to the CPU and back.

Tokenizer: no files are needed.  By default a byte-level BPE (8,192 tokens,
``tokenizers``) is trained offline on a few Python standard-library modules;
``--tokenizer DIR`` (or ``smollm2-135m`` when its asset is pulled) uses a real
one.  Its vocabulary must not exceed the model's (128,256).  The perplexity
text is another, disjoint set of standard-library modules, written to a
temporary .txt file.  Random weights make the perplexity meaningless as a
quality number; the cell checks the end-to-end path and its time.

    python benchmarks/gpu_check.py                 # on the GPU machine, ~10 min at most
    python benchmarks/gpu_check.py --tiny          # anywhere, CPU is enough, < 1 min

Results go to ``$OUT/gpu_check.json`` when ``$OUT`` is set (or ``--json``).
Without CUDA and without ``--tiny`` it prints one line and exits 2.  A stage
whose estimated time would overrun ``--budget-s`` is skipped and marked so.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("LLM_COMPRESSOR_LOG_LEVEL", "WARNING")

# (dense bf16 tensor TFLOP/s, FP32 non-tensor TFLOP/s), by a substring of torch.cuda.get_device_name()
PEAK_TFLOPS = {
    "H200": (989.0, 67.0),
    "H100 PCIe": (756.0, 51.0),
    "H100 NVL": (835.0, 60.0),
    "H100": (989.0, 67.0),  # SXM
    "A100": (312.0, 19.5),
    "L40S": (362.0, 91.6),
}

SHAPES: dict[str, dict[str, Any]] = {
    "llama-3.1-8b": dict(
        hidden_size=4096,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=8,
        intermediate_size=14336,
        vocab_size=128256,
        tie_word_embeddings=False,
        max_position_embeddings=131072,
        rope_theta=500000.0,
    ),
    "llama-3.2-1b": dict(
        hidden_size=2048,
        num_hidden_layers=16,
        num_attention_heads=32,
        num_key_value_heads=8,
        intermediate_size=8192,
        vocab_size=128256,
        tie_word_embeddings=True,
        max_position_embeddings=131072,
        rope_theta=500000.0,
    ),
    # --tiny: the same structure, small enough for a CPU in seconds (dims divisible by group size 128)
    "tiny-8b": dict(
        hidden_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=256,
        vocab_size=None,
        tie_word_embeddings=False,
        max_position_embeddings=256,
    ),
    "tiny-1b": dict(
        hidden_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=384,
        vocab_size=None,
        tie_word_embeddings=True,
        max_position_embeddings=256,
    ),
}

# default order: the headline timing, then the cheap end-to-end checks, then the second 8B timing (budget allowing)
STAGES = ("8b-gptq", "1b-cell", "offload-probe", "8b-sparsegpt")

TOKENIZER_TEXT = ("argparse", "inspect", "typing", "dataclasses", "pathlib", "textwrap")
EVAL_TEXT = ("functools", "enum", "shutil", "subprocess", "tarfile", "zipfile", "ast", "logging/__init__")


# ----------------------------------------------------------------------------- inputs


def stdlib_text(modules: tuple[str, ...]) -> str:
    """Source of standard-library modules: text present on any machine with Python."""
    import sysconfig

    root = Path(sysconfig.get_paths()["stdlib"])
    parts = []
    for name in modules:
        path = root / f"{name}.py"
        if path.is_file():
            parts.append(path.read_text(encoding="utf-8", errors="replace"))
    if not parts:
        raise SystemExit(
            "gpu_check: no standard-library sources found for the offline text: pass --tokenizer and --text"
        )
    return "\n\n".join(parts)


def make_tokenizer(spec: str | None, vocab_size: int) -> tuple[Any, str]:
    """A Hugging Face fast tokenizer built offline (byte-level BPE), or a real one from ``spec``."""
    if spec:
        from calibench.models import load_tokenizer

        return load_tokenizer(spec), spec
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<s>", "</s>", "<pad>", "<unk>"],
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    text = stdlib_text(TOKENIZER_TEXT)
    tok.train_from_iterator(text.split("\n\n"), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>"
    )
    fast.name_or_path = f"stdlib-bytelevel-bpe-{vocab_size}"
    return fast, fast.name_or_path


def random_set(tokenizer: Any, n: int, seq_len: int, seed: int) -> Any:
    """n x seq_len token ids drawn uniformly from the tokenizer's vocabulary, as a CalibrationSet."""
    import numpy as np

    from calibench.data.calibset import CalibrationSet, SamplingRecord, SourceRecord

    rng = np.random.default_rng(seed)
    ids = rng.integers(0, len(tokenizer), size=(n, seq_len), dtype=np.int64)
    return CalibrationSet.create(
        ids,
        tokenizer,
        seed=seed,
        source=SourceRecord(name="random-uniform", kind="random", split="none", spec={"vocab": len(tokenizer)}),
        sampling=SamplingRecord(mode="random", bos=False),
    )


def build_model(shape: str, vocab: int, device: Any, dtype: Any, seed: int) -> tuple[Any, float]:
    """A Llama of the named shape with random weights, allocated on ``device`` in ``dtype`` directly.

    llm-compressor 0.14's ``oneshot`` re-reads the model's config from disk
    (``AutoConfig.from_pretrained(model.config.name_or_path)`` in
    ``Oneshot.validate_model``), so a model that exists only in memory fails
    there; its config.json (no weights) is written to a directory that
    ``name_or_path`` then names.
    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    fields = dict(SHAPES[shape])
    fields["vocab_size"] = fields["vocab_size"] or vocab
    config = LlamaConfig(**fields, bos_token_id=0, eos_token_id=1, pad_token_id=2)
    config_dir = Path(tempfile.mkdtemp(prefix=f"gpu-check-{shape}-"))
    config.save_pretrained(config_dir)
    config._name_or_path = str(config_dir)
    started = time.perf_counter()
    torch.manual_seed(seed)
    with torch.device(device):
        model = LlamaForCausalLM._from_config(config, dtype=dtype)
    model.eval()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return model, time.perf_counter() - started


# ----------------------------------------------------------------------------- the floor


def compute_floor(model: Any, tokens: int, seq_len: int, peaks: tuple[float, float] | None) -> dict[str, Any]:
    """FLOPs of the work any GPTQ/SparseGPT run must do, and the seconds it takes at the chip's peak."""
    import torch

    from calibench.compress.validate import target_linears

    cfg = model.config
    targets = target_linears(model)
    all_linear = sum(m.in_features * m.out_features for m in model.modules() if isinstance(m, torch.nn.Linear))
    passes = 2
    forward = passes * (2 * all_linear * tokens + 4 * cfg.num_hidden_layers * seq_len * cfg.hidden_size * tokens)
    hessian = sum(2 * tokens * m.in_features**2 for m in targets.values())
    solve = sum(m.in_features**3 + m.out_features * m.in_features**2 for m in targets.values())
    out: dict[str, Any] = {
        "formula": "forward = 2 passes x (2*P_linear*T + 4*L*seq*d*T); hessian = sum 2*T*in^2; "
        "solve = sum in^3 + out*in^2",
        "tokens": tokens,
        "linear_params_all": all_linear,
        "linear_params_compressed": sum(m.in_features * m.out_features for m in targets.values()),
        "compressed_linears": len(targets),
        "forward_tflop": forward / 1e12,
        "hessian_tflop": hessian / 1e12,
        "solve_tflop": solve / 1e12,
        "total_tflop": (forward + hessian + solve) / 1e12,
    }
    if peaks is not None:
        bf16, fp32 = peaks
        out["peak_bf16_tflops"], out["peak_fp32_tflops"] = bf16, fp32
        out["floor_bf16_s"] = (forward + hessian + solve) / (bf16 * 1e12)
        out["floor_mixed_s"] = forward / (bf16 * 1e12) + (hessian + solve) / (fp32 * 1e12)
    return out


def chip_peaks(device: Any, override: float | None) -> tuple[str, tuple[float, float] | None]:
    import torch

    if device.type != "cuda":
        name = "cpu"
        found = None
    else:
        name = torch.cuda.get_device_name(device)
        found = next((v for k, v in PEAK_TFLOPS.items() if k in name), None)
    if override:
        found = (override, found[1] if found else override / 14.8)
    return name, found


# ----------------------------------------------------------------------------- stages


class Runner:
    def __init__(self, args: argparse.Namespace, device: Any, json_path: Path | None):
        self.args, self.device, self.json_path = args, device, json_path
        self.started = time.perf_counter()
        self.results: dict[str, Any] = {"stages": {}}

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def save(self) -> None:
        if self.json_path is None:
            return
        self.results["elapsed_s"] = round(self.elapsed(), 2)
        self.json_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.json_path.with_name(f".{self.json_path.name}.tmp")
        tmp.write_text(json.dumps(self.results, indent=2, default=str) + "\n")
        tmp.replace(self.json_path)

    def fits(self, name: str, estimate_s: float | None) -> bool:
        if estimate_s is None or self.elapsed() + estimate_s <= self.args.budget_s:
            return True
        self.results["stages"][name] = {
            "status": "skipped",
            "reason": f"estimated {estimate_s:.0f} s would overrun --budget-s "
            f"{self.args.budget_s:.0f} at {self.elapsed():.0f} s",
        }
        print(f"[{name}] skipped: {self.results['stages'][name]['reason']}", flush=True)
        self.save()
        return False

    def stage(self, name: str, fn: Any) -> dict[str, Any] | None:
        import torch

        print(f"[{name}] start at {self.elapsed():.0f} s", flush=True)
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)
        try:
            out = fn()
            out["status"] = "ok"
        except Exception as exc:  # one stage failing (OOM, a library error) must not lose the others
            out = {
                "status": "failed",
                "error": f"{type(exc).__name__}: {exc}"[:2000],
                "traceback": traceback.format_exc()[-4000:],
            }
            print(f"[{name}] FAILED: {out['error'].splitlines()[0]}", flush=True)
        try:  # the llm-compressor session can keep the last model alive; drop it before the next stage builds one
            from llmcompressor.core import reset_session

            reset_session()
        except ImportError:
            pass
        import gc

        gc.collect()
        if self.device.type == "cuda":
            out["peak_gpu_gib"] = torch.cuda.max_memory_allocated(self.device) / 2**30
            torch.cuda.empty_cache()
            out["gpu_gib_left_allocated"] = torch.cuda.memory_allocated(self.device) / 2**30
        self.results["stages"][name] = out
        self.save()
        return out


def offload_probe(runner: Runner, tokenizer: Any) -> dict[str, Any]:
    """Where a model loaded on the CPU ends up after compress() on a machine with a GPU.

    llm-compressor's sequential pipeline dispatches every module with
    compressed-tensors' offloading (onload to its main device, the GPU when
    there is one; offload to the module's current device) and leaves it so.
    This records what the parameters report afterwards, where their storage
    really is, and how long one forward takes, for a small model built on the CPU.
    """
    import torch

    from calibench.compress import compress

    cpu = torch.device("cpu")
    model, _ = build_model("tiny-8b", len(tokenizer), cpu, torch.float32, runner.args.seed)
    small = random_set(tokenizer, 4, 64, runner.args.seed)
    ids = torch.from_numpy(small.input_ids[:1].astype("int64"))
    out: dict[str, Any] = {"devices_before": sorted({str(p.device) for p in model.parameters()})}
    started = time.perf_counter()
    result = compress(model, small, "gptq", tokenizer=tokenizer, seed=runner.args.seed, bits=4, group_size=128)
    out["compress_s"] = time.perf_counter() - started
    model = result.model
    out["devices_reported_after"] = sorted({str(p.device) for p in model.parameters()})
    storage = set()
    try:
        from compressed_tensors.offload.cache.base import OffloadCache

        wrapped = [m for m in model.modules() if isinstance(m._parameters, OffloadCache)]
        out["offload_wrapped_modules_after"] = len(wrapped)
        for module in wrapped:
            cache = module._parameters
            out.setdefault("onload_device", str(getattr(cache, "onload_device", "?")))
            storage |= {str(t.device) for t in cache.offloaded_values.values() if t is not None}
    except ImportError:
        pass
    out["storage_devices_after"] = sorted(storage)
    device = next(model.parameters()).device
    with torch.no_grad():
        model(ids.to(device))
        started = time.perf_counter()
        model(ids.to(device))
        out["forward_s_after"] = time.perf_counter() - started
    print(
        f"[offload-probe] CPU-built model after compress: parameters report {out['devices_reported_after']}, "
        f"storage {out['storage_devices_after']}, {out.get('offload_wrapped_modules_after')} modules still "
        f"dispatched, one forward {out['forward_s_after'] * 1e3:.1f} ms",
        flush=True,
    )
    return out


def compress_stage(
    runner: Runner,
    shape: str,
    method: str,
    params: dict[str, Any],
    calib: Any,
    tokenizer: Any,
    peaks: Any,
    evaluate_text: Path | None = None,
) -> dict[str, Any]:
    import torch

    from calibench.compress import compress

    args = runner.args
    model, build_s = build_model(shape, len(tokenizer), runner.device, torch.bfloat16, args.seed)
    out: dict[str, Any] = {
        "shape": shape,
        "method": method,
        "params": params,
        "build_s": build_s,
        "n": calib.n,
        "seq_len": calib.seq_len,
        "params_total": sum(p.numel() for p in model.parameters()),
    }
    out["floor"] = compute_floor(model, calib.n * calib.seq_len, calib.seq_len, peaks)
    if runner.device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats(runner.device)
        out["model_gib"] = torch.cuda.memory_allocated(runner.device) / 2**30
    started = time.perf_counter()
    result = compress(model, calib, method, tokenizer=tokenizer, seed=args.seed, **params)
    if runner.device.type == "cuda":
        torch.cuda.synchronize()
        out["compress_peak_gpu_gib"] = torch.cuda.max_memory_allocated(runner.device) / 2**30
    out["compress_s"] = time.perf_counter() - started
    out["record_wall_time_s"] = result.record["wall_time_s"]
    out["achieved"] = result.record["achieved"]
    out["record_memory"] = result.record["memory"]
    out["notes"] = result.notes
    devices = sorted({str(p.device) for p in result.model.parameters()})
    out["param_devices_after"] = devices  # compress() must leave the model where it was
    try:  # llm-compressor's oneshot wraps modules for on/offloading (compressed-tensors); do they stay wrapped?
        from compressed_tensors.offload.cache.base import OffloadCache

        out["offload_wrapped_modules_after"] = sum(
            isinstance(m._parameters, OffloadCache) for m in result.model.modules()
        )
    except ImportError:
        pass
    floor = out["floor"]
    if "floor_bf16_s" in floor:
        out["time_over_floor_bf16"] = out["compress_s"] / floor["floor_bf16_s"]
        out["time_over_floor_mixed"] = out["compress_s"] / floor["floor_mixed_s"]
    print(
        f"[{shape} {method}] compress {out['compress_s']:.1f} s (build {build_s:.1f} s), "
        f"achieved {out['achieved']}, devices {devices}"
        + (f", peak GPU {out['compress_peak_gpu_gib']:.1f} GiB" if "compress_peak_gpu_gib" in out else "")
        + (
            f", x{out['time_over_floor_bf16']:.0f} bf16 floor ({floor['floor_bf16_s']:.2f} s), "
            f"x{out['time_over_floor_mixed']:.1f} mixed floor ({floor['floor_mixed_s']:.2f} s)"
            if "time_over_floor_bf16" in out
            else f", floor {floor['total_tflop']:.3g} TFLOP"
        ),
        flush=True,
    )
    if evaluate_text is not None:
        from calibench.evaluation import evaluate

        started = time.perf_counter()
        ev = evaluate(
            result.model,
            f"ppl:{evaluate_text}",
            tokenizer=tokenizer,
            max_windows=args.ppl_windows,
            seq_len=args.ppl_seq_len,
            batch_size=args.ppl_batch,
        )
        out["eval_s"] = time.perf_counter() - started
        out["perplexity"] = [{"task": r.task, "value": r.value, "stderr": r.stderr, "n": r.n} for r in ev.rows]
        out["eval_settings"] = {k: ev.settings.get(k) for k in ("seq_len", "bos_resolved", "batch_size", "device")}
        if runner.device.type == "cuda":
            torch.cuda.synchronize()
            out["eval_peak_gpu_gib"] = torch.cuda.max_memory_allocated(runner.device) / 2**30
        print(
            f"[{shape} cell] eval {out['eval_s']:.1f} s: {out['perplexity']} (random weights: not a quality number)",
            flush=True,
        )
    del result, model
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--tiny", action="store_true", help="tiny shapes and few tokens: checks the script on a CPU in < 1 min"
    )
    ap.add_argument("--device", default=None, help="default: cuda when available, else cpu (cpu only with --tiny)")
    ap.add_argument("--n", type=int, default=None, help="calibration windows (default 128; --tiny 4)")
    ap.add_argument("--seq-len", type=int, default=None, help="window length (default 2048; --tiny 64)")
    ap.add_argument(
        "--stages",
        default=",".join(STAGES),
        help="comma-separated, run in this order (the default puts the cheap checks before SparseGPT 8B)",
    )
    ap.add_argument(
        "--tokenizer", default=None, help="tokenizer spec or directory (default: an offline byte-level BPE)"
    )
    ap.add_argument("--tokenizer-vocab", type=int, default=8192, help="vocabulary of the offline BPE")
    ap.add_argument("--text", type=Path, default=None, help="perplexity text file (default: stdlib sources)")
    ap.add_argument("--ppl-windows", type=int, default=None, help="perplexity windows (default 32; --tiny 2)")
    ap.add_argument("--ppl-seq-len", type=int, default=None, help="perplexity window (default 2048; --tiny 64)")
    ap.add_argument("--ppl-batch", type=int, default=8)
    ap.add_argument("--peak-tflops", type=float, default=None, help="dense bf16 peak when the chip is not recognised")
    ap.add_argument("--budget-s", type=float, default=540.0, help="skip a stage whose estimate would end past this")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=None, help="default: $OUT/gpu_check.json when $OUT is set")
    args = ap.parse_args()

    import torch

    if not args.tiny and not torch.cuda.is_available():
        print(
            "gpu_check: no CUDA GPU visible (torch "
            f"{torch.__version__}, CUDA build {torch.version.cuda}): run it on the GPU machine, or --tiny on a CPU"
        )
        return 2
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    tiny = args.tiny
    args.n = args.n or (4 if tiny else 128)
    args.seq_len = args.seq_len or (64 if tiny else 2048)
    args.ppl_windows = args.ppl_windows or (2 if tiny else 32)
    args.ppl_seq_len = args.ppl_seq_len or (64 if tiny else 2048)
    big, small = ("tiny-8b", "tiny-1b") if tiny else ("llama-3.1-8b", "llama-3.2-1b")
    json_path = args.json or (Path(os.environ["OUT"]) / "gpu_check.json" if os.environ.get("OUT") else None)

    runner = Runner(args, device, json_path)
    chip, peaks = chip_peaks(device, args.peak_tflops)
    tokenizer, tok_name = make_tokenizer(args.tokenizer, 512 if tiny and not args.tokenizer else args.tokenizer_vocab)
    if len(tokenizer) > SHAPES["llama-3.1-8b"]["vocab_size"]:
        print(f"gpu_check: tokenizer {tok_name} has {len(tokenizer)} tokens, more than the model's 128256")
        return 2
    calib = random_set(tokenizer, args.n, args.seq_len, args.seed)
    runner.results.update(
        {
            "device": str(device),
            "chip": chip,
            "peaks_tflops": peaks,
            "tiny": tiny,
            "torch": torch.__version__,
            "cuda": torch.version.cuda,
            "threads": torch.get_num_threads(),
            "tokenizer": {"name": tok_name, "vocab": len(tokenizer)},
            "calibration_set": {"id": calib.set_id, "n": calib.n, "seq_len": calib.seq_len},
            "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        }
    )
    try:
        from importlib.metadata import version

        runner.results["versions"] = {p: version(p) for p in ("transformers", "llmcompressor", "compressed-tensors")}
    except Exception:  # informative only
        pass
    print(
        f"gpu_check on {chip} ({device}), {calib.n} x {calib.seq_len} random tokens, tokenizer {tok_name} "
        f"({len(tokenizer)} tokens), peaks {peaks}",
        flush=True,
    )
    runner.save()

    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    unknown = sorted(set(stages) - set(STAGES))
    if unknown:
        print(f"gpu_check: unknown stage(s) {', '.join(unknown)} (known: {', '.join(STAGES)})")
        return 2
    gptq = {"bits": 4, "group_size": 128}
    with tempfile.TemporaryDirectory() as tmp:
        text_path = args.text
        if text_path is None:
            text_path = Path(tmp) / "heldout.txt"
            text_path.write_text(stdlib_text(EVAL_TEXT), encoding="utf-8")
        runs = {
            "8b-gptq": lambda: compress_stage(runner, big, "gptq", gptq, calib, tokenizer, peaks),
            "8b-sparsegpt": lambda: compress_stage(
                runner, big, "sparsegpt", {"sparsity": 0.5}, calib, tokenizer, peaks
            ),
            "1b-cell": lambda: compress_stage(
                runner, small, "gptq", gptq, calib, tokenizer, peaks, evaluate_text=text_path
            ),
            "offload-probe": lambda: offload_probe(runner, tokenizer),
        }
        big_s: float | None = None  # seconds of the first 8B stage (build + compress): the estimate for the next
        for name in stages:
            estimate = {
                "8b-gptq": big_s,
                "8b-sparsegpt": big_s,
                "offload-probe": 30.0,
                "1b-cell": None if big_s is None else 0.3 * big_s + 30,
            }[name]
            if not runner.fits(name, estimate):
                continue
            out = runner.stage(name, runs[name])
            if name.startswith("8b") and out.get("status") == "ok" and big_s is None:
                big_s = out["compress_s"] + out["build_s"]
    runner.save()
    failed = [k for k, v in runner.results["stages"].items() if v.get("status") == "failed"]
    print(
        f"done in {runner.elapsed():.0f} s; stages: "
        + ", ".join(f"{k} {v.get('status')}" for k, v in runner.results["stages"].items())
        + (f"; results in {json_path}" if json_path else ""),
        flush=True,
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
