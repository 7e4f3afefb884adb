"""Smoothing (SmoothQuant, AWQ) on models whose norms scale by ``1 + w`` and sit after their sublayers (Gemma 2/3).

Smoothing divides a norm's scale by per-channel factors and multiplies the
next linear layers' input columns by them, so the product is unchanged.  Two
things about Gemma 2 and 3 break the Llama-style recipe:

* their RMSNorm computes ``x_hat * (1 + w)``: dividing ``w`` is not dividing
  the scale.  llm-compressor 0.14's ``oneshot`` handles this itself: it runs
  every stage inside ``norm_calibration_context``
  (``llmcompressor/modeling/offset_norm.py``), which swaps each registered
  offset norm for one with scale ``1 + w`` and writes ``scale - 1`` back after;
* each decoder layer has four norms, and ``post_attention_layernorm`` is the
  norm of the attention *output* (before the residual add), not the MLP's
  input, which is ``pre_feedforward_layernorm``.  llm-compressor 0.14 maps
  Gemma2/Gemma3 SmoothQuant to its default Llama mappings, which smooth
  ``post_attention_layernorm`` into ``gate_proj``/``up_proj``: the attention
  output is shrunk by the factors while the MLP's input (a different tensor)
  is grown by them, and the model's output is wrong by orders of magnitude.
  (Its AWQ mappings for these architectures already use
  ``pre_feedforward_layernorm``.)

:func:`smoothing_for` is entered around every compression stage: where a
SmoothQuant modifier has no mappings of its own and the model is laid out this
way, it gets the mappings that follow the model's real data flow; a model
whose norms scale by ``1 + w`` (found by a probe, :func:`scales_by_one_plus_w`)
but that llm-compressor's context does not convert is refused in one line
before calibration starts.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from calibench.core.errors import CalibenchError

#: the MLP's input norm in a layer whose ``post_attention_layernorm`` normalises the attention output
PRE_MLP_NORM = "pre_feedforward_layernorm"

#: SmoothQuant mappings (``[balance layers, smooth layer]``) for layers with a separate pre-MLP norm
POST_NORM_SMOOTHQUANT_MAPPINGS: list[list[Any]] = [
    [["re:.*q_proj$", "re:.*k_proj$", "re:.*v_proj$"], "re:.*input_layernorm$"],
    [["re:.*gate_proj$", "re:.*up_proj$"], f"re:.*{PRE_MLP_NORM}$"],
]


def _converted() -> set[str]:
    """The norm classes llm-compressor's calibration context converts (lookup names)."""
    from llmcompressor.modeling.offset_norm import NormCalibrationModule

    return set(NormCalibrationModule.registered_names()) | set(NormCalibrationModule.registered_aliases())


def scales_by_one_plus_w(module: Any) -> bool:
    """Whether a norm's output survives a zero weight (and bias): its scale is ``1 + w``, not ``w``.

    A probe, not a list of class names: one forward of a random row with the
    parameters zeroed for the call and put back after.
    """
    import torch

    weight = getattr(module, "weight", None)
    if not isinstance(weight, torch.nn.Parameter) or weight.dim() != 1 or weight.is_meta:
        return False
    params = [p for p in (weight, getattr(module, "bias", None)) if isinstance(p, torch.nn.Parameter)]
    saved = [p.data.clone() for p in params]
    try:
        with torch.no_grad():
            for p in params:
                p.data.zero_()
            # a generator of its own: the global one is seeded for the compression that follows
            x = torch.randn(2, weight.numel(), generator=torch.Generator().manual_seed(0))
            out = module(x.to(dtype=weight.dtype, device=weight.device))
        return bool(isinstance(out, torch.Tensor) and out.abs().max() > 0)
    except Exception:  # a module that is not a plain norm over the last dimension: not ours to judge
        return False
    finally:
        for p, data in zip(params, saved):
            p.data = data


def unknown_offset_norms(model: Any) -> list[str]:
    """Norm classes of ``model`` that scale by ``1 + w`` but that llm-compressor's context does not convert."""
    from compressed_tensors.registry import standardize_lookup_name

    known, seen, unknown = _converted(), set(), []
    for module in model.modules():
        name = type(module).__name__
        if "Norm" not in name or name in seen:
            continue
        seen.add(name)
        if standardize_lookup_name(name) not in known and scales_by_one_plus_w(module):
            unknown.append(name)
    return sorted(unknown)


def offset_norms(model: Any) -> list[str]:
    """Names of the modules llm-compressor's norm calibration context converts (scale ``1 + w``)."""
    from compressed_tensors.registry import standardize_lookup_name

    known = _converted()
    return [name for name, m in model.named_modules() if standardize_lookup_name(type(m).__name__) in known]


def has_post_norm_layers(model: Any) -> bool:
    """Whether the decoder layers feed their MLP from ``pre_feedforward_layernorm`` (Gemma 2/3 layout)."""
    return any(name.endswith("." + PRE_MLP_NORM) for name, _ in model.named_modules())


def _smoothing_modifiers(recipe: list[Any]) -> list[Any]:
    from llmcompressor.modifiers.transform.awq import AWQModifier
    from llmcompressor.modifiers.transform.smoothquant import SmoothQuantModifier

    return [m for m in recipe if isinstance(m, (SmoothQuantModifier, AWQModifier))]


def check_smoothing(model: Any, recipe: list[Any]) -> None:
    """Refuse, in one line, smoothing a model whose offset norms llm-compressor would treat as plain ones."""
    smoothing = _smoothing_modifiers(recipe)
    if not smoothing:
        return
    unknown = unknown_offset_norms(model)
    if unknown:
        names = ", ".join(type(m).__name__.removesuffix("Modifier") for m in smoothing)
        raise CalibenchError(
            f"{names} cannot smooth this model: its norms ({', '.join(unknown)}) scale by 1 + w and llm-compressor "
            "does not convert them; use gptq, rtn or an fp8 scheme instead"
        )


@contextlib.contextmanager
def smoothing_for(model: Any, recipe: list[Any]) -> Iterator[None]:
    """While a stage runs: SmoothQuant modifiers without mappings follow a post-norm model's real data flow."""
    from llmcompressor.modifiers.transform.smoothquant import SmoothQuantModifier

    check_smoothing(model, recipe)
    patched = []
    if has_post_norm_layers(model):
        for modifier in recipe:
            if isinstance(modifier, SmoothQuantModifier) and modifier.mappings is None:
                modifier.mappings = [[list(balance), smooth] for balance, smooth in POST_NORM_SMOOTHQUANT_MAPPINGS]
                patched.append(modifier)
    try:
        yield
    finally:
        for modifier in patched:  # the recipe object is the caller's: leave it as given
            modifier.mappings = None
