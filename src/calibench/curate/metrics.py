"""Representativeness and diversity of a selection, in activation space.

Both are computed on feature rows (by default the projected COLA features of
:mod:`calibench.curate.activations`):

* **coverage** (representativeness): the mean, over pool points, of the
  Euclidean distance to the nearest selected sample.  Lower is better: the
  selection leaves no region of the pool far from a sample.
* **diversity**: the mean Euclidean distance over all pairs of distinct
  selected samples.  Higher means the samples are more spread out.

The pool is streamed in blocks, so a pool of any size needs memory
proportional to block x selected only.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from calibench.curate.selection import squared_distances

BLOCK = 4096


def coverage(pool: np.ndarray, selected: np.ndarray, block: int = BLOCK) -> float:
    """Mean distance from each pool point to its nearest selected point (lower: better covered)."""
    pool = np.asarray(pool)
    selected = np.asarray(selected)
    if len(pool) == 0 or len(selected) == 0:
        return float("nan")
    total = 0.0
    for begin in range(0, len(pool), block):
        d = squared_distances(pool[begin : begin + block], selected).min(axis=1)
        total += float(np.sqrt(d).sum())
    return total / len(pool)


def diversity(selected: np.ndarray) -> float:
    """Mean pairwise distance among the selected points (NaN for fewer than two)."""
    selected = np.asarray(selected)
    n = len(selected)
    if n < 2:
        return float("nan")
    d = np.sqrt(squared_distances(selected, selected))
    upper = d[np.triu_indices(n, k=1)]
    return float(upper.mean())


def activation_metrics(pool: np.ndarray, selected: np.ndarray) -> dict[str, Any]:
    return {"coverage": coverage(pool, selected), "diversity": diversity(selected)}
