"""Magnitude pruning as an llm-compressor modifier.

llm-compressor's own MagnitudePruningModifier is a training-time schedule
and leaves the weights untouched under ``oneshot``; this one-shot modifier
applies :func:`magnitude_prune_mask` to every targeted Linear when the recipe
initialises, so magnitude pruning composes with the other modifiers in one
recipe.  It reads no calibration data (the baseline of the Wanda paper).
"""

from __future__ import annotations

from typing import Any

import torch
from llmcompressor.modifiers import Modifier

from calibench.compress.masks import magnitude_prune_mask


class MagnitudeOneShotModifier(Modifier):
    sparsity: float
    mask_structure: str = "0:0"
    targets: list[str] = ["Linear"]
    ignore: list[str] = []

    def on_initialize(self, state: Any, **kwargs: Any) -> bool:
        from compressed_tensors.utils import match_named_modules

        nm = None
        if self.mask_structure != "0:0":
            n, m = (int(x) for x in self.mask_structure.split(":"))
            nm = (n, m)
        with torch.no_grad():
            for _, module in match_named_modules(state.model, self.targets, self.ignore):
                mask = magnitude_prune_mask(module.weight, self.sparsity, nm)
                module.weight.masked_fill_(mask, 0.0)
        return True

    def on_finalize(self, state: Any, **kwargs: Any) -> bool:
        return True
