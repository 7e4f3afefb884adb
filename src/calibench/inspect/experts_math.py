"""The counting math of expert routing, apart from hooks and I/O: counts, entropy, starved experts, set comparison.

A token routed top-k counts once for each of its k experts, so a layer's
counts sum to ``k x tokens``.  An expert is *starved* by a set when it got
fewer than ``min_tokens`` such assignments: a quantizer calibrating it sees
that few rows (none at zero).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

#: Fewer routed tokens than this and an expert counts as starved (a default, not a law: raise it for a
#: method that needs many rows per expert, e.g. GPTQ's Hessian).
DEFAULT_MIN_TOKENS = 16


def count_assignments(indices: Any, n_experts: int) -> np.ndarray:
    """Tokens per expert from selected expert ids of shape (tokens, k): each token counts for each of its k."""
    flat = np.asarray(indices, dtype=np.int64).reshape(-1)
    if flat.size and (flat.min() < 0 or flat.max() >= n_experts):
        raise ValueError(f"expert ids must lie in [0, {n_experts}), got {int(flat.min())}..{int(flat.max())}")
    return np.bincount(flat, minlength=n_experts).astype(np.int64)


def routing_entropy(counts: Sequence[int] | np.ndarray) -> float | None:
    """Entropy of the share of assignments per expert, over log(n_experts): 1 is uniform, 0 one expert.

    None when nothing was routed (or there is a single expert).
    """
    counts = np.asarray(counts, dtype=np.float64)
    total = counts.sum()
    if total <= 0 or counts.size < 2:
        return None
    p = counts[counts > 0] / total
    return float(-(p * np.log(p)).sum() / math.log(counts.size))


def starved_experts(counts: Sequence[int] | np.ndarray, min_tokens: int) -> list[int]:
    """Experts with fewer than ``min_tokens`` assignments (zero included), ascending."""
    return [int(e) for e in np.flatnonzero(np.asarray(counts) < min_tokens)]


def zero_experts(counts: Sequence[int] | np.ndarray) -> list[int]:
    return [int(e) for e in np.flatnonzero(np.asarray(counts) == 0)]


def covered_share(counts: Sequence[int] | np.ndarray, min_tokens: int) -> float:
    """Share of experts with at least ``min_tokens`` assignments."""
    counts = np.asarray(counts)
    return float((counts >= min_tokens).sum() / counts.size) if counts.size else 0.0


def coverage_summary(layers: Sequence[Sequence[int]], min_tokens: int) -> dict[str, float]:
    """Over MoE layers: the smallest and the mean covered share, and the share of all (layer, expert) pairs."""
    shares = [covered_share(c, min_tokens) for c in layers]
    total = sum(len(c) for c in layers)
    covered = sum(int((np.asarray(c) >= min_tokens).sum()) for c in layers)
    return {
        "min_layer": min(shares) if shares else 0.0,
        "mean_layer": float(np.mean(shares)) if shares else 0.0,
        "all": covered / total if total else 0.0,
    }


def starved_but_covered(
    counts: Mapping[str, Sequence[Sequence[int]]], min_tokens: int
) -> list[tuple[str, str, int, list[int]]]:
    """``(set, other, layer position, experts)`` for every layer where ``set`` starves experts ``other`` covers.

    ``counts`` maps a set label to its per-layer counts (the same layers, in
    the same order, for every set).  Ordered pairs: A starving what B covers
    is a different fact from B starving what A covers.
    """
    out = []
    labels = list(counts)
    for a in labels:
        for b in labels:
            if a == b:
                continue
            for position, (here, there) in enumerate(zip(counts[a], counts[b], strict=True)):
                ca, cb = np.asarray(here), np.asarray(there)
                experts = [int(e) for e in np.flatnonzero((ca < min_tokens) & (cb >= min_tokens))]
                if experts:
                    out.append((a, b, position, experts))
    return out


def starved_everywhere(counts: Mapping[str, Sequence[Sequence[int]]], min_tokens: int) -> list[tuple[int, list[int]]]:
    """``(layer position, experts)`` starved by every set: no set given calibrates them."""
    per_set = [[np.asarray(c) < min_tokens for c in layers] for layers in counts.values()]
    if not per_set:
        return []
    out = []
    for position in range(len(per_set[0])):
        starved = np.logical_and.reduce([layers[position] for layers in per_set])
        if starved.any():
            out.append((position, [int(e) for e in np.flatnonzero(starved)]))
    return out
