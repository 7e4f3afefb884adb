"""Stage 3a: per-layer sequence-mean activations of a pool, captured in batches.

For every window the output hidden state of each decoder layer (found by
:func:`calibench.curate.layers.find_decoder_layers`) is averaged over the
window's unmasked positions and L2-normalised; a :class:`FeatureReducer`
turns the per-layer vectors of a batch into feature rows right away.  Memory
is therefore bounded by one batch of one layer's hidden states plus the
(pool x dim) feature matrix: a pool of 10,000 windows at dim 64 is 2.5 MB,
where the full-width features of SmolLM2 (30 layers x 576) would be 690 MB.

The forward pass stops after the last decoder layer (the LM head's
vocabulary-wide logits are never computed), and several reducers can share
one capture (e.g. one projection per seed).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from calibench.core.progress import task
from calibench.core.settings import DEFAULTS
from calibench.curate.layers import DecoderLayers, find_decoder_layers
from calibench.curate.projection import FeatureReducer


class _StopForward(Exception):
    """Raised by the last layer's hook: nothing after the decoder stack is needed."""


def layer_widths(model: Any, layers: DecoderLayers | None = None) -> list[int]:
    """The hidden width each decoder layer outputs (the embedding width: the residual stream)."""
    layers = layers or find_decoder_layers(model)
    width = int(model.get_input_embeddings().embedding_dim)
    return [width] * len(layers)


def _hidden(output: Any) -> Any:
    """The hidden states in a layer's output (a tensor, or the first tensor of a tuple)."""
    import torch

    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list)):
        for item in output:
            if isinstance(item, torch.Tensor) and item.ndim == 3:
                return item
    raise TypeError(f"cannot find hidden states in a decoder layer output of type {type(output).__name__}")


def masked_mean_normalised(hidden: Any, mask: Any) -> Any:
    """Mean over the unmasked positions of (B, T, H) hidden states, then L2-normalised rows."""
    import torch

    weights = mask.to(hidden.dtype).unsqueeze(-1)
    mean = (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp_min(1.0)
    return torch.nn.functional.normalize(mean.float(), dim=1, eps=1e-12)


def capture_features(
    model: Any,
    input_ids: Any,
    attention_mask: Any | None,
    reducers: Sequence[FeatureReducer],
    *,
    batch_size: int = DEFAULTS.batch_size,
    layers: DecoderLayers | None = None,
    label: str = "capturing activations",
) -> list[np.ndarray]:
    """One (N, reducer.dim) float32 matrix per reducer, for the N windows of ``input_ids``."""
    import torch

    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    layers = layers or find_decoder_layers(model)
    ids = torch.as_tensor(np.asarray(input_ids), dtype=torch.long)
    mask = (
        torch.ones_like(ids)
        if attention_mask is None
        else torch.as_tensor(np.asarray(attention_mask), dtype=torch.long)
    )
    count = ids.shape[0]
    outputs = [np.zeros((count, r.dim), dtype=np.float32) for r in reducers]
    device = next(model.parameters()).device

    current: dict[str, Any] = {}
    means: list[Any] = []

    def make_hook(index: int):
        def hook(_module: Any, _args: Any, output: Any) -> None:
            means.append(masked_mean_normalised(_hidden(output), current["mask"]))
            if index == len(layers) - 1:
                raise _StopForward

        return hook

    handles = [layer.register_forward_hook(make_hook(i)) for i, layer in enumerate(layers.layers)]
    try:
        with torch.inference_mode(), task(label, total=count, unit="windows") as bar:
            for begin in range(0, count, batch_size):
                batch_ids = ids[begin : begin + batch_size].to(device)
                batch_mask = mask[begin : begin + batch_size].to(device)
                current["mask"] = batch_mask
                means.clear()
                try:
                    model(input_ids=batch_ids, attention_mask=batch_mask, use_cache=False)
                except _StopForward:
                    pass
                if len(means) != len(layers):
                    raise RuntimeError(f"captured {len(means)} of {len(layers)} decoder layers")
                for reducer, out in zip(reducers, outputs):
                    out[begin : begin + len(batch_ids)] = reducer.reduce(means).cpu().numpy()
                bar.advance(len(batch_ids))
    finally:
        for handle in handles:
            handle.remove()
        means.clear()
        current.clear()
    return outputs
