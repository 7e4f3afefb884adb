"""Bootstrap confidence intervals: of a run's mean, and of the mean paired difference of two runs.

Percentile bootstrap over documents, seeded (``numpy.random.default_rng``),
so the same numbers give the same interval.  NaN values (an empty summary
has no coverage) are left out before resampling; a paired difference keeps
only the documents where both runs have a value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from calibench.core.stats import paired_bootstrap_ci

BOOTSTRAP_ITERS = 1000
BOOTSTRAP_SEED = 0


@dataclass(frozen=True)
class Interval:
    mean: float
    low: float
    high: float
    stderr: float  # std of the bootstrap means
    n: int

    def as_dict(self) -> dict[str, float | int]:
        return {"mean": self.mean, "low": self.low, "high": self.high, "stderr": self.stderr, "n": self.n}


def bootstrap_mean(
    values: np.ndarray | list[float], iters: int = BOOTSTRAP_ITERS, seed: int = BOOTSTRAP_SEED, level: float = 0.95
) -> Interval:
    x = np.asarray(values, dtype=np.float64)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return Interval(math.nan, math.nan, math.nan, math.nan, 0)
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(iters, x.size))].mean(axis=1)
    alpha = (1 - level) / 2
    return Interval(
        float(x.mean()),
        float(np.quantile(means, alpha)),
        float(np.quantile(means, 1 - alpha)),
        float(means.std(ddof=1)) if iters > 1 else 0.0,
        int(x.size),
    )


def paired_bootstrap(a: np.ndarray | list[float], b: np.ndarray | list[float], level: float = 0.95) -> Interval:
    """CI of mean(b - a) over documents, resampling documents (the pairs stay together).

    The interval is the study report's own paired bootstrap
    (:func:`calibench.core.stats.paired_bootstrap_ci`), so a summarization
    difference and an accuracy difference in one report come from one method.
    """

    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    keep = np.isfinite(x) & np.isfinite(y)
    if not keep.any():
        return Interval(math.nan, math.nan, math.nan, math.nan, 0)
    ci = paired_bootstrap_ci(y[keep], x[keep], level=level)
    return Interval(ci.estimate, ci.low, ci.high, ci.stderr, int(keep.sum()))
