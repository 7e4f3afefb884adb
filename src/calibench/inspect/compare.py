"""How much a model's outliers move with the calibration set: set-against-set comparisons (pure math).

Paglieri et al. (2024) asked whether the *position* and the *size* of
activation outliers change with the calibration set.  Three numbers per pair
of sets and per layer answer it, each on what a quantizer actually uses:

* position of the large channels, as a ranking: the Spearman correlation of
  per-channel max |x| (1: the same channels are large, in the same order);
* position, as a set: the Jaccard overlap of the top-k channels by max |x|
  (what SmoothQuant and AWQ migrate scale for, and what a mixed-precision
  scheme would keep in 16 bits);
* size: the ratio of the layer's max |x| (what a static per-tensor activation
  scale is set from).

:func:`stability_summary` reduces every pair and layer to one row per model,
so "how much do this model's outliers move" is a number that can be compared
across models.
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from collections.abc import Hashable, Sequence
from typing import TypeVar

import numpy as np
from pydantic import BaseModel

from calibench.inspect.collect import ActivationStats, SiteStats

DEFAULT_TOP_K = 16

H = TypeVar("H", bound=Hashable)


def spearman(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Spearman's rho with average ranks for ties; None when either side is constant (undefined)."""
    from scipy.stats import rankdata

    ra, rb = rankdata(np.asarray(a, dtype=np.float64)), rankdata(np.asarray(b, dtype=np.float64))
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denom = math.sqrt(float(ra @ ra) * float(rb @ rb))
    return float(ra @ rb) / denom if denom > 0 else None


def top_channels(values: Sequence[float], k: int) -> set[int]:
    """The k channels with the largest values (ties broken by the lower index, so the choice is deterministic)."""
    order = np.lexsort((np.arange(len(values)), -np.asarray(values, dtype=np.float64)))
    return {int(i) for i in order[:k]}


def jaccard(a: set[H], b: set[H]) -> float:
    return len(a & b) / len(a | b) if a | b else 1.0


class LayerComparison(BaseModel):
    """Two sets at one (site kind, layer): linear inputs of a layer are averaged, its max is the max of its sites."""

    kind: str
    layer: int
    spearman: float | None
    jaccard: float
    max_ratio: float  # layer max |x| under set a / under set b


class PairComparison(BaseModel):
    a: str
    b: str
    top_k: int
    layers: list[LayerComparison]


def _by_layer(stats: ActivationStats) -> dict[tuple[str, int], list[SiteStats]]:
    grouped: dict[tuple[str, int], list[SiteStats]] = defaultdict(list)
    for site in stats.sites:
        grouped[(site.kind, site.layer)].append(site)
    return grouped


def compare_pair(
    a: ActivationStats, b: ActivationStats, *, labels: tuple[str, str] | None = None, top_k: int = DEFAULT_TOP_K
) -> PairComparison:
    """Compare two sets' statistics of the same model, site by site, reduced per (kind, layer)."""
    sites_b = {site.name: site for site in b.sites}
    layers = []
    for (kind, layer), members in _by_layer(a).items():
        pairs = [(site, sites_b[site.name]) for site in members if site.name in sites_b]
        if not pairs:
            continue
        rhos = [r for r in (spearman(x.channel_max_abs, y.channel_max_abs) for x, y in pairs) if r is not None]
        overlaps = [
            jaccard(top_channels(x.channel_max_abs, top_k), top_channels(y.channel_max_abs, top_k)) for x, y in pairs
        ]
        max_a, max_b = max(x.max_abs for x, _ in pairs), max(y.max_abs for _, y in pairs)
        layers.append(
            LayerComparison(
                kind=kind,
                layer=layer,
                spearman=float(np.mean(rhos)) if rhos else None,
                jaccard=float(np.mean(overlaps)),
                max_ratio=max_a / max_b if max_b > 0 else math.inf,
            )
        )
    label_a, label_b = labels or (a.set_id or "a", b.set_id or "b")
    return PairComparison(a=label_a, b=label_b, top_k=top_k, layers=layers)


def compare_sets(stats: dict[str, ActivationStats], *, top_k: int = DEFAULT_TOP_K) -> list[PairComparison]:
    """Every unordered pair of sets, in the order the sets were given."""
    return [
        compare_pair(stats[x], stats[y], labels=(x, y), top_k=top_k) for x, y in itertools.combinations(list(stats), 2)
    ]


class KindStability(BaseModel):
    """One site kind's stability over every pair of sets and every layer."""

    kind: str
    mean_spearman: float | None
    min_spearman: float | None
    mean_jaccard: float
    min_jaccard: float
    max_ratio_spread: float  # geometric mean over pairs and layers of max(r, 1/r): 1.0 is "size never moves"
    worst_max_ratio: float  # the largest max(r, 1/r) of any pair and layer
    worst_layer: int | None


class StabilitySummary(BaseModel):
    """How much this model's outliers move with the calibration set, per site kind."""

    sets: list[str]
    pairs: int
    top_k: int
    kinds: list[KindStability]
    outlier_feature_jaccard: float | None  # mean over pairs: do the sets find the same LLM.int8 outlier features?


def _feature_keys(stats: ActivationStats) -> set[tuple[str, str, int]]:
    return {(f.kind, f.role, f.channel) for f in stats.outlier_features}


def stability_summary(stats: dict[str, ActivationStats], comparisons: list[PairComparison]) -> StabilitySummary:
    top_k = comparisons[0].top_k if comparisons else DEFAULT_TOP_K
    kinds = []
    for kind in sorted({layer.kind for pair in comparisons for layer in pair.layers}):
        rows = [(layer, pair) for pair in comparisons for layer in pair.layers if layer.kind == kind]
        rhos = [layer.spearman for layer, _ in rows if layer.spearman is not None]
        spreads = [max(layer.max_ratio, 1 / layer.max_ratio) if layer.max_ratio > 0 else math.inf for layer, _ in rows]
        worst = int(np.argmax(spreads))
        finite = [s for s in spreads if math.isfinite(s)]
        kinds.append(
            KindStability(
                kind=kind,
                mean_spearman=float(np.mean(rhos)) if rhos else None,
                min_spearman=float(np.min(rhos)) if rhos else None,
                mean_jaccard=float(np.mean([layer.jaccard for layer, _ in rows])),
                min_jaccard=float(np.min([layer.jaccard for layer, _ in rows])),
                max_ratio_spread=float(np.exp(np.mean(np.log(finite)))) if finite else math.inf,
                worst_max_ratio=float(spreads[worst]),
                worst_layer=rows[worst][0].layer,
            )
        )
    labels = list(stats)
    feature_pairs = [(_feature_keys(stats[x]), _feature_keys(stats[y])) for x, y in itertools.combinations(labels, 2)]
    feature_pairs = [(x, y) for x, y in feature_pairs if x | y]
    return StabilitySummary(
        sets=labels,
        pairs=len(comparisons),
        top_k=top_k,
        kinds=kinds,
        outlier_feature_jaccard=float(np.mean([jaccard(x, y) for x, y in feature_pairs])) if feature_pairs else None,
    )
