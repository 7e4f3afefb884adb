"""What runs lm-eval's requests: ``hf`` (HFLM around the in-memory model) or ``vllm``.

* ``hf`` (default) wraps the very model object calibench holds (a
  compressed model straight from llm-compressor, or a loaded checkpoint) in
  lm-eval's ``HFLM``; the batch size goes to ``HFLM`` and the device is the
  model's.
* ``vllm`` is lm-eval's ``VLLM`` class on the model's *directory* (vLLM
  loads weights itself, compressed-tensors checkpoints included), with the
  engine settings of :class:`~calibench.evaluation.settings.BackendSettings`
  (tensor-parallel size, GPU memory utilisation, maximum model length).  It
  needs the ``vllm`` package, a CUDA GPU and a model on disk: an in-memory
  model must be saved first (a study cell saves its compressed model).  Perplexity tasks still run on the HF model
  (calibench's own protocol), loaded only when such tasks are requested.

Both are checked before any model is loaded.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from calibench.core.errors import CalibenchError, UnknownNameError, did_you_mean
from calibench.core.registry import Registry
from calibench.evaluation.cache import LM_TOKENIZERS, tokenizer_key
from calibench.evaluation.settings import BackendSettings


@dataclass(frozen=True)
class LmInputs:
    """Everything a backend may need to build lm-eval's LM."""

    model: Any  # the in-memory model (hf) or None
    tokenizer: Any
    path: str | None  # the model's directory or hub id, when it was given as a spec
    batch_size: int
    dtype: str
    device: str
    seed: int = 1234  # lm-eval's VLLM default (HFLM draws nothing: greedy generation)
    engine: BackendSettings = field(default_factory=BackendSettings)  # vLLM's engine settings


@dataclass(frozen=True)
class Backend:
    name: str
    description: str
    module: str | None  # a package that must be importable
    package: str  # its name as people write it
    install_hint: str
    needs_path: bool  # loads the model from disk itself
    needs_torch_model: bool  # uses calibench's loaded model object
    make: Callable[[LmInputs], Any]
    needs_gpu: bool = False  # runs only on a CUDA GPU


def _make_hf(inputs: LmInputs) -> Any:
    from lm_eval.models.huggingface import HFLM

    # HFLM sets a pad token on the tokenizer it gets; never touch the caller's (it may be cached).
    copied = lm_tokenizer(inputs.tokenizer)
    before = _tokenizer_state(copied.tokenizer)
    lm = HFLM(pretrained=inputs.model, tokenizer=copied.tokenizer, batch_size=inputs.batch_size)
    # reusable only while it looks as a fresh copy does: HFLM set no pad token on it, and nothing changes it later
    copied.state = before if _tokenizer_state(copied.tokenizer) == before else None
    return lm


@dataclass
class TokenizerCopy:
    tokenizer: Any
    state: tuple[Any, ...] | None = None  # its state as a fresh copy, once known; None: do not hand it out again


def lm_tokenizer(tokenizer: Any) -> TokenizerCopy:
    """A deep copy of ``tokenizer`` for lm-eval (a quarter of a second for a 49k vocabulary), reused across
    evaluations in a process while it is exactly as a fresh copy is (:data:`.cache.LM_TOKENIZERS`): HFLM set no
    pad token on it, and its size, special tokens, padding and truncation sides and template are the same."""
    key = tokenizer_key(tokenizer)
    if key is None:
        return TokenizerCopy(copy.deepcopy(tokenizer))
    cached = LM_TOKENIZERS.get(key)
    if cached is not None and cached.state is not None and _tokenizer_state(cached.tokenizer) == cached.state:
        return cached
    fresh = TokenizerCopy(copy.deepcopy(tokenizer))
    LM_TOKENIZERS.put(key, fresh)
    return fresh


def _tokenizer_state(tokenizer: Any) -> tuple[Any, ...]:
    """What HFLM may change on its tokenizer (pad token, padding side) and what tokenization depends on besides
    the vocabulary.  (The backend's padding and truncation settings are not in it: every call sets them.)"""
    attrs = ("pad_token", "pad_token_id", "bos_token_id", "eos_token_id", "unk_token_id", "padding_side",
             "truncation_side", "model_max_length", "chat_template", "add_bos_token", "add_eos_token")  # fmt: skip
    return (len(tokenizer), *(repr(getattr(tokenizer, attr, None)) for attr in attrs))


def vllm_model_args(inputs: LmInputs) -> dict[str, Any]:
    """lm-eval's ``VLLM`` keyword arguments for ``inputs`` (what ``lm_eval --model vllm --model_args`` carries):
    the checkpoint directory, dtype, batch size, seed and the engine settings (``gpu_memory_utilization`` reaches
    vLLM's engine through ``VLLM``'s extra keywords)."""
    if inputs.path is None:
        raise CalibenchError("--backend vllm loads the model from disk: evaluate a checkpoint directory")
    dtype = inputs.dtype if inputs.dtype in ("float16", "bfloat16", "float32", "auto") else "auto"
    return {"pretrained": str(inputs.path), "dtype": dtype, "batch_size": inputs.batch_size, "seed": inputs.seed,
            **inputs.engine.vllm_engine_args()}  # fmt: skip


def model_args_string(args: dict[str, Any]) -> str:
    """The same arguments in lm-eval's ``--model_args`` syntax (``key=value,...``), for records and for rerunning
    the evaluation with lm-eval's own command line."""
    return ",".join(f"{key}={value}" for key, value in args.items())


def _make_vllm(inputs: LmInputs) -> Any:  # pragma: no cover - needs vLLM and a GPU
    from lm_eval.models.vllm_causallms import VLLM

    return VLLM(**vllm_model_args(inputs))


#: lm-eval's backends by ``--backend`` name; another is one ``BACKENDS.register(name, Backend(...))``.
BACKENDS: Registry[Backend] = Registry("backend")
BACKENDS.register("hf", Backend("hf", "HFLM around the in-memory model", None, "", "", needs_path=False,
                                needs_torch_model=True, make=_make_hf))  # fmt: skip
BACKENDS.register("vllm", Backend("vllm", "lm-eval's VLLM on the model directory", "vllm", "vLLM",
                                  "pip install vllm (GPU machines)", needs_path=True, needs_torch_model=False,
                                  make=_make_vllm, needs_gpu=True))  # fmt: skip


def backend_settings(backend: str, tensor_parallel_size: int, gpu_memory_utilization: float,
                     max_model_len: int | None) -> BackendSettings:  # fmt: skip
    """The backend's settings validated as one (a vLLM setting with another backend is refused), in one line."""
    from pydantic import ValidationError

    try:  # another registered backend (not hf) takes no engine settings either: validated as hf
        return BackendSettings(backend="vllm" if backend == "vllm" else "hf", tensor_parallel_size=tensor_parallel_size,
                               gpu_memory_utilization=gpu_memory_utilization, max_model_len=max_model_len)  # fmt: skip
    except ValidationError as exc:
        error = exc.errors()[0]
        field = f"{error['loc'][0]}: " if error["loc"] else ""
        message = (
            str(error["msg"])
            .removeprefix("Value error, ")
            .replace("(the backend is hf)", f"(the backend is {backend})")
        )
        raise CalibenchError(field + message) from None


def check_gpu(backend: Backend, tensor_parallel_size: int = 1) -> None:
    """Refuse a backend that needs CUDA GPUs on a machine with fewer than ``tensor_parallel_size`` of them."""
    if not backend.needs_gpu:
        return
    import torch

    found = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if found == 0:
        raise CalibenchError(f"--backend {backend.name} needs a CUDA GPU and this machine has none: use --backend hf")
    if found < tensor_parallel_size:
        raise CalibenchError(
            f"--tensor-parallel-size {tensor_parallel_size} needs {tensor_parallel_size} GPUs and this machine has "
            f"{found}: lower it"
        )


def check_backend(name: str, model: Any) -> Backend:
    """The backend called ``name``, refused before any loading if it cannot run here or on this model."""
    if name not in BACKENDS:
        raise UnknownNameError(f"unknown --backend '{name}'{did_you_mean(name, BACKENDS.names())}")
    backend = BACKENDS.get(name)
    if backend.module is not None and not _importable(backend.module):
        raise CalibenchError(f"--backend {name} needs {backend.package}: {backend.install_hint}")
    if model is None:  # the backend's name and package only (a study's preflight: cells are not built yet)
        return backend
    if backend.needs_path and not isinstance(model, (str, os.PathLike)):
        raise CalibenchError(
            f"--backend {name} loads the model from disk: save the in-memory model first "
            "(save_pretrained, or CompressionResult.save) and evaluate its directory"
        )
    return backend


def _importable(module: str) -> bool:
    from importlib.util import find_spec

    try:
        return find_spec(module) is not None
    except (ImportError, ValueError):
        return False
