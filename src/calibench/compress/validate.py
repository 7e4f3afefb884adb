"""Checks that run before any compression work starts.

Found by structure, not by attribute names: the targets are every
``nn.Linear`` except the model's output embedding (``lm_head`` in Llama, but
found through ``get_output_embeddings()``), which every method leaves dense.
"""

from __future__ import annotations

from typing import Any

import torch

from calibench.compress.methods import DEFAULT_GROUP_SIZE, PER_CHANNEL, Method, MethodParams
from calibench.core.errors import CalibenchError

CANDIDATE_GROUP_SIZES = (256, 128, 64, 32, 16)


def target_linears(model: Any) -> dict[str, torch.nn.Linear]:
    """Every Linear a method compresses, by qualified name."""
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    return {
        name: module
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) and module is not head
    }


def input_dims(model: Any) -> set[int]:
    return {module.in_features for module in target_linears(model).values()}


def fitting_group_sizes(dims: set[int]) -> list[int]:
    """Group sizes (largest first) that divide every input dimension."""
    return [g for g in CANDIDATE_GROUP_SIZES if all(d % g == 0 for d in dims)]


def resolve_group_size(model: Any, methods: list[Method], params: MethodParams) -> tuple[MethodParams, str | None]:
    """Fill in the default group size, or refuse one that does not divide the dimensions.

    Returns the completed parameters and a note when the paper default (128)
    had to give way to a smaller group size.
    """
    if not any(m.uses_group_size for m in methods):
        return params, None
    dims = input_dims(model)
    fits = fitting_group_sizes(dims)
    if params.group_size is None:
        if DEFAULT_GROUP_SIZE in fits:
            return params.model_copy(update={"group_size": DEFAULT_GROUP_SIZE}), None
        chosen = fits[0] if fits else PER_CHANNEL
        label = "per-channel" if chosen == PER_CHANNEL else str(chosen)
        note = f"group size 128 does not divide input dims {sorted(dims)}: using {label}"
        return params.model_copy(update={"group_size": chosen}), note
    if params.group_size != PER_CHANNEL:
        bad = sorted(d for d in dims if d % params.group_size)
        if bad:
            hint = f"use --group-size {fits[0]}" if fits else "use --group-size 0 (per-channel)"
            raise CalibenchError(
                f"group size {params.group_size} does not divide the input dimension(s) {bad} of this model: {hint}"
            )
    return params, None


def check_structure(model: Any, params: MethodParams) -> None:
    """N:M needs every input dimension to be a multiple of M."""
    if params.nm is None:
        return
    _, m = params.nm
    bad = sorted(d for d in input_dims(model) if d % m)
    if bad:
        raise CalibenchError(f"{params.structure} sparsity needs input dims divisible by {m}; this model has {bad}")


def check_causal_lm(model: Any) -> None:
    """Refuse models that are not decoder-only LMs (the methods and evaluation assume one)."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    known = set(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.values())
    name = type(model).__name__
    if name not in known or not callable(getattr(model, "get_output_embeddings", None)):
        raise CalibenchError(f"{name} is not a causal language model: calibench compresses decoder-only LMs")
