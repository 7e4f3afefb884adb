"""Bad-input rows of vLLM evaluation (tests/cli/test_bad_inputs.py runs them): `calibench eval`'s engine options and
study specs with ``eval.backend: vllm``.

This machine has neither vLLM nor a GPU: a vLLM study is refused by the preflight, before any set is built or any
model loads, and before the study directory is created; a vLLM setting without the vLLM backend, or out of its
range, is refused as the options (or the spec) are read.
"""

from __future__ import annotations

from pathlib import Path

ROWS = [
    ("eval -m {model} --tasks ppl:wiki --tensor-parallel-size 2", "--tensor-parallel-size: applies to backend vllm",
     "vllm-tp-without-vllm-backend"),
    ("eval -m {model} --tasks ppl:wiki --backend hf --max-model-len 512", "--max-model-len: applies to backend vllm",
     "vllm-max-len-with-hf"),
    ("eval -m {model} --tasks ppl:wiki --backend vllm --gpu-memory-utilization 1.5",
     "--gpu-memory-utilization must be at most 1", "vllm-memory-over-one"),
    ("eval -m {model} --tasks ppl:wiki --backend vllm --gpu-memory-utilization 0",
     "--gpu-memory-utilization must be more than 0", "vllm-memory-zero"),
    ("eval -m {model} --tasks ppl:wiki --backend vllm --tensor-parallel-size 0",
     "--tensor-parallel-size must be at least 1", "vllm-tp-zero"),
    ("eval -m {model} --tasks ppl:wiki --backend vllm --tensor-parallel-size 2",
     "--backend vllm needs vLLM: pip install vllm", "vllm-missing-with-settings"),
    ("study run {in:spec-vllm} --out {out}", "eval.backend vllm needs vLLM: pip install vllm", "study-vllm-missing"),
    ("study run {in:spec-vllm-cpu} --out {out}", "eval.backend vllm runs on CUDA GPUs and the study's device is cpu",
     "study-vllm-on-cpu"),
    ("study run {in:spec-vllm-hf-tp} --out {out}", "eval.tensor_parallel_size: applies to backend vllm only",
     "study-vllm-setting-with-hf"),
    ("study run {in:spec-vllm-vocab} --out {out}", "backend vllm evaluates the saved checkpoint: drop one of them",
     "study-vllm-with-vocab"),
    ("study run {in:spec-vllm-adaptive} --out {out}", "adaptive does not combine with backend vllm yet",
     "study-vllm-with-adaptive"),
]  # fmt: skip


def inputs(root: Path, world: dict) -> dict:
    specs = root / "vllm-specs"
    specs.mkdir(exist_ok=True)
    vllm = {"backend": "vllm", "tensor_parallel_size": 1, "gpu_memory_utilization": 0.85}
    bodies = {
        "spec-vllm": world["spec_grid"](vllm),
        "spec-vllm-cpu": world["spec_grid"](vllm, device="cpu"),
        "spec-vllm-hf-tp": world["spec_grid"]({"tensor_parallel_size": 2}),
        "spec-vllm-vocab": world["spec_grid"]({**vllm, "vocab": {}}),
        "spec-vllm-adaptive": world["spec_grid"](
            {**vllm, "adaptive": {"block": 1, "cap": 2}, "ppl_max_windows": None},
            sources=[{"name": str(world["text"])}, {"name": "random-vocab"}],
        ),
    }
    files = {}
    for name, body in bodies.items():
        files[name] = specs / f"{name}.yaml"
        files[name].write_text(body)
    return files
