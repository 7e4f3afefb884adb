"""Anytime-valid comparisons of calibration conditions for adaptive evaluation (pure numpy, no I/O).

Why: adaptive evaluation scores a few more items, looks at the comparison,
and stops once it is clear.  Fixed-n tests (:mod:`calibench.core.stats`) are
not valid under such optional stopping: peeking after every block of items
and stopping at the first p < 0.05 rejects a true null far more often than
5 % of the time.  A *confidence sequence* is a sequence of intervals that
covers the true mean at every sample size simultaneously with probability
1 - alpha, so it may be inspected after every item and the evaluation stopped
whenever one likes.

Method: the hedged betting capital of Waudby-Smith and Ramdas (2023,
"Estimating means of bounded random variables by betting", JRSS-B).  The
paired differences are rescaled from their known range ``[lower, upper]`` to
``x`` in [0, 1].  For a candidate mean ``m`` a bettor who starts with capital
1 and stakes ``lambda_t`` on each ``x_t - m`` holds::

    K+_t(m) = prod_{i<=t} (1 + lambda+_i(m) (x_i - m))     (bets the mean is above m)
    K-_t(m) = prod_{i<=t} (1 - lambda-_i(m) (x_i - m))     (bets it is below)

If the items are i.i.d. with mean ``m`` and each stake is chosen from the
items before it (predictable), both are non-negative martingales, and by
Ville's inequality ``P(sup_t K_t >= 1/a) <= a``.  Splitting the level between
the two sides (``HEDGE`` = 1/2 each) the set of means not yet rejected,
``{m : max_{s<=t} max(K+_s(m) / 2, K-_s(m) / 2) < 1/alpha}``, is a (1 - alpha)
confidence sequence; taking the running maximum over time makes it the
running intersection, so the intervals only shrink.  The stakes are the
predictable plug-in of the paper: ``lambda_t = sqrt(2 log(2/alpha) /
(sigma2_{t-1} h_t))`` from a running variance estimate ``sigma2``, with
``h_t = t log(1 + t)`` (tight over all sample sizes) or a fixed horizon
``h_t = n`` (tightest near ``n`` items: :class:`SequentialComparison` tunes
to its cap), truncated to ``c/m`` and ``c/(1 - m)`` with ``c = 1/2`` so every
factor stays >= 1/2.  The stakes do not depend on ``m`` except through that
truncation, so ``K+`` falls and ``K-`` rises with ``m`` and the confidence
set is an interval; it is computed on a grid of candidate means with its
ends rounded outward to grid points (conservative by at most one grid step).

The anytime-valid p-value of "mean difference = null" is ``min(1, 1 /
max_{s<=t} max(K+_s/2, K-_s/2))`` at ``m = null``: ``P(p_t <= a for some t)
<= a`` for every ``a``, and the sequence excludes ``null`` at level ``a``
exactly when ``p_t <= a`` (when ``null`` is a grid point).  Holm's procedure
over anytime-valid p-values stays valid at any stopping time: the p-values
only fall over time, Holm's rejections only grow as p-values fall, so every
rejection made at any look is also one of Holm's rejections of the
p-values' limits, which are valid p-values (:func:`holm_sequential`).

Assumptions.  (1) Bounded differences: 0/1 accuracy items give differences
in [-1, 1] (the default).  Per-window log-perplexity differences are
unbounded in principle; pass a range that they cannot leave (a difference
outside it is an error), or ``clip=True``, which clips them into the range:
the target is then the mean *clipped* difference, which is 0 whenever the
two conditions are exchangeable on each item (the sign-flip null of
:func:`calibench.core.stats.sign_flip_pvalue`) and the range is symmetric
about 0, so the test of "no difference" keeps its level.  (2) Items are
i.i.d. draws from the population of items the benchmark stands for (the
same view as the item bootstrap of :mod:`calibench.core.stats`), fed in an
order fixed before their scores are seen: shuffle a sorted benchmark with a
seed first.

Calibration sets as a random effect.  The items-only sequences
(:func:`confidence_sequence`, :func:`anytime_pvalue`) are about the
conditions that were evaluated: when the differences are averaged over a
source's sets they answer "is source A better than B *for these sets*".
Which sets happened to be drawn is a second source of variance that does
not shrink with more items; :func:`set_confidence_sequence` accounts for it
by a two-level construction, see its docstring.

Adaptive evaluation: :class:`SequentialComparison` takes blocks of
differences up to a cap and reports "decided" (Holm-adjusted anytime p <=
alpha across the family, :func:`family_status`), "futile" (the cap is
reached, or a stated projection says it will be reached undecided, see
:meth:`SequentialComparison.status`) or "running".

References: Waudby-Smith and Ramdas (2023), "Estimating means of bounded
random variables by betting" (hedged capital, predictable plug-in stakes);
Howard, Ramdas, McAuliffe and Sekhon (2021), "Time-uniform, nonparametric,
nonasymptotic confidence sequences" (the framework; empirical-Bernstein
alternatives); Ville (1939) for the maximal inequality; Holm (1979), "A
simple sequentially rejective multiple test procedure".

Everything here is deterministic: no randomness is used at all.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from calibench.core.errors import CalibenchError, ParameterError

ALPHA = 0.05
BLOCK = 25  # items per look of a SequentialComparison
CAP = 1000  # items a SequentialComparison may use at most
GRID = 2001  # candidate means over [lower, upper]; 2001 puts 0 on the grid of [-1, 1] with steps of 0.001
TRUNCATION = 0.5  # c: the largest stake is c / m (or c / (1 - m)), every factor of the capital >= 1 - c
HEDGE = 0.5  # share of the level given to the "above" side; 1 - HEDGE to "below"
FUTILITY_AFTER = 100  # items before a SequentialComparison may be called futile
FUTILITY_MARGIN = 2.0  # standard errors the futility projection moves the estimate away from the null
SET_SHARE = 0.5  # share of the level spent on the items (per-pair sequences) in the set-aware version
MAX_VERTEX_SETS = 12  # up to this many set pairs the set-level bounds are exact over all 2**k corners
P_FLOOR = 1e-12  # smallest set-aware p-value the bisection resolves
_CHUNK_ELEMENTS = 2_000_000  # bounds the memory of one vectorised block

DECIDED = "decided"
FUTILE = "futile"
RUNNING = "running"
THESE_SETS = "these sets"  # items-only: a statement about the evaluated sets
SOURCES = "sources"  # set-aware: a statement about the sources the sets are drawn from


# ----------------------------------------------------------------- checks


def _check_alpha(alpha: Any, param: str = "alpha") -> float:
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float, np.floating, np.integer)):
        raise ParameterError(param, f"must be a number in (0, 1), not {alpha!r}")
    if not 0.0 < float(alpha) < 1.0:
        raise ParameterError(param, f"must lie strictly between 0 and 1 (e.g. 0.05), not {alpha!r}")
    return float(alpha)


def _check_bounds(lower: Any, upper: Any) -> tuple[float, float]:
    lo, hi = float(lower), float(upper)
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ParameterError("lower", f"and upper must be finite numbers, not {lower!r} and {upper!r}")
    if lo >= hi:
        raise ParameterError("lower", f"must be below upper: the differences' range [{lo}, {hi}] is empty")
    return lo, hi


def _check_int(value: Any, param: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ParameterError(param, f"must be a whole number >= {minimum}, not {value!r}")
    return int(value)


def _check_horizon(horizon: Any) -> int | None:
    return None if horizon is None else _check_int(horizon, "horizon", 1)


def _scaled(diffs: Any, lower: float, upper: float, clip: bool, min_dims: int = 1) -> np.ndarray:
    """The differences rescaled from ``[lower, upper]`` to [0, 1]; out-of-range values are an error unless clipped."""
    d = np.asarray(diffs, dtype=float)
    if d.ndim < min_dims or d.shape[-1] == 0:
        raise CalibenchError("no paired differences given: a confidence sequence needs at least one item")
    if not np.all(np.isfinite(d)):
        raise CalibenchError("the paired differences hold non-finite values: drop or fix those items first")
    if clip:
        d = np.clip(d, lower, upper)
    else:
        outside = (d < lower) | (d > upper)
        if outside.any():
            first = float(d[outside].flat[0])
            raise ParameterError(
                "lower",
                f"and upper must bound every paired difference: {int(outside.sum())} lie outside "
                f"[{lower}, {upper}] (e.g. {first:g}); widen the range or pass clip=True",
            )
    return np.clip((d - lower) / (upper - lower), 0.0, 1.0)


def _scaled_null(null: float, lower: float, upper: float) -> float:
    if not lower < float(null) < upper:
        raise ParameterError("null", f"must lie strictly inside [{lower}, {upper}], not {null!r}")
    return (float(null) - lower) / (upper - lower)


def _looks(looks: Any, n: int) -> np.ndarray:
    """Item counts to report at: every item by default; otherwise increasing counts in 1..n."""
    if looks is None:
        return np.arange(1, n + 1)
    counts = np.asarray(looks).ravel()
    if counts.size == 0 or not np.issubdtype(counts.dtype, np.integer):
        raise ParameterError("looks", "must be a non-empty list of whole item counts")
    if counts[0] < 1 or counts[-1] > n or np.any(np.diff(counts) <= 0):
        raise ParameterError("looks", f"must be increasing item counts between 1 and {n}, not {counts.tolist()}")
    return counts.astype(int)


# ----------------------------------------------------------------- the betting capital


class _Capital:
    """Hedged betting capital against every candidate mean on a grid, fed item by item in blocks.

    ``x`` blocks have shape ``lead + (b,)`` (values in [0, 1]); the state
    has shape ``lead + (G,)`` for the G candidate means.  ``feed`` returns the
    running maxima of ``log K+`` and ``log K-`` after each item of the block,
    shape ``lead + (b, G)``.
    """

    def __init__(self, means: np.ndarray, lead: tuple[int, ...], alpha: float, horizon: int | None):
        self.means = np.asarray(means, dtype=float)
        self.scale = 2.0 * math.log(2.0 / alpha)
        self.horizon = horizon
        self.t = 0
        self.s1 = np.zeros(lead)  # sum of x
        self.s2 = np.zeros(lead)  # sum of (x_i - mu_i)^2, mu_i the running mean estimate after item i
        g = self.means.size
        self.log_plus = np.zeros((*lead, g))
        self.log_minus = np.zeros((*lead, g))
        self.max_plus = np.zeros((*lead, g))  # log K at t = 0 is 0: the running maxima start there
        self.max_minus = np.zeros((*lead, g))
        with np.errstate(divide="ignore"):
            self.cap_plus = np.where(self.means > 0, TRUNCATION / np.maximum(self.means, 1e-300), np.inf)
            self.cap_minus = np.where(self.means < 1, TRUNCATION / np.maximum(1.0 - self.means, 1e-300), np.inf)

    def variance(self) -> np.ndarray:
        """The plug-in variance after the items so far (1/4 before any: the largest a [0, 1] variable has)."""
        return (0.25 + self.s2) / (self.t + 1)

    def stakes(self, x: np.ndarray) -> np.ndarray:
        """Untruncated stakes for the block's items, each from the items before it (predictable)."""
        b = x.shape[-1]
        t = self.t + np.arange(1, b + 1)
        mean = (0.5 + self.s1[..., None] + np.cumsum(x, axis=-1)) / (t + 1)
        squares = self.s2[..., None] + np.cumsum((x - mean) ** 2, axis=-1)
        variance = (0.25 + squares) / (t + 1)
        before = np.concatenate([self.variance()[..., None], variance[..., :-1]], axis=-1)
        horizon = t * np.log1p(t) if self.horizon is None else float(self.horizon)
        self.s1 = self.s1 + x.sum(axis=-1)
        self.s2 = squares[..., -1]
        self.t += b
        return np.sqrt(self.scale / (before * horizon))

    def feed(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        lam = self.stakes(x)[..., None]  # lead + (b, 1)
        gap = x[..., None] - self.means  # lead + (b, G)
        plus = np.cumsum(np.log1p(np.minimum(lam, self.cap_plus) * gap), axis=-2) + self.log_plus[..., None, :]
        minus = np.cumsum(np.log1p(-np.minimum(lam, self.cap_minus) * gap), axis=-2) + self.log_minus[..., None, :]
        max_plus = np.maximum(np.maximum.accumulate(plus, axis=-2), self.max_plus[..., None, :])
        max_minus = np.maximum(np.maximum.accumulate(minus, axis=-2), self.max_minus[..., None, :])
        self.log_plus, self.log_minus = plus[..., -1, :], minus[..., -1, :]
        self.max_plus, self.max_minus = max_plus[..., -1, :], max_minus[..., -1, :]
        return max_plus, max_minus


def _feed_at_looks(capital: _Capital, x: np.ndarray, looks: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Feed ``x`` in memory-bounded chunks and keep the running maxima at the given item counts: lead + (L, G)."""
    n = x.shape[-1]
    rows = max(1, _CHUNK_ELEMENTS // max(width, 1))
    kept_plus, kept_minus = [], []
    for start in range(0, n, rows):
        stop = min(n, start + rows)
        max_plus, max_minus = capital.feed(x[..., start:stop])
        inside = looks[(looks > start) & (looks <= stop)] - start - 1
        kept_plus.append(max_plus[..., inside, :])
        kept_minus.append(max_minus[..., inside, :])
    return np.concatenate(kept_plus, axis=-2), np.concatenate(kept_minus, axis=-2)


def _thresholds(beta: Any) -> tuple[np.ndarray, np.ndarray]:
    """log(1/(HEDGE beta)) and log(1/((1 - HEDGE) beta)): the log capital each side must reach to reject."""
    beta = np.asarray(beta, dtype=float)
    return -np.log(HEDGE * beta), -np.log((1.0 - HEDGE) * beta)


def _pvalue(max_plus: np.ndarray, max_minus: np.ndarray) -> np.ndarray:
    """``min(1, 1 / max(HEDGE K+, (1 - HEDGE) K-))`` from the running maxima of the log capitals."""
    best = np.maximum(max_plus + math.log(HEDGE), max_minus + math.log(1.0 - HEDGE))
    return np.minimum(1.0, np.exp(-best))


def _grid_bounds(
    max_plus: np.ndarray, max_minus: np.ndarray, grid: np.ndarray, beta: Any
) -> tuple[np.ndarray, np.ndarray]:
    """Ends (on the [0, 1] scale) of the level-``beta`` confidence set, rounded outward to the grid.

    ``K+`` falls with ``m``, so the means it rejects are the grid points up to
    some index: the lower end is the largest rejected point (the true end
    lies between it and the next point).  Likewise ``K-`` rejects the points
    from some index up.  ``beta`` broadcasts against the leading axes.
    """
    above, below = _thresholds(beta)
    rejected_low = np.sum(max_plus >= np.asarray(above)[..., None], axis=-1)
    rejected_high = np.sum(max_minus >= np.asarray(below)[..., None], axis=-1)
    g = grid.size
    low = np.where(rejected_low > 0, grid[np.clip(rejected_low - 1, 0, g - 1)], 0.0)
    high = np.where(rejected_high > 0, grid[np.clip(g - rejected_high, 0, g - 1)], 1.0)
    return low, high


# ----------------------------------------------------------------- items only ("for these sets")


@dataclass(frozen=True)
class ConfidenceSequence:
    """Running estimate and anytime-valid bounds of a mean paired difference after each look.

    ``items[j]`` items had been seen at look j; ``low[j] <= mean <= high[j]``
    holds for every j at once with probability >= 1 - ``alpha``.  An end
    inside the range is itself excluded (it is the last rejected candidate
    of the grid), so a value ``v`` inside the range is excluded at look j
    when ``low[j] >= v`` or ``high[j] <= v`` (:meth:`excludes`).  ``scope``
    says what the mean is over: ``"these sets"`` (the evaluated conditions) or
    ``"sources"`` (set draws treated as random).
    """

    items: np.ndarray
    estimate: np.ndarray
    low: np.ndarray
    high: np.ndarray
    alpha: float
    scope: str

    def excludes(self, value: float = 0.0) -> np.ndarray:
        """At each look, whether the sequence rules ``value`` out (a value strictly inside the range)."""
        return (self.low >= value) | (self.high <= value)


def confidence_sequence(
    diffs: Any,
    alpha: float = ALPHA,
    *,
    lower: float = -1.0,
    upper: float = 1.0,
    looks: Any = None,
    horizon: int | None = None,
    grid: int = GRID,
    clip: bool = False,
) -> ConfidenceSequence:
    """Anytime-valid (1 - alpha) bounds of the mean paired difference *for these sets*, after each look.

    ``diffs`` holds one paired difference per item, in the order the items
    were scored, each within ``[lower, upper]`` (0/1 accuracy items: the
    default [-1, 1]; see the module docstring for perplexity windows and
    ``clip``).  When the differences are averaged over several calibration
    sets per source, the bounds are about the mean over *these sets*: they
    ignore set-to-set variance (:func:`set_confidence_sequence` does not).

    ``looks`` are the item counts to report at (default: every item); the
    guarantee holds over all of them at once, and over any data-dependent
    stopping time.  ``horizon`` tunes the stakes to be tightest near that
    many items (default: tight over all counts, ``t log(1 + t)``).  The
    bounds are rounded outward to a grid of ``grid`` candidate means over
    ``[lower, upper]``.
    """
    alpha = _check_alpha(alpha)
    lower, upper = _check_bounds(lower, upper)
    horizon = _check_horizon(horizon)
    g = _check_int(grid, "grid", 3)
    x = _scaled(diffs, lower, upper, clip)
    if x.ndim != 1:
        raise ParameterError("diffs", f"must be one sequence of per-item differences, not an array of shape {x.shape}")
    counts = _looks(looks, x.size)
    points = np.linspace(0.0, 1.0, g)
    capital = _Capital(points, (), alpha, horizon)
    max_plus, max_minus = _feed_at_looks(capital, x, counts, g)
    low, high = _grid_bounds(max_plus, max_minus, points, alpha)
    estimate = (np.cumsum(x)[counts - 1] / counts) * (upper - lower) + lower
    span = upper - lower
    return ConfidenceSequence(counts, estimate, lower + span * low, lower + span * high, alpha, THESE_SETS)


def anytime_pvalue(
    diffs: Any,
    alpha: float = ALPHA,
    *,
    null: float = 0.0,
    lower: float = -1.0,
    upper: float = 1.0,
    horizon: int | None = None,
    clip: bool = False,
) -> np.ndarray:
    """Anytime-valid p-value of "mean difference = ``null``" *for these sets*, after every item.

    ``p_t = min(1, 1 / max_{s<=t} max(K+_s/2, K-_s/2))`` with the capitals
    at ``m = null``: it never rises, and ``P(p_t <= a for some t) <= a`` for
    every ``a`` when the mean is ``null``.  ``alpha`` only tunes the stakes
    (the same stakes as :func:`confidence_sequence` at that level, so the
    sequence excludes ``null`` exactly when ``p_t <= alpha``).  The items are
    the last axis of ``diffs``; leading axes (replications, comparisons) are
    computed at once.
    """
    alpha = _check_alpha(alpha)
    lower, upper = _check_bounds(lower, upper)
    horizon = _check_horizon(horizon)
    m = _scaled_null(null, lower, upper)
    x = _scaled(diffs, lower, upper, clip)
    capital = _Capital(np.array([m]), x.shape[:-1], alpha, horizon)
    max_plus, max_minus = _feed_at_looks(capital, x, np.arange(1, x.shape[-1] + 1), 1)
    return _pvalue(max_plus[..., 0], max_minus[..., 0])


def holm_sequential(pvalues: Any, *, axis: int = -1) -> np.ndarray:
    """Holm-adjusted p-values across a family of comparisons at every look (NaN: not in the family).

    The comparisons lie along ``axis``; every other axis (looks,
    replications) is adjusted separately, with the rule of
    :func:`calibench.core.stats.holm`: the i-th smallest of m p-values (0-based)
    times ``m - i``, made monotone by a running maximum, capped at 1.
    Rejecting where the adjusted anytime-valid p-value <= alpha at any look
    keeps the family-wise error <= alpha (see the module docstring).
    """
    p = np.moveaxis(np.asarray(pvalues, dtype=float), axis, -1)
    if p.shape[-1] == 0:
        raise CalibenchError("Holm needs at least one comparison")
    valid = ~np.isnan(p)
    m = valid.sum(axis=-1, keepdims=True)
    order = np.argsort(np.where(valid, p, np.inf), axis=-1, kind="stable")
    ranked = np.take_along_axis(p, order, axis=-1)
    multiplied = ranked * (m - np.arange(p.shape[-1]))
    multiplied = np.where(np.isnan(multiplied), -np.inf, multiplied)  # NaNs sort last and must not lift the max
    adjusted_sorted = np.minimum(1.0, np.maximum.accumulate(multiplied, axis=-1))
    adjusted = np.empty_like(p)
    np.put_along_axis(adjusted, order, adjusted_sorted, axis=-1)
    adjusted = np.where(valid, adjusted, np.nan)
    return np.moveaxis(adjusted, -1, axis)


# ----------------------------------------------------------------- sets as a random effect


def _t_quantile(level: Any, df: int) -> np.ndarray:
    from scipy.stats import t as student_t  # lazy: scipy is heavy and only this needs it

    return np.asarray(student_t.ppf(level, df), dtype=float)


def _set_interval(low: np.ndarray, high: np.ndarray, beta_sets: Any) -> tuple[np.ndarray, np.ndarray]:
    """Set-level (1 - beta_sets) t-interval for the sources' difference, widened over the per-pair boxes.

    ``low``/``high`` (shape ``lead + (k,)``) bound each set pair's mean
    difference.  The t-interval ``mean -/+ t s / sqrt(k)`` of the k pair
    means is evaluated for every pair means inside the boxes: ``mean - t s /
    sqrt(k)`` is concave in them (a linear function minus a norm), so its
    minimum over the box is at one of the 2**k corners, and likewise the
    maximum of the convex upper end.  Beyond :data:`MAX_VERTEX_SETS` pairs a
    looser bound avoids the corners: the box's extreme means with the largest
    spread any point of the box can have.
    """
    k = low.shape[-1]
    factor = _t_quantile(1.0 - np.asarray(beta_sets, dtype=float) / 2.0, k - 1) / math.sqrt(k)
    if k <= MAX_VERTEX_SETS:
        corners = (np.arange(2**k)[:, None] >> np.arange(k)[None, :] & 1).astype(bool)  # 2**k x k
        values = np.where(corners, high[..., None, :], low[..., None, :])  # lead + (2**k, k)
        mean = values.mean(axis=-1)
        spread = values.std(axis=-1, ddof=1) * np.asarray(factor)[..., None]
        return (mean - spread).min(axis=-1), (mean + spread).max(axis=-1)
    centre = (low + high).mean(axis=-1, keepdims=True) / 2.0
    widest = np.sqrt(np.sum(np.maximum((low - centre) ** 2, (high - centre) ** 2), axis=-1) / (k - 1))
    return low.mean(axis=-1) - factor * widest, high.mean(axis=-1) + factor * widest


def _set_bounds(
    max_plus: np.ndarray,
    max_minus: np.ndarray,
    points: np.ndarray,
    beta: Any,
    share: float,
    lower: float,
    upper: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Set-aware bounds at level ``beta`` from the per-pair running maxima (``lead + (k, G)``)."""
    k = max_plus.shape[-2]
    beta = np.asarray(beta, dtype=float)
    beta_pairs = (share * beta / k)[..., None]  # Bonferroni over the k per-pair sequences
    low, high = _grid_bounds(max_plus, max_minus, points, beta_pairs)
    span = upper - lower
    return _set_interval(lower + span * low, lower + span * high, (1.0 - share) * beta)


def _set_pvalue(
    max_plus: np.ndarray,
    max_minus: np.ndarray,
    points: np.ndarray,
    null: float,
    share: float,
    lower: float,
    upper: float,
) -> np.ndarray:
    """The smallest level at which the set-aware bounds exclude ``null``, by bisection (rounded up).

    The bounds are nested in the level (a larger level rejects more grid
    points per pair and uses a smaller t quantile), so exclusion is monotone
    and the smallest such level is well defined; it is an anytime-valid
    p-value because the bounds are a confidence sequence at every level.
    """
    lead = max_plus.shape[:-2]

    def excluded(beta: np.ndarray) -> np.ndarray:
        low, high = _set_bounds(max_plus, max_minus, points, beta, share, lower, upper)
        return (low >= null) | (high <= null)

    log_lo = np.full(lead, math.log(P_FLOOR))
    log_hi = np.zeros(lead)
    at_one = excluded(np.ones(lead))
    at_floor = excluded(np.full(lead, P_FLOOR))
    for _ in range(40):
        mid = (log_lo + log_hi) / 2.0
        hit = excluded(np.exp(mid))
        log_hi = np.where(hit, mid, log_hi)
        log_lo = np.where(hit, log_lo, mid)
    return np.where(~at_one, 1.0, np.where(at_floor, P_FLOOR, np.exp(log_hi)))


def _check_pairs(x: np.ndarray) -> int:
    if x.ndim < 2 or x.shape[-2] < 2:
        raise ParameterError(
            "diffs",
            "must hold one row of item differences per pair of set draws (set i of A minus set i of B) with at "
            f"least 2 pairs: set-to-set variance needs 2 or more sets per source, got shape {x.shape}",
        )
    return int(x.shape[-2])


def _check_share(share: Any) -> float:
    return _check_alpha(share, "set_share")


def set_confidence_sequence(
    diffs: Any,
    alpha: float = ALPHA,
    *,
    lower: float = -1.0,
    upper: float = 1.0,
    looks: Any = None,
    horizon: int | None = None,
    grid: int = GRID,
    clip: bool = False,
    set_share: float = SET_SHARE,
) -> ConfidenceSequence:
    """Anytime-valid (1 - alpha) bounds of the difference between two *sources*, sets being a random effect.

    ``diffs`` is a k x n array: row i holds the per-item differences between
    set draw i of source A and set draw i of source B (k >= 2 independent
    draws per source, all scored on the same n items, in order).  The target
    is ``delta = E[Delta_i]``, the mean over set draws of each pair's
    population mean difference ``Delta_i``.

    Two levels, with the level split by a union bound:

    1. Items: for each pair a betting confidence sequence for ``Delta_i``
       at level ``set_share * alpha / k`` (Bonferroni over the pairs, so no
       assumption on how the pairs' item scores are correlated: they share
       items).  With probability >= 1 - set_share * alpha every ``Delta_i``
       lies in its box at every look.
    2. Sets: the pairs ``(A_i, B_i)`` are independent draws, so the
       ``Delta_i`` are i.i.d. with mean ``delta``; assuming they are normal
       (the usual random-effect model of set-to-set variation), the Student-t
       interval of the k values covers ``delta`` with probability >= 1 -
       (1 - set_share) alpha.  The ``Delta_i`` are unknown, so the interval is
       widened to every value they can take inside their boxes.

    On the intersection of the two events (probability >= 1 - alpha) the
    bounds cover ``delta`` at every look at once.  This is valid where the
    simpler "t-interval of the pair means so far" is not: every set is scored
    on the same items, so the item sampling error moves all pairs together
    and never shows up as spread between them (see
    :func:`calibench.core.stats.hierarchical_bootstrap_ci`).  With few sets
    the t quantile is large (k = 3: 2 degrees of freedom), which is the honest
    price of learning about sources from three draws each; more items only
    shrink the boxes, never the set-to-set spread.
    """
    alpha = _check_alpha(alpha)
    share = _check_share(set_share)
    lower, upper = _check_bounds(lower, upper)
    horizon = _check_horizon(horizon)
    g = _check_int(grid, "grid", 3)
    x = _scaled(diffs, lower, upper, clip, min_dims=2)
    k = _check_pairs(x)
    if x.ndim != 2:
        raise ParameterError("diffs", f"must be a k x n array of per-pair item differences, not shape {x.shape}")
    counts = _looks(looks, x.shape[-1])
    points = np.linspace(0.0, 1.0, g)
    capital = _Capital(points, (k,), alpha, horizon)
    max_plus, max_minus = _feed_at_looks(capital, x, counts, g * k)  # k x L x G
    max_plus, max_minus = np.swapaxes(max_plus, 0, 1), np.swapaxes(max_minus, 0, 1)  # L x k x G
    low, high = _set_bounds(max_plus, max_minus, points, np.full(counts.size, alpha), share, lower, upper)
    estimate = (np.cumsum(x, axis=-1)[:, counts - 1] / counts).mean(axis=0) * (upper - lower) + lower
    return ConfidenceSequence(counts, estimate, low, high, alpha, SOURCES)


def set_anytime_pvalue(
    diffs: Any,
    alpha: float = ALPHA,
    *,
    null: float = 0.0,
    lower: float = -1.0,
    upper: float = 1.0,
    looks: Any = None,
    horizon: int | None = None,
    grid: int = GRID,
    clip: bool = False,
    set_share: float = SET_SHARE,
) -> np.ndarray:
    """Anytime-valid p-value of "sources' difference = ``null``" (sets random), at each look.

    The smallest level at which :func:`set_confidence_sequence` excludes
    ``null`` (stakes tuned at ``alpha``), found by bisection and rounded up,
    floored at :data:`P_FLOOR`.  ``diffs`` has shape ``(..., k, n)``: leading
    axes (replications) are computed at once; the result has shape
    ``(..., L)`` for the L looks (default: every item).
    """
    alpha = _check_alpha(alpha)
    share = _check_share(set_share)
    lower, upper = _check_bounds(lower, upper)
    horizon = _check_horizon(horizon)
    g = _check_int(grid, "grid", 3)
    _scaled_null(null, lower, upper)
    x = _scaled(diffs, lower, upper, clip, min_dims=2)
    _check_pairs(x)
    counts = _looks(looks, x.shape[-1])
    points = np.linspace(0.0, 1.0, g)
    capital = _Capital(points, x.shape[:-1], alpha, horizon)
    width = g * int(np.prod(x.shape[:-1]))
    max_plus, max_minus = _feed_at_looks(capital, x, counts, width)  # ... x k x L x G
    max_plus, max_minus = np.swapaxes(max_plus, -3, -2), np.swapaxes(max_minus, -3, -2)  # ... x L x k x G
    return _set_pvalue(max_plus, max_minus, points, float(null), share, lower, upper)


# ----------------------------------------------------------------- adaptive evaluation


@dataclass(frozen=True)
class Status:
    """Where one sequential comparison stands after a look.

    ``state`` is ``"decided"`` (the Holm-adjusted anytime p-value is <= alpha:
    the difference is not ``null``), ``"futile"`` (stopped: it cannot be
    decided within the cap, see :meth:`SequentialComparison.status`) or
    ``"running"``.  ``low``/``high`` are the comparison's own (1 - alpha)
    confidence sequence; ``p`` its anytime p-value and ``p_adjusted`` that
    after Holm across the family.  ``scope`` is ``"these sets"`` (items only)
    or ``"sources"`` (set draws random).
    """

    name: str
    state: str
    items: int
    estimate: float
    low: float
    high: float
    p: float
    p_adjusted: float
    reason: str
    scope: str

    @property
    def stopped(self) -> bool:
        return self.state != RUNNING


class SequentialComparison:
    """One paired comparison evaluated adaptively: fed blocks of differences, asked for its status after each.

    Items only (``sets=None``): each block is a vector of per-item
    differences (condition A minus B, or averaged over the sets of each
    source): the decision is about the mean *for these sets*.  Set-aware
    (``sets=k``): each block is a k x b array, row i the differences between
    set draw i of source A and set draw i of source B on the block's items;
    the decision is about the sources (:func:`set_confidence_sequence`).

    The stakes are tuned to the cap (``tune_to_cap``; the guarantee holds
    for any tuning, this one just spends the evidence where the evaluation
    ends at the latest).  Feed every comparison of a family the same block,
    then call :func:`family_status` (or :meth:`status` for a family of one).
    Once a status is decided or futile the comparison is stopped: feeding it
    again is an error.
    """

    def __init__(
        self,
        name: str = "",
        *,
        alpha: float = ALPHA,
        lower: float = -1.0,
        upper: float = 1.0,
        null: float = 0.0,
        cap: int = CAP,
        block: int = BLOCK,
        sets: int | None = None,
        futility_after: int = FUTILITY_AFTER,
        futility_margin: float = FUTILITY_MARGIN,
        tune_to_cap: bool = True,
        grid: int = GRID,
        clip: bool = False,
        set_share: float = SET_SHARE,
    ):
        self.name = name
        self.alpha = _check_alpha(alpha)
        self.lower, self.upper = _check_bounds(lower, upper)
        self.null = float(null)
        self._m = _scaled_null(null, self.lower, self.upper)
        self.block = _check_int(block, "block", 1)
        self.cap = _check_int(cap, "cap", 1)
        if self.cap < self.block:
            raise ParameterError("cap", f"({self.cap} items) is below the first block of {self.block} items: raise it")
        self.sets = None if sets is None else _check_int(sets, "sets", 2)
        self.futility_after = _check_int(futility_after, "futility_after", 0)
        if isinstance(futility_margin, bool) or not (
            isinstance(futility_margin, (int, float)) and 0 <= futility_margin < math.inf
        ):
            raise ParameterError(
                "futility_margin", f"must be a number of standard errors >= 0, not {futility_margin!r}"
            )
        self.futility_margin = float(futility_margin)
        self.set_share = _check_share(set_share)
        self.clip = bool(clip)
        self._points = np.linspace(0.0, 1.0, _check_int(grid, "grid", 3))
        self._horizon = self.cap if tune_to_cap else None
        lead = () if self.sets is None else (self.sets,)
        self._capital = _Capital(self._points, lead, self.alpha, self._horizon)
        self._at_null = _Capital(np.array([self._m]), lead, self.alpha, self._horizon)
        self._sum = np.zeros(lead)
        self._square_gap = 0.0  # sum of (x - null)^2 on the [0, 1] scale (items only)
        self.items = 0
        self._stopped: Status | None = None

    @property
    def scope(self) -> str:
        return THESE_SETS if self.sets is None else SOURCES

    @property
    def stopped(self) -> bool:
        """Whether a status has decided or given up on this comparison (it takes no more items)."""
        return self._stopped is not None

    def feed(self, block: Any) -> None:
        """Add the paired differences of the next items (a vector, or k x b with ``sets=k``)."""
        if self._stopped is not None:
            raise CalibenchError(
                f"comparison {self.name!r} already stopped ({self._stopped.state}: {self._stopped.reason}); "
                "feed only running comparisons"
            )
        x = _scaled(block, self.lower, self.upper, self.clip)
        expected = "a vector of per-item differences" if self.sets is None else f"a {self.sets} x b array"
        if (self.sets is None and x.ndim != 1) or (self.sets is not None and (x.ndim != 2 or x.shape[0] != self.sets)):
            raise ParameterError("block", f"must be {expected}, not an array of shape {x.shape}")
        b = x.shape[-1]
        if self.items + b > self.cap:
            raise ParameterError(
                "block", f"of {b} items would take {self.name!r} past its cap of {self.cap} ({self.items} used)"
            )
        self._capital.feed(x)
        self._at_null.feed(x)
        self._sum = self._sum + x.sum(axis=-1)
        self._square_gap += float(np.sum((x - self._m) ** 2))
        self.items += b

    def _original(self, scaled: Any) -> Any:
        return self.lower + (self.upper - self.lower) * scaled

    @property
    def estimate(self) -> float:
        if self.items == 0:
            return math.nan
        return float(self._original(np.mean(self._sum) / self.items))

    @property
    def p(self) -> float:
        """The anytime-valid p-value of "difference = null" so far (1 before any item)."""
        if self.items == 0:
            return 1.0
        if self.sets is None:
            return float(_pvalue(self._at_null.max_plus[0], self._at_null.max_minus[0]))
        cap = self._capital
        return float(
            _set_pvalue(cap.max_plus, cap.max_minus, self._points, self.null, self.set_share, self.lower, self.upper)
        )

    def interval(self) -> tuple[float, float]:
        """The comparison's own (1 - alpha) confidence sequence now."""
        if self.items == 0:
            return self.lower, self.upper
        cap = self._capital
        if self.sets is None:
            low, high = _grid_bounds(cap.max_plus, cap.max_minus, self._points, self.alpha)
            return float(self._original(low)), float(self._original(high))
        low, high = _set_bounds(
            cap.max_plus, cap.max_minus, self._points, self.alpha, self.set_share, self.lower, self.upper
        )
        return float(low), float(high)

    def projected_log_capital(self) -> float:
        """Items only: the log capital the bet on the estimate's side is projected to reach by the cap.

        The remaining ``cap - items`` items are projected to behave like those
        seen, optimistically: on the [0, 1] scale their difference from
        ``null`` has the spread ``s`` of the differences so far and the mean
        ``g = |mean so far - null| + futility_margin * s / sqrt(items)`` (the
        estimate moved that many standard errors away from ``null``, so a
        true difference seen through an unlucky start is not given up).  The
        stakes keep the current variance estimate, and each item adds the
        second-order expected log growth ``lambda g - lambda^2 (s^2 + g^2) / 2``.
        The projection is the current log capital of the bet on the
        estimate's side plus the largest partial sum of those increments (0
        if none is positive).
        """
        n = self.items
        cap = self._at_null
        gap = float(self._sum) / n - self._m
        spread = math.sqrt(max(0.0, self._square_gap / n - gap**2))
        optimistic = abs(gap) + self.futility_margin * spread / math.sqrt(n)
        second = spread**2 + optimistic**2
        side_cap, current = (cap.cap_plus[0], cap.log_plus[0]) if gap > 0 else (cap.cap_minus[0], cap.log_minus[0])
        t = np.arange(n + 1, self.cap + 1)
        if t.size == 0:
            return float(current)
        horizon = t * np.log1p(t) if self._horizon is None else np.full(t.size, float(self._horizon))
        lam = np.minimum(np.sqrt(cap.scale / (float(cap.variance()) * horizon)), side_cap)
        growth = np.cumsum(lam * optimistic - lam**2 * second / 2.0)
        return float(current + max(0.0, float(growth.max())))

    def _futility(self) -> str | None:
        """Why the comparison cannot be decided within the cap, or None."""
        if self.items >= self.cap:
            return f"cap of {self.cap} items reached without a decision"
        if self.items < self.futility_after:
            return None
        if self.sets is None:
            gap = float(self._sum) / self.items - self._m
            need = float(_thresholds(self.alpha)[0 if gap > 0 else 1])
            projected = self.projected_log_capital()
            if projected < need:
                return (
                    f"projected log capital at the cap {projected:.2f} < {need:.2f} needed at alpha {self.alpha:g} "
                    f"(items so far extrapolated to the cap of {self.cap})"
                )
            return None
        k = self.sets
        means = self._original(self._sum / self.items)
        factor = float(_t_quantile(1.0 - (1.0 - self.set_share) * self.alpha / 2.0, k - 1)) / math.sqrt(k)
        half = factor * float(np.std(means, ddof=1))
        centre = float(np.mean(means))
        if centre - half <= self.null <= centre + half:
            return (
                f"the set-level t-interval of the {k} pairs' means so far, [{centre - half:.4g}, "
                f"{centre + half:.4g}], holds {self.null:g} even with no item noise left"
            )
        return None

    def status(self, p_adjusted: float | None = None) -> Status:
        """The status now; ``p_adjusted`` is this comparison's Holm-adjusted p (default: its own p, a family of one).

        Decided: ``p_adjusted <= alpha``.  Futile, checked only when not
        decided: the cap is reached; or, after ``futility_after`` items, items
        only: :meth:`projected_log_capital` stays below the capital the side
        of the estimate needs at level alpha (the most lenient Holm step, so
        a comparison that could still be decided at some step is kept), set-
        aware: the set-level t-interval of the pairs' current means, with no
        allowance for item noise, contains ``null`` (more items cannot
        narrow the set-to-set spread).  Futility only ever stops a
        comparison, so it cannot raise the false-positive rate.
        """
        if self._stopped is not None:
            return self._stopped
        p = self.p
        adjusted = p if p_adjusted is None else float(p_adjusted)
        low, high = self.interval()

        def make(state: str, reason: str) -> Status:
            return Status(self.name, state, self.items, self.estimate, low, high, p, adjusted, reason, self.scope)

        if self.items and adjusted <= self.alpha:
            reason = f"Holm-adjusted anytime p {adjusted:.3g} <= alpha {self.alpha:g} after {self.items} items"
            self._stopped = make(DECIDED, reason)
            return self._stopped
        futile = self._futility() if self.items else None
        if futile is not None:
            self._stopped = make(FUTILE, futile)
            return self._stopped
        return make(RUNNING, f"{self.items} of {self.cap} items, Holm-adjusted anytime p {adjusted:.3g}")


def family_status(comparisons: Sequence[SequentialComparison]) -> list[Status]:
    """Every comparison's status with Holm applied across the family at this look.

    Stopped comparisons keep their last p-value and stay in the family (so
    the Holm multiplier does not shrink as comparisons are decided).  The
    comparisons must share alpha.
    """
    if not comparisons:
        raise CalibenchError("a family needs at least one comparison")
    alphas = {c.alpha for c in comparisons}
    if len(alphas) != 1:
        raise ParameterError("alpha", f"must be the same for every comparison of a family, not {sorted(alphas)}")
    adjusted = holm_sequential([c._stopped.p if c._stopped is not None else c.p for c in comparisons])
    return [c.status(float(a)) for c, a in zip(comparisons, adjusted, strict=True)]


# ----------------------------------------------------------------- sources at planned looks (sets random)


class LookwiseSourceComparison:
    """Two *sources* compared at planned looks: the set-aware fixed test at each look, Bonferroni over the looks.

    A group-sequential design with the simplest alpha spending: at most
    ``looks`` looks are planned (``ceil(cap / block)``), and the look-j
    p-value of :func:`calibench.core.stats.source_difference` (sets and items
    random, Welch t) is multiplied by ``looks``.  The running minimum of those
    products is a valid p-value at any stopping time: ``P(any look has p_j
    <= alpha / looks) <= sum_j alpha / looks = alpha`` whatever the dependence
    between looks, and it only falls, so Holm across a family stays valid as
    for :func:`holm_sequential`.  Each prefix of items is a random sample when
    the items come in a seeded shuffle (adaptive blocks do), which the fixed
    test assumes.

    Why not the betting sequences of :func:`set_confidence_sequence` for
    sets: with three sets per source they widen every pair's item box to its
    worst corner and then apply a t quantile with 2 degrees of freedom, which
    on the bundled demo grid decided none of the six pairs the fixed test
    decides with 64 windows (benchmarks/bench_adaptive_items.py).  The fixed
    test pools the set and item variances with Welch's degrees of freedom,
    and Bonferroni over a handful of looks costs little.

    Futility (after ``futility_after`` items): the set part of the variance
    alone (no item noise left) gives an interval at level ``alpha / looks``
    that holds ``null``: more items cannot decide it.  The cap reached is
    futile too.  Feed ``a`` (k_A x b) and ``b`` (k_B x b): each source's sets
    on the block's items.
    """

    def __init__(
        self,
        name: str = "",
        *,
        alpha: float = ALPHA,
        cap: int = CAP,
        block: int = BLOCK,
        null: float = 0.0,
        futility_after: int = FUTILITY_AFTER,
    ):
        self.name = name
        self.alpha = _check_alpha(alpha)
        self.block = _check_int(block, "block", 1)
        self.cap = _check_int(cap, "cap", 1)
        if self.cap < self.block:
            raise ParameterError("cap", f"({self.cap} items) is below the first block of {self.block} items: raise it")
        self.looks = math.ceil(self.cap / self.block)
        self.null = float(null)
        self.futility_after = _check_int(futility_after, "futility_after", 0)
        self._a: np.ndarray | None = None
        self._b: np.ndarray | None = None
        self._p = 1.0
        self._low, self._high = -math.inf, math.inf
        self.items = 0
        self._stopped: Status | None = None

    scope = SOURCES

    @property
    def sets(self) -> int:
        return 0 if self._a is None or self._b is None else int(min(len(self._a), len(self._b)))

    @property
    def stopped(self) -> bool:
        return self._stopped is not None

    def feed(self, a: Any, b: Any) -> None:
        from calibench.core.stats import source_difference

        if self._stopped is not None:
            raise CalibenchError(
                f"comparison {self.name!r} already stopped ({self._stopped.state}); feed only running ones"
            )
        a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
        if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or min(len(a), len(b)) < 2:
            raise ParameterError(
                "block", f"must be two sets x items arrays (2+ sets, same items), not {a.shape}, {b.shape}"
            )
        if self.items + a.shape[1] > self.cap:
            raise ParameterError("block", f"would take {self.name!r} past its cap of {self.cap} ({self.items} used)")
        self._a = a if self._a is None else np.concatenate([self._a, a], axis=1)
        self._b = b if self._b is None else np.concatenate([self._b, b], axis=1)
        self.items = self._a.shape[1]
        if self.items < 2:
            return
        from scipy.stats import t as student_t

        test = source_difference(self._a, self._b, level=1.0 - self.alpha / self.looks)
        gap, stderr = abs(float(test.estimate) - self.null), float(test.stderr)
        p = 1.0 if gap == 0 else (0.0 if stderr == 0 else float(2.0 * student_t.sf(gap / stderr, float(test.df))))
        self._p = min(self._p, min(1.0, self.looks * p))
        self._low, self._high = max(self._low, float(test.low)), min(self._high, float(test.high))

    @property
    def estimate(self) -> float:
        if self._a is None or self._b is None:
            return math.nan
        return float(self._a.mean() - self._b.mean())

    @property
    def p(self) -> float:
        return self._p

    def interval(self) -> tuple[float, float]:
        """The running intersection of the looks' (1 - alpha / looks) intervals: simultaneous over the looks."""
        return self._low, self._high

    def _futility(self) -> str | None:
        if self.items >= self.cap:
            return f"cap of {self.cap} items reached without a decision"
        if self.items < max(2, self.futility_after) or self._a is None or self._b is None:
            return None
        from scipy.stats import t as student_t

        means_a, means_b = self._a.mean(axis=1), self._b.mean(axis=1)
        terms = [
            (means_a.var(ddof=1) / len(means_a), len(means_a) - 1),
            (means_b.var(ddof=1) / len(means_b), len(means_b) - 1),
        ]
        variance = sum(v for v, _ in terms)
        if variance <= 0:
            return None
        df = variance**2 / sum(v**2 / d for v, d in terms if v > 0)
        half = float(student_t.ppf(1.0 - self.alpha / self.looks / 2.0, df)) * math.sqrt(variance)
        centre = self.estimate
        if centre - half <= self.null <= centre + half:
            return (
                f"the set-to-set spread alone gives [{centre - half:.4g}, {centre + half:.4g}] at level "
                f"{self.alpha / self.looks:.3g}, which holds {self.null:g}: more items cannot decide it"
            )
        return None

    def status(self, p_adjusted: float | None = None) -> Status:
        if self._stopped is not None:
            return self._stopped
        adjusted = self._p if p_adjusted is None else float(p_adjusted)
        low, high = self.interval()

        def make(state: str, reason: str) -> Status:
            return Status(self.name, state, self.items, self.estimate, low, high, self._p, adjusted, reason, SOURCES)

        if self.items and adjusted <= self.alpha:
            reason = f"Holm-adjusted p {adjusted:.3g} <= alpha {self.alpha:g} after {self.items} items"
            self._stopped = make(DECIDED, f"{reason} (set-aware test x {self.looks} looks)")
            return self._stopped
        futile = self._futility() if self.items else None
        if futile is not None:
            self._stopped = make(FUTILE, futile)
            return self._stopped
        return make(RUNNING, f"{self.items} of {self.cap} items, Holm-adjusted p {adjusted:.3g}")
