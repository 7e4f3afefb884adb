"""Where a model's weights live while it is compressed and evaluated.

Three placements (:data:`OffloadMode`), chosen by the caller:

* **none** (default): the whole model is loaded in its dtype and moved to the
  device; llm-compressor's pipelines then run there.
* **cpu**, for models larger than one GPU: the weights stay in host memory
  and llm-compressor's sequential pipeline onloads one decoder layer at a time
  to the device (its own ``set_onload_device`` mechanism, not a home-made
  one); for evaluation, compressed-tensors' ``dispatch_model`` spreads the
  model over the GPUs and offloads what does not fit.
* **disk**, for models larger than host memory: compressed-tensors'
  ``load_offloaded_model`` loads the model through accelerate's disk offload
  and converts it to its own ``DiskCache``: every weight is a link, in a fresh
  folder, to its tensor in the checkpoint's safetensors file, read (memory
  mapped) when its module runs and released after; a weight that calibration
  changes is written there as a new file.  The folder is removed when the
  model is freed (or the process ends).

llm-compressor picks its onload device itself (``get_main_device``: the
first accelerator whenever there is one), so ``--device cpu`` on a GPU
machine would still calibrate on the GPU; :func:`onload_to` makes its choice
the one the user asked for, for the duration of a oneshot.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal, cast, get_args

from pydantic import BaseModel, ConfigDict, Field

from calibench.core.errors import CalibenchError
from calibench.core.settings import DEFAULTS

#: where the weights wait while the model is compressed or evaluated (see the module docstring)
OffloadMode = Literal["none", "cpu", "disk"]
OFFLOAD_MODES: tuple[str, ...] = get_args(OffloadMode)
#: the prefix of the folder a disk-offloaded model's weights are linked and written into
OFFLOAD_PREFIX = "calibench-offload-"


class OffloadSettings(BaseModel):
    """The placement options of ``compress`` and ``eval`` (a study spec has ``offload`` only)."""

    model_config = ConfigDict(extra="forbid")

    offload: OffloadMode = Field(
        "none",
        description="Where the weights wait: none (all on --device); cpu (host memory, one decoder layer at a time "
        "onloaded to --device); disk (the checkpoint's safetensors, memory-mapped, read one layer at a time: "
        "for models larger than host memory).",
    )
    offload_dir: Path | None = Field(
        None,
        description="With --offload disk: the folder for the weight links and the weights calibration rewrites "
        "(a fresh subfolder, removed at the end; about the compressed size is written). Default: the system "
        "temporary folder.",
    )


def as_offload(value: Any) -> OffloadMode:
    """``value`` as an offload mode: a mode name, or a spec's older ``true``/``false`` (``cpu``/``none``)."""
    if value is None or isinstance(value, bool):
        return "cpu" if value else "none"
    if isinstance(value, str) and value in OFFLOAD_MODES:
        return cast(OffloadMode, value)
    raise CalibenchError(f"unknown offload '{value}': use one of {', '.join(OFFLOAD_MODES)} (true means cpu)")


def prepare_offload_dir(offload: Any, offload_dir: str | os.PathLike[str] | None) -> Path | None:
    """Check the offload folder before any work: refused unless ``offload`` is disk and it can be written."""
    mode = as_offload(offload)
    if offload_dir is None:
        return None
    if mode != "disk":
        raise CalibenchError(
            f"--offload-dir is for --offload disk (got --offload {mode}): add --offload disk or drop it"
        )
    path = Path(offload_dir).expanduser()
    if path.exists() and not path.is_dir():
        raise CalibenchError(f"--offload-dir {path} is a file: give a folder")
    anchor = next((p for p in (path, *path.absolute().parents) if p.exists()), Path("."))
    if not anchor.is_dir():
        raise CalibenchError(f"--offload-dir {path}: {anchor} is a file, not a folder: give another folder")
    try:  # a real write: root passes os.access everywhere, /proc and read-only mounts still refuse
        os.rmdir(tempfile.mkdtemp(prefix=".calibench-write-check-", dir=anchor))
    except OSError as exc:
        raise CalibenchError(
            f"--offload-dir {path}: {anchor} is not writable ({exc.strerror or exc}): give a folder you can write to"
        ) from exc
    return path


# llm-compressor modules that bind get_main_device at import and ask it for the onload device.
_ONLOAD_CALLERS = ("llmcompressor.pipelines.sequential.pipeline", "llmcompressor.pipelines.data_free.pipeline")


def model_device(model: Any) -> Any:
    """The device of the model's first parameter (CPU for an offloaded model)."""
    import torch

    try:
        return next(model.parameters()).device
    except (StopIteration, AttributeError, TypeError):
        return torch.device("cpu")


def load_placed(
    spec: str | os.PathLike[str],
    dtype: Any = DEFAULTS.dtype,
    device: Any = DEFAULTS.device,
    offload: OffloadMode | bool = "none",
    offload_dir: str | os.PathLike[str] | None = None,
) -> Any:
    """A fresh model from the checkpoint: on ``device``, in host memory (``cpu``) or on disk (``disk``).

    Reloading from the checkpoint (a memory-mapped safetensors file) is how a
    study cell gets an untouched model: no deep copy of a base model is held
    in host memory next to the one being compressed.
    """
    from calibench.models import load_model, resolve_device, resolve_dtype

    mode = as_offload(offload)
    folder = prepare_offload_dir(mode, offload_dir)
    target = resolve_device(device)
    dtype = resolve_dtype(dtype, target, spec)
    if mode == "disk":
        return _load_disk_offloaded(spec, dtype, target, folder)
    return load_model(spec, dtype=dtype, device="cpu" if mode == "cpu" else target)


def _load_disk_offloaded(spec: str | os.PathLike[str], dtype: Any, target: Any, folder: Path | None) -> Any:
    """The model with every weight on disk (compressed-tensors' DiskCache), onloaded to ``target`` per module."""
    from compressed_tensors.offload import load_offloaded_model, set_onload_device
    from transformers import AutoModelForCausalLM

    from calibench.models import load_model

    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=OFFLOAD_PREFIX, dir=folder))
    try:
        # every module to disk: a CPU budget of one byte leaves nothing in memory but the buffers
        with load_offloaded_model(AutoModelForCausalLM):
            model = load_model(
                spec, dtype=dtype, device=None, device_map="auto", max_memory={"cpu": 1}, offload_folder=str(work)
            )
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    set_onload_device(model, target)
    model.calibench_offload_dir = str(work)
    weakref.finalize(model, shutil.rmtree, str(work), True)  # also at exit
    return model


def release_offload(model: Any) -> None:
    """Remove a disk-offloaded model's folder now (a command's end), not when the model is collected."""
    folder = offload_folder(model)
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)


def offload_folder(model: Any) -> str | None:
    """The folder a disk-offloaded model's weights live in (``None`` for any other model)."""
    return getattr(model, "calibench_offload_dir", None)


_REQUESTED: list[Any] = []  # the devices of the onload_to blocks in force, innermost last


def requested_onload_device() -> Any | None:
    """The device an enclosing :func:`onload_to` asked for, if any (an offloaded cell's GPU)."""
    return _REQUESTED[-1] if _REQUESTED else None


@contextlib.contextmanager
def onload_to(device: Any) -> Iterator[None]:
    """llm-compressor's pipelines onload layers to ``device`` (not to whichever accelerator it finds first)."""
    import importlib

    import torch

    target = torch.device(device)
    _REQUESTED.append(target)
    patched: list[tuple[Any, Any]] = []  # (module, its own get_main_device)
    for name in _ONLOAD_CALLERS:
        try:
            module: Any = importlib.import_module(name)  # llm-compressor's modules, patched by name
        except ImportError:  # pragma: no cover - a layout change in llm-compressor
            continue
        if hasattr(module, "get_main_device"):
            patched.append((module, module.get_main_device))
            module.get_main_device = lambda target=target: target
    try:
        yield
    finally:
        _REQUESTED.pop()
        for module, original in patched:
            module.get_main_device = original


def place_for_eval(model: Any, device: Any, offload: OffloadMode | bool) -> Any:
    """Put a (compressed) model where evaluation runs: on ``device``, or dispatched over the GPUs when offloaded.

    A disk-offloaded model stays on disk, its modules onloaded to ``device`` as they run.
    """
    import torch

    target = torch.device(device)
    mode = as_offload(offload)
    if offload_folder(model) is not None:
        from compressed_tensors.offload import set_onload_device

        return set_onload_device(model, target)
    if mode != "none" and target.type == "cuda":
        try:
            from compressed_tensors.offload import dispatch_model
        except ImportError as exc:  # pragma: no cover - compressed-tensors is a dependency
            raise CalibenchError(f"offloaded evaluation needs compressed-tensors' dispatch_model: {exc}") from exc
        return dispatch_model(model)
    if model_device(model) != target:
        model.to(target)
    return model
