"""Pruning masks as pure tensor math: which weights a magnitude criterion removes.

Kept apart from any hook or library so that the tests can check the
definitions directly: per output row, exactly ``round(sparsity * in)``
weights go; for N:M, exactly N of every M consecutive inputs go.
"""

from __future__ import annotations

import torch


def magnitude_prune_mask(weight: torch.Tensor, sparsity: float, nm: tuple[int, int] | None = None) -> torch.Tensor:
    """Boolean mask (True = pruned) of the smallest-magnitude weights of each output row."""
    scores = weight.detach().abs().float()
    rows, cols = scores.shape
    if nm is not None:
        n, m = nm
        groups = scores.reshape(rows, cols // m, m)
        drop = torch.topk(groups, n, dim=-1, largest=False).indices
        mask = torch.zeros_like(groups, dtype=torch.bool).scatter_(-1, drop, True)
        return mask.reshape(rows, cols)
    k = int(round(sparsity * cols))
    mask = torch.zeros_like(scores, dtype=torch.bool)
    if k:
        mask.scatter_(1, torch.topk(scores, k, dim=1, largest=False).indices, True)
    return mask


def is_nm_sparse(weight: torch.Tensor, n: int, m: int) -> bool:
    """Whether at least N of every M consecutive inputs of every row are zero."""
    rows, cols = weight.shape
    zeros = (weight.reshape(rows, cols // m, m) == 0).sum(dim=-1)
    return bool((zeros >= n).all())
