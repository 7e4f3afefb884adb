"""The random projection of stage 3: a seeded Gaussian matrix, applied per layer and per batch.

COLA's feature of a sample is the concatenation over decoder layers of the
L2-normalised sequence-mean activation, reduced by a random projection.  The
projection is linear, so ``concat(x_1..x_L) @ R == sum_l x_l @ R_l`` with
``R_l`` the rows of ``R`` for layer ``l``: each batch is projected as it is
captured and the full-width concatenation never exists for more than one
layer of one batch.  The concatenation is also divided by ``sqrt(L)`` so that
every feature vector has norm 1 before projection (a uniform scale: it changes
no k-means result, only makes distances comparable across models).

``R`` has i.i.d. N(0, 1/dim) entries (Johnson-Lindenstrauss), drawn from
``numpy.random.default_rng(seed)`` in layer order, so the same seed, layer
widths and dim give the same matrix on every machine.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

DEFAULT_DIM = 64


class FeatureReducer:
    """Turns the per-layer normalised means of one batch into feature rows."""

    dim: int

    def reduce(self, layer_means: Sequence[Any]) -> Any:  # list of (B, H_l) tensors -> (B, dim)
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        raise NotImplementedError


class Concatenate(FeatureReducer):
    """No reduction: the full-width concatenation (for small pools, tests and baselines)."""

    def __init__(self, widths: Sequence[int]):
        self.widths = list(widths)
        self.dim = sum(self.widths)

    def reduce(self, layer_means: Sequence[Any]) -> Any:
        import torch

        return torch.cat(list(layer_means), dim=1) / math.sqrt(len(layer_means))

    def describe(self) -> dict[str, Any]:
        return {"kind": "concatenate", "dim": self.dim}


class RandomProjection(FeatureReducer):
    """``concat(x_l) / sqrt(L) @ R``, computed as a sum of per-layer products."""

    def __init__(self, widths: Sequence[int], dim: int = DEFAULT_DIM, seed: int = 0):
        if dim < 1:
            raise ValueError(f"projection dim must be at least 1, got {dim}")
        self.widths = [int(w) for w in widths]
        self.dim = int(dim)
        self.seed = int(seed)
        rng = np.random.default_rng(self.seed)
        self.blocks = [
            (rng.standard_normal((w, self.dim)) / math.sqrt(self.dim)).astype(np.float32) for w in self.widths
        ]
        self._torch_blocks: list[Any] | None = None

    @property
    def matrix(self) -> np.ndarray:
        """The whole (sum of widths) x dim matrix, for checks; the pipeline never builds it."""
        return np.concatenate(self.blocks, axis=0)

    def reduce(self, layer_means: Sequence[Any]) -> Any:
        import torch

        if self._torch_blocks is None:
            self._torch_blocks = [torch.from_numpy(b) for b in self.blocks]
        if len(layer_means) != len(self._torch_blocks):
            raise ValueError(f"projection made for {len(self._torch_blocks)} layers, got {len(layer_means)}")
        out = None
        for x, block in zip(layer_means, self._torch_blocks):
            part = x.float() @ block.to(x.device)
            out = part if out is None else out + part
        if out is None:
            raise ValueError("projection made for no layers")
        return out / math.sqrt(len(layer_means))

    def describe(self) -> dict[str, Any]:
        return {
            "kind": "gaussian_random_projection",
            "dim": self.dim,
            "seed": self.seed,
            "entries": "N(0, 1/dim)",
            "input_dim": sum(self.widths),
        }
