"""The reconstruction signal: compress only the first k decoder layers, measure their output error on held-out text.

Why it is cheap and still the real method.  llm-compressor's sequential
pipeline calibrates layer i on the outputs of the already compressed layers
before it, and never looks at layers after it.  So the first k layers of a
full compression are exactly what a compression of the model *truncated to
k layers* produces: calibench runs the ordinary :func:`calibench.compress.compress`
(llm-compressor ``oneshot``, the same recipe and seed as a study cell) on such
a truncated copy, at about k / L of the cost.

The truncated copy shares nothing with the model it came from: its shell
(embeddings, final norm, head, config) is deep-copied with the decoder stack
emptied, then the first k layers are deep-copied into it, so the dense model
is never touched and the head (which every method leaves dense) is not
compressed.  Decoder layers are found by structure
(:func:`calibench.curate.layers.find_decoder_layers`).

The error.  Held-out windows (the evaluation text) run through the first k
layers of the dense model and of the compressed copy; with ``Y`` and ``Y_c``
the k-th layer's output hidden states at real tokens,

* ``relative_error = sum ||Y_c - Y||^2 / sum ||Y||^2`` (over all tokens), and
* ``token_relative_error = mean_t ||y_c,t - y_t||^2 / ||y_t||^2``, which a few
  tokens carrying massive activations cannot dominate.

Both are 0 when the copy is unchanged.  The forward passes stop at the k-th
layer (its hook raises), so they cost k / L of a forward pass each.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import Any

from calibench.core.errors import CalibenchError
from calibench.core.settings import DEFAULTS
from calibench.curate.activations import _hidden as hidden_of
from calibench.curate.layers import find_decoder_layers
from calibench.data.calibset import CalibrationSet
from calibench.placement import model_device, onload_to
from calibench.study.runner import quiet_libraries


class _Stop(Exception):
    """Raised by the k-th layer's hook: nothing after it is needed."""


@dataclass(frozen=True)
class Reconstruction:
    relative_error: float
    token_relative_error: float
    k_layers: int
    total_layers: int
    compress_seconds: float  # the k-layer compression alone: the probe of a full compression's cost
    seconds: float
    tokens: int


def _stack(model: Any, name: str | None = None) -> tuple[Any, str, Any]:
    """(parent module, attribute name, ModuleList) of the decoder stack (at qualified ``name`` when given)."""
    if name is None:
        from calibench.curate.layers import find_decoder_layers

        name = find_decoder_layers(model).name
    parent_name, _, attribute = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    return parent, attribute, getattr(parent, attribute)


def _truncate_config(config: Any, k: int, total: int) -> None:
    """Make the copy's config describe k layers (per-layer lists such as Gemma's ``layer_types`` too)."""
    if getattr(config, "num_hidden_layers", None) == total:
        config.num_hidden_layers = k
    for name, value in list(vars(config).items()):
        if isinstance(value, list) and len(value) == total and name != "architectures":
            setattr(config, name, value[:k])
    text = getattr(config, "text_config", None)
    if text is not None and text is not config:
        _truncate_config(text, k, total)


def truncated_copy(model: Any, k: int) -> Any:
    """An independent copy of ``model`` keeping only its first ``k`` decoder layers."""
    import torch

    name = find_decoder_layers(model).name
    parent, attribute, layers = _stack(model, name)
    total = len(layers)
    if not 1 <= k <= total:
        raise CalibenchError(f"--k-layers must be between 1 and the model's {total} decoder layers, got {k}")
    setattr(parent, attribute, torch.nn.ModuleList())
    try:
        shell = copy.deepcopy(model)
    finally:
        setattr(parent, attribute, layers)
    shell_parent, shell_attribute, _ = _stack(shell, name)
    setattr(shell_parent, shell_attribute, torch.nn.ModuleList([copy.deepcopy(layer) for layer in layers[:k]]))
    _truncate_config(shell.config, k, total)
    return shell.eval()


def _hidden(output: Any) -> Any:

    return hidden_of(output)


def layer_output(model: Any, index: int, ids: Any, mask: Any) -> Any:
    """The output hidden states of decoder layer ``index`` for one batch (the forward stops there)."""
    import torch

    _, _, layers = _stack(model)
    captured: list[Any] = []

    def hook(_module: Any, _args: Any, output: Any) -> None:
        captured.append(_hidden(output).float())
        raise _Stop

    handle = layers[index].register_forward_hook(hook)
    try:
        with torch.inference_mode():
            try:
                model(input_ids=ids, attention_mask=mask, use_cache=False)
            except _Stop:
                pass
    finally:
        handle.remove()
    if not captured:
        raise RuntimeError(f"decoder layer {index} produced no output")
    return captured[0]


def output_error(
    reference: Any, candidate: Any, heldout: CalibrationSet, k: int, batch_size: int = DEFAULTS.batch_size
) -> tuple[float, float, int]:
    """(relative error, mean per-token relative error, tokens) of layer k's outputs, candidate against reference."""

    ids_all, mask_all = heldout.to_torch()
    device = next(reference.parameters()).device
    squared = reference_squared = token_sum = 0.0
    tokens = 0
    for begin in range(0, ids_all.shape[0], batch_size):
        ids = ids_all[begin : begin + batch_size].to(device)
        mask = mask_all[begin : begin + batch_size].to(device)
        y = layer_output(reference, k - 1, ids, mask)
        y_c = layer_output(candidate, k - 1, ids.to(next(candidate.parameters()).device), mask).to(y.device)
        real = mask.bool()
        diff = ((y_c - y)[real].double() ** 2).sum(dim=-1)
        norm = (y[real].double() ** 2).sum(dim=-1)
        squared += float(diff.sum())
        reference_squared += float(norm.sum())
        token_sum += float((diff / norm.clamp_min(1e-30)).sum())
        tokens += int(real.sum())
    if tokens == 0 or reference_squared == 0.0:
        return float("nan"), float("nan"), tokens
    return squared / reference_squared, token_sum / tokens, tokens


def warm_up(method: str, params: dict[str, Any] | None = None) -> None:
    """Import llm-compressor and build the method's modifiers once, so that a timed run measures compression only.

    The first ``oneshot`` of a process pays seconds of imports; scaled from k
    layers to all of them, that would inflate a cost estimate many times over.
    """
    from llmcompressor import oneshot  # noqa: F401

    from calibench.compress.methods import build_recipe, make_params, resolve

    methods = resolve(method)
    build_recipe(methods, make_params(methods, **(params or {})))


def reconstruction(
    model: Any,
    calib: CalibrationSet,
    method: str,
    heldout: CalibrationSet,
    *,
    params: dict[str, Any] | None = None,
    k: int = 2,
    tokenizer: Any = None,
    seed: int = DEFAULTS.seed,
    batch_size: int = DEFAULTS.batch_size,
) -> Reconstruction:
    """Compress the first ``k`` layers of a copy of ``model`` with ``method`` on ``calib``; their error on
    ``heldout``."""
    from calibench.compress import compress
    from calibench.compress.fold import fold_weight_quantization

    started = time.perf_counter()
    _, _, layers = _stack(model)
    total = len(layers)
    shell = truncated_copy(model, k)
    compress_started = time.perf_counter()
    with quiet_libraries(), onload_to(model_device(model)):
        compress(shell, calib, method, tokenizer=tokenizer, seed=seed, **(params or {}))
    compress_seconds = time.perf_counter() - compress_started
    fold_weight_quantization(shell)  # exact for weight-only schemes, and faster forwards
    relative, per_token, tokens = output_error(model, shell, heldout, k, batch_size)
    del shell
    return Reconstruction(relative, per_token, k, total, compress_seconds, time.perf_counter() - started, tokens)
