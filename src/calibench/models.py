"""Loading causal LMs by name: a bundled model, a local directory or a hub id.

Everything that needs a model (sampling, generation, compression, evaluation)
goes through :func:`resolve_model_path`, so that one spec means the same thing
everywhere:

* a bundled asset name (``smollm2-135m``, ``gemma3-270m``): the safetensors
  directory prepared by ``calibench assets pull``, which works offline;
* a local directory holding a ``config.json`` (e.g. a compressed checkpoint);
* a hub id ``org/name``: passed to ``from_pretrained`` unchanged, so online
  users get the real hub behaviour (cache, revisions, authentication).

Errors a user can cause become one-line :class:`CalibenchError` messages.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from calibench.assets import ASSETS, asset_names, require
from calibench.core.errors import CalibenchError, UnknownNameError, did_you_mean
from calibench.core.paths import assets_dir
from calibench.core.registry import Registry
from calibench.core.settings import DEFAULTS
from calibench.core.text import one_line

#: dtype names accepted by :func:`load_model` ("auto" keeps the checkpoint's own dtype).
DTYPES = ("float32", "bfloat16", "float16", "auto")

# Hub repository ids: "org/name" with the characters the hub allows.
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
# Config attributes that hold the context length, most common first.
_CONTEXT_ATTRS = ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length", "n_ctx", "max_seq_len")
# transformers' "no limit known" value for tokenizer.model_max_length (int(1e30)).
_UNBOUNDED = int(1e29)


def bundled_models() -> list[str]:
    """Names of the models that ship as assets (pulled with ``calibench assets pull``)."""
    return asset_names("model")


def _offline_hint() -> str:
    return f"offline? use a bundled model: {', '.join(bundled_models())}, or a local directory"


def is_hub_id(text: str) -> bool:
    """Whether ``text`` reads as a hub repository id ``org/name`` (not a relative path)."""
    return bool(_HUB_ID.match(text)) and not text.startswith((".", "~"))


def _hub_model(repo: str) -> str:
    """A hub id as it is when the hub is reachable; offline, its snapshot in the local hub cache or one line.

    Reading a hub model with no hub access makes the hub client retry every
    file for about a minute; deciding once (:func:`hub_access`) and reading the
    cache directly makes that a fast refusal, or an offline load of a cached model.
    """
    from calibench.core.connectivity import hub_access

    access = hub_access()
    if not access.offline:
        return repo
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(repo, "config.json")
    if isinstance(cached, str):
        return str(Path(cached).parent)
    raise CalibenchError(
        f"model '{repo}' is a hub id, but the hub cannot be reached ({access.reason}) and it is not in the "
        f"local hub cache: {_offline_hint()}"
    )


def resolve_model_path(spec: str | os.PathLike[str]) -> str:
    """What to pass to ``from_pretrained`` for ``spec``: a local directory path or a hub id."""
    text = os.fspath(spec)
    if text in bundled_models() or text in asset_names("encoder"):
        return str(require(text))
    path = Path(text).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise CalibenchError(f"{path} is not a model directory (no config.json)")
        return str(path.resolve())
    if path.exists():
        raise CalibenchError(f"{path} is not a model directory (it is a file)")
    if not isinstance(spec, os.PathLike) and is_hub_id(text):
        return _hub_model(text)
    if text in ASSETS:
        raise UnknownNameError(f"'{text}' is a {ASSETS.get(text).kind} asset, not a model; bundled models: "
                               f"{', '.join(bundled_models())}")  # fmt: skip
    if isinstance(spec, os.PathLike) or os.sep in text or text.startswith((".", "~")):
        raise CalibenchError(f"no such model directory: {path}")
    raise UnknownNameError(
        f"unknown model '{text}': not a bundled model, a local directory or a hub id (org/name)"
        f"{did_you_mean(text, bundled_models())}"
    )


def _load(loader: Any, spec: str | os.PathLike[str], **kwargs: Any) -> Any:
    """``loader.from_pretrained`` on the resolved spec, with load failures turned into one line."""
    from transformers.utils import logging as hf_logging

    path = resolve_model_path(spec)
    is_local = Path(path).is_dir()
    if is_local:
        verify_checkpoint(path)  # a damaged checkpoint is refused before any of it is read
    hf_logging.disable_progress_bar()  # a per-tensor "Loading weights" bar: noise on stderr, and left above errors
    try:
        return loader.from_pretrained(path, **kwargs)
    except (OSError, ValueError) as exc:
        if is_local:
            raise CalibenchError(f"could not load model from {path}: {one_line(exc)}") from exc
        raise CalibenchError(
            f"could not load model '{path}' from the hub: {one_line(exc)} ({_offline_hint()})"
        ) from exc
    except Exception as exc:  # network errors from the hub client are not all OSErrors
        if is_local or not type(exc).__module__.startswith(("huggingface_hub", "httpx", "requests")):
            raise
        raise CalibenchError(
            f"could not load model '{path}' from the hub: {one_line(exc)} ({_offline_hint()})"
        ) from exc


def resolve_device(device: str | Any = DEFAULTS.device) -> Any:
    """The ``torch.device`` a run asks for; one line when this machine cannot give it.

    ``auto`` is the first CUDA GPU when there is one, else the CPU.  ``cuda`` or
    ``cuda:N`` on a machine without a usable GPU (or with fewer GPUs) is refused
    before any model is loaded, naming what the machine has.
    """
    import torch

    if isinstance(device, torch.device):
        text = str(device)
    else:
        text = str(device).strip().lower()
    if text == "auto":
        return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    try:
        target = torch.device(text)
    except (RuntimeError, TypeError):
        raise CalibenchError(f"invalid device '{device}': use auto, cpu, cuda or cuda:N") from None
    if target.type == "cpu":
        return torch.device("cpu")
    if target.type != "cuda":
        raise CalibenchError(f"unsupported device '{device}': use auto, cpu, cuda or cuda:N")
    if not torch.cuda.is_available():
        build = torch.__version__
        why = "torch is a CPU-only build" if torch.version.cuda is None else "no CUDA GPU is visible"
        raise CalibenchError(
            f"--device {text} asked for a CUDA GPU, but this machine has none ({why}, torch {build}): "
            "use --device cpu (or auto)"
        )
    count = torch.cuda.device_count()
    index = 0 if target.index is None else target.index
    if index >= count:
        raise CalibenchError(f"--device {text}: this machine has {count} CUDA GPU(s) (cuda:0..cuda:{count - 1})")
    return torch.device("cuda", index)


def checkpoint_dtype(spec_or_config: Any) -> Any:
    """The dtype a checkpoint was saved in (``config.dtype``), float32 when the config does not say."""
    import torch

    config = load_config(spec_or_config) if isinstance(spec_or_config, (str, os.PathLike)) else spec_or_config
    config = getattr(config, "config", config)  # a model
    value = getattr(config, "dtype", None) or getattr(config, "torch_dtype", None)
    if isinstance(value, str):
        value = getattr(torch, value, None)
    return value if isinstance(value, torch.dtype) and value.is_floating_point else torch.float32


def resolve_dtype(dtype: Any, device: Any = "cpu", spec_or_config: Any = None) -> Any:
    """The ``torch.dtype`` to load in.

    ``auto`` is the checkpoint's own dtype on a GPU (bf16 for most hub models)
    and float32 on the CPU, where half-precision matmuls are slow and, for
    float16, lose accuracy.  Named dtypes are taken as they are.
    """
    import torch

    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in DTYPES:
        raise UnknownNameError(f"unknown dtype '{dtype}'{did_you_mean(str(dtype), list(DTYPES))}")
    if dtype != "auto":
        return getattr(torch, dtype)
    target = resolve_device(device)
    if target.type == "cpu" or spec_or_config is None:
        return torch.float32
    return checkpoint_dtype(spec_or_config)


def dtype_name(dtype: Any) -> str:
    """'bfloat16' for torch.bfloat16: how records and reports name a dtype."""
    return str(dtype).removeprefix("torch.")


# Called as hook(model, checkpoint directory) on every model load_model returns.  Higher layers plug in here
# (named lazily, so this module imports none of them): the vocabulary package re-attaches a pruned vocabulary.
# each hook gets the loaded model and what it was loaded from (a local directory or a hub id)
LOAD_HOOKS: Registry[Callable[[Any, str], None]] = Registry("model load hook")
LOAD_HOOKS.register_lazy("vocab-pruned", "calibench.vocab.checkpoint:attach_if_pruned")


# Called as check(directory) on a local model directory before anything in it is read: raises CalibenchError
# for a damaged checkpoint, returns a note (or None) to show once.  The compression package checks the
# file record every checkpoint calibench writes carries (named lazily: this module imports none of it).
CHECKPOINT_CHECKS: Registry[Callable[[str], str | None]] = Registry("checkpoint check")
CHECKPOINT_CHECKS.register_lazy("calibench-record", "calibench.compress.checkpoint:verify")


def verify_checkpoint(spec: str | os.PathLike[str]) -> None:
    """Refuse a damaged local checkpoint in one line before any of it is read (cached while its files are unchanged).

    Bundled assets (checked by the asset store) and hub ids are not local checkpoints and pass.
    """
    path = resolve_model_path(spec)
    if not Path(path).is_dir() or Path(path).resolve().parent == assets_dir().resolve():
        return
    _verified(path, _files_fingerprint(path))


@functools.lru_cache(maxsize=32)
def _verified(path: str, _fingerprint: Any) -> None:
    for _, check in CHECKPOINT_CHECKS.items():
        note = check(path)
        if note:
            _note(note)


def _note(message: str) -> None:
    """One note line: with the CLI's held-back output (shown when the command succeeds), else a log record."""
    from calibench.core import progress

    if progress.enabled():
        progress.note(message)
    else:
        import logging

        logging.getLogger("calibench").info(message)


def load_model(
    spec: str | os.PathLike[str], dtype: Any = DEFAULTS.dtype, device: Any = DEFAULTS.device, **load_kwargs: Any
) -> Any:
    """A causal LM in eval mode on ``device``, in ``dtype`` (see :func:`resolve_dtype`).

    Weights are read from the checkpoint straight into the target dtype (no
    float32 copy on the way), on the CPU, and then moved to the device.
    ``device=None`` leaves them where ``from_pretrained`` put them (an
    offloaded placement, :mod:`calibench.placement`, passes its ``device_map``
    in ``load_kwargs``).
    """
    from transformers import AutoModelForCausalLM

    target = resolve_device(device if device is not None else "cpu")
    torch_dtype = resolve_dtype(dtype, target, spec)
    model = _load(AutoModelForCausalLM, spec, dtype=torch_dtype, **load_kwargs)
    for _, hook in LOAD_HOOKS.items():  # e.g. a vocabulary-pruned directory takes tokenizer ids again
        hook(model, resolve_model_path(spec))
    try:
        if device is not None:
            model.to(target)
    except (RuntimeError, AssertionError) as exc:  # e.g. out of GPU memory
        raise CalibenchError(f"cannot put the model on device '{target}': {one_line(exc)}") from exc
    model.eval()
    return model


def load_config(spec: str | os.PathLike[str]) -> Any:
    """The model's ``PretrainedConfig`` (cheap: no weights are read)."""
    from transformers import AutoConfig

    return _load(AutoConfig, spec)


def _files_fingerprint(path: str) -> tuple[tuple[str, int, int], ...] | None:
    """Names, sizes and mtimes of a local model directory's files, so an edited tokenizer is reloaded."""
    if not Path(path).is_dir():
        return None
    entries = []
    with os.scandir(path) as it:
        for entry in it:
            if entry.is_file():
                st = entry.stat()
                entries.append((entry.name, st.st_size, st.st_mtime_ns))
    return tuple(sorted(entries))


@functools.lru_cache(maxsize=16)
def _cached_tokenizer(path: str, _fingerprint: Any) -> Any:
    from transformers import AutoTokenizer

    return _load(AutoTokenizer, path)


def load_tokenizer(spec: str | os.PathLike[str]) -> Any:
    """The model's tokenizer, cached by resolved path.

    Tokenizers are built from large JSON files and needed by almost every
    step, so repeated calls for the same model return **the same object**
    (the cache is keyed by the resolved path and, for a local directory, its
    files' sizes and mtimes).  Do not mutate it (``pad_token``,
    ``padding_side``...): ``copy.deepcopy`` it first if you must.
    """
    path = resolve_model_path(spec)
    return _cached_tokenizer(path, _files_fingerprint(path))


def clear_tokenizer_cache() -> None:
    """Forget cached tokenizers and checkpoint verifications (tests, or after replacing a model directory in place)."""
    _cached_tokenizer.cache_clear()
    _verified.cache_clear()


def _context_from_config(config: Any) -> int | None:
    configs = [config]
    get_text = getattr(config, "get_text_config", None)
    if callable(get_text):
        text_config = get_text()
        if text_config is not None and text_config is not config:
            configs.insert(0, text_config)
    for cfg in configs:
        for attr in _CONTEXT_ATTRS:
            value = getattr(cfg, attr, None)
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                return value
    return None


def _context_from_tokenizer(tokenizer: Any) -> int | None:
    value = getattr(tokenizer, "model_max_length", None)
    if isinstance(value, int) and 0 < value < _UNBOUNDED:
        return value
    return None


def model_max_length(spec_or_config: Any) -> int:
    """The longest sequence the model accepts (its context length).

    Takes a model spec, a ``PretrainedConfig``, a model or a tokenizer.  Reads
    ``max_position_embeddings`` (or ``n_positions``, ``n_ctx``... for other
    families); for a spec whose config has none, falls back to the
    tokenizer's ``model_max_length``, ignoring transformers' "unbounded"
    sentinel (1e30).
    """
    from transformers import PretrainedConfig

    if isinstance(spec_or_config, (str, os.PathLike)):
        found = _context_from_config(load_config(spec_or_config))
        if found is None:
            found = _context_from_tokenizer(load_tokenizer(spec_or_config))
        what = f"'{os.fspath(spec_or_config)}'"
    elif isinstance(spec_or_config, PretrainedConfig):
        found = _context_from_config(spec_or_config)
        what = f"config of type {type(spec_or_config).__name__}"
    elif isinstance(getattr(spec_or_config, "config", None), PretrainedConfig):
        found = _context_from_config(spec_or_config.config)
        what = f"model {type(spec_or_config).__name__}"
    elif hasattr(spec_or_config, "model_max_length"):
        found = _context_from_tokenizer(spec_or_config)
        what = f"tokenizer {type(spec_or_config).__name__}"
    else:
        kind = type(spec_or_config).__name__
        raise TypeError(f"model_max_length() needs a model spec, config, model or tokenizer, not {kind}")
    if found is None:
        raise CalibenchError(f"cannot tell the context length of {what}: give the sequence length explicitly")
    return found
