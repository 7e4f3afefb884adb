"""Where a model's weights live while it is compressed and evaluated.

Two placements, chosen by the caller:

* **on the device** (default): the whole model is loaded in its dtype and
  moved to the device; llm-compressor's pipelines then run there.
* **offloaded** (``offload=True``), for models larger than one GPU: the
  weights stay in host memory and llm-compressor's sequential pipeline onloads
  one decoder layer at a time to the device (its own ``set_onload_device``
  mechanism, not a home-made one); for evaluation, compressed-tensors'
  ``dispatch_model`` spreads the model over the GPUs and offloads what does
  not fit.

llm-compressor picks its onload device itself (``get_main_device``: the
first accelerator whenever there is one), so ``--device cpu`` on a GPU
machine would still calibrate on the GPU; :func:`onload_to` makes its choice
the one the user asked for, for the duration of a oneshot.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

from calibench.core.errors import CalibenchError
from calibench.core.settings import DEFAULTS

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
    spec: str | os.PathLike[str], dtype: Any = DEFAULTS.dtype, device: Any = DEFAULTS.device, offload: bool = False
) -> Any:
    """A fresh model from the checkpoint: on ``device``, or in host memory when ``offload``.

    Reloading from the checkpoint (a memory-mapped safetensors file) is how a
    study cell gets an untouched model: no deep copy of a base model is held
    in host memory next to the one being compressed.
    """
    from calibench.models import load_model, resolve_device, resolve_dtype

    target = resolve_device(device)
    dtype = resolve_dtype(dtype, target, spec)
    return load_model(spec, dtype=dtype, device="cpu" if offload else target)


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


def place_for_eval(model: Any, device: Any, offload: bool) -> Any:
    """Put a (compressed) model where evaluation runs: on ``device``, or dispatched over the GPUs when offloaded."""
    import torch

    target = torch.device(device)
    if offload and target.type == "cuda":
        try:
            from compressed_tensors.offload import dispatch_model
        except ImportError as exc:  # pragma: no cover - compressed-tensors is a dependency
            raise CalibenchError(f"offloaded evaluation needs compressed-tensors' dispatch_model: {exc}") from exc
        return dispatch_model(model)
    if model_device(model) != target:
        model.to(target)
    return model
