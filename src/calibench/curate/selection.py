"""Stage 3b: k-means in the projected activation space, then the pool member nearest each centroid.

k-means is scikit-learn's (Lloyd, k-means++ init) with ``k`` = the number of
samples wanted, a fixed ``random_state`` and ``n_init`` restarts (the best
inertia wins).  For every centroid the selected sample is the pool member at
the smallest Euclidean distance.  Two centroids can share a nearest member;
then the centroids are served in order of their nearest distance and each
takes its nearest member not yet taken (recorded as ``duplicates_resolved``),
so the result always has ``k`` distinct pool rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from calibench.core.errors import CalibenchError
from calibench.core.settings import DEFAULTS

DEFAULT_N_INIT = 10


@dataclass
class Selection:
    indices: list[int]  # chosen pool rows, ascending
    per_centroid: list[int]  # chosen row of centroid j, in centroid order
    centroids: np.ndarray
    inertia: float
    iterations: int
    duplicates_resolved: int
    settings: dict[str, Any] = field(default_factory=dict)

    def record(self) -> dict[str, Any]:
        return {
            **self.settings,
            "inertia": float(self.inertia),
            "iterations": int(self.iterations),
            "duplicates_resolved": int(self.duplicates_resolved),
            "chosen_pool_indices": [int(i) for i in self.indices],
            "chosen_per_centroid": [int(i) for i in self.per_centroid],
        }


def squared_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(len(a), len(b)) squared Euclidean distances, in float64."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    d = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return np.maximum(d, 0.0)


def nearest_members(features: np.ndarray, centroids: np.ndarray) -> tuple[list[int], int]:
    """For each centroid the nearest pool row, all distinct; and how many clashes were resolved."""
    dist = squared_distances(centroids, features)
    order = np.argsort(dist.min(axis=1), kind="stable")
    taken: set[int] = set()
    chosen = [-1] * len(centroids)
    clashes = 0
    for j in order:
        ranked = np.argsort(dist[j], kind="stable")
        if int(ranked[0]) in taken:
            clashes += 1
        for i in ranked:
            if int(i) not in taken:
                chosen[j] = int(i)
                taken.add(int(i))
                break
    return chosen, clashes


def kmeans_select(
    features: np.ndarray, k: int, seed: int = DEFAULTS.seed, n_init: int = DEFAULT_N_INIT, max_iter: int = 300
) -> Selection:
    """The ``k`` pool rows nearest the centroids of a seeded k-means on ``features``."""
    from sklearn.cluster import KMeans

    features = np.ascontiguousarray(features, dtype=np.float32)
    if features.ndim != 2:
        raise ValueError(f"features must be 2-D, got shape {features.shape}")
    if not 1 <= k <= len(features):
        raise CalibenchError(f"cannot select {k} samples from a pool of {len(features)}: grow --pool-size or lower --n")
    if n_init < 1:
        raise CalibenchError(f"--n-init must be at least 1, got {n_init}")
    km = KMeans(n_clusters=k, init="k-means++", n_init=n_init, max_iter=max_iter, random_state=seed, algorithm="lloyd")
    km.fit(features)
    per_centroid, clashes = nearest_members(features, km.cluster_centers_)
    return Selection(
        indices=sorted(per_centroid),
        per_centroid=per_centroid,
        centroids=km.cluster_centers_,
        inertia=float(km.inertia_),
        iterations=int(km.n_iter_),
        duplicates_resolved=clashes,
        settings={
            "algorithm": "sklearn KMeans (lloyd, k-means++)",
            "k": k,
            "seed": seed,
            "n_init": n_init,
            "max_iter": max_iter,
        },
    )


def random_select(pool_size: int, k: int, seed: int = DEFAULTS.seed) -> list[int]:
    """``k`` distinct pool rows drawn uniformly (the baseline COLA is compared with), ascending."""
    if not 1 <= k <= pool_size:
        raise CalibenchError(f"cannot select {k} samples from a pool of {pool_size}: grow --pool-size or lower --n")
    rng = np.random.default_rng(seed)
    return sorted(int(i) for i in rng.choice(pool_size, size=k, replace=False))
