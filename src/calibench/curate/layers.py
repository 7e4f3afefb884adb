"""Decoder-layer discovery by model structure, never by attribute names.

COLA captures the output of every decoder layer.  Its reference code looked
the layers up by attribute names that Llama and Qwen do not use; here they are
found by what they are: the decoder stack is the ``nn.ModuleList`` whose
children

* are all of one class (structurally the same block, repeated), and
* each hold at least :data:`MIN_MATRICES` weight matrices (attention and MLP
  projections: ``nn.Linear`` in Llama/Qwen/Gemma, ``Conv1D`` in GPT-2, both
  have 2-D weights),

and among such lists the one with the most parameters (so an MoE layer's
list of experts, or a vision tower's shorter stack, loses to the language
decoder).  Nothing here reads ``model.model.layers``, ``transformer.h`` or a
config field.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from calibench.core.errors import CalibenchError

#: Weight matrices a decoder block has at least (q/k/v/o or fused qkv + out, and the MLP's two or three).
MIN_MATRICES = 4


@dataclass(frozen=True)
class DecoderLayers:
    """The decoder stack: its qualified name in the model and the layers in order."""

    name: str
    layers: list[Any]
    layer_class: str
    parameters: int

    def __len__(self) -> int:
        return len(self.layers)

    def describe(self) -> dict[str, Any]:
        return {
            "module": self.name,
            "count": len(self.layers),
            "class": self.layer_class,
            "parameters": self.parameters,
        }


def _matrices(module: Any) -> int:
    return sum(1 for p in module.parameters() if p.ndim == 2)


def find_decoder_layers(model: Any) -> DecoderLayers:
    """The repeated decoder blocks of ``model`` (any causal LM), found by structure."""
    import torch

    best: DecoderLayers | None = None
    for name, module in model.named_modules():
        if not isinstance(module, torch.nn.ModuleList) or len(module) == 0:
            continue
        children = list(module)
        first = type(children[0])
        if any(type(child) is not first for child in children):
            continue
        if any(_matrices(child) < MIN_MATRICES for child in children):
            continue
        params = sum(p.numel() for child in children for p in child.parameters())
        if best is None or params > best.parameters:
            best = DecoderLayers(name=name, layers=children, layer_class=first.__name__, parameters=params)
    if best is None:
        raise CalibenchError(
            f"found no decoder layers in {type(model).__name__}: no list of repeated blocks with attention "
            "and MLP weights; COLA selection needs a transformer decoder"
        )
    return best
