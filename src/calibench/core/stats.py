"""Paired statistics for comparing calibration conditions item by item (pure numpy, no I/O).

Why paired: two compressed models scored on the *same* items (lm-eval
documents, perplexity windows) share each item's difficulty.  Most of the
item-to-item variance of a score is that difficulty, and it cancels in the
per-item difference; a test on the differences is therefore far more
sensitive than comparing two means with their separate standard errors.

The unit is an item.  For accuracy tasks an item's score is its 0/1 ``acc``;
for perplexity it is a window's mean token NLL.  Every window predicts the
same number of tokens, so the mean of the window NLLs is the log-perplexity
and the mean per-window NLL difference between two conditions *is* their
difference in log-perplexity (``exp`` of it is the perplexity ratio).  That
is the natural paired quantity for perplexity: perplexities themselves are
not additive over windows, their logarithms are.

Tests: the sign-flip permutation test for any paired scores, and McNemar's
exact test for 0/1 scores (on 0/1 items the two are the same test, see
:func:`compare_paired`, but McNemar's is exact for any number of items where
the sign flip falls back to Monte Carlo beyond :data:`EXACT_MAX_ITEMS`).
Holm-Bonferroni adjusts a family of p-values.

Everything here is deterministic: resampling uses ``numpy.random.default_rng``
with a fixed seed, and large draws are made in chunks that consume the random
stream in the same order as one draw per replicate would.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

import numpy as np

from calibench.core.errors import CalibenchError

SEED = 0
BOOTSTRAPS = 2000
PERMUTATIONS = 10000
EXACT_MAX_ITEMS = 16  # 2**16 sign patterns: exact enumeration is cheaper than a Monte Carlo run
_CHUNK_ELEMENTS = 2_000_000  # bounds the memory of one vectorised draw


@dataclass(frozen=True)
class Interval:
    estimate: float
    low: float
    high: float
    stderr: float = math.nan  # std of the bootstrap replicates, where a bootstrap made the interval


def _vector(values: Any, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=float).ravel()
    if array.size == 0:
        raise CalibenchError(f"{name} is empty: a paired statistic needs at least one item")
    if not np.all(np.isfinite(array)):
        raise CalibenchError(f"{name} holds non-finite values: drop or fix those items first")
    return array


def _differences(a: Any, b: Any | None) -> np.ndarray:
    a = _vector(a, "condition A")
    if b is None:
        return a
    b = _vector(b, "condition B")
    if a.shape != b.shape:
        raise CalibenchError(f"paired conditions need the same items: {a.size} scores against {b.size}")
    return a - b


def _chunks(total: int, width: int) -> list[int]:
    rows = max(1, _CHUNK_ELEMENTS // max(width, 1))
    return [min(rows, total - start) for start in range(0, total, rows)]


def paired_bootstrap_ci(
    a: Any, b: Any | None = None, *, level: float = 0.95, n_boot: int = BOOTSTRAPS, seed: int = SEED
) -> Interval:
    """Percentile bootstrap CI of ``mean(a - b)`` over items (``b=None``: ``a`` already holds the differences).

    Items, not conditions, are resampled: each replicate draws ``n`` items
    with replacement and takes both conditions' scores of those same items,
    so the pairing (and with it the shared item difficulty) is kept.  The
    interval is the ``(1-level)/2`` and ``(1+level)/2`` percentiles of the
    replicate means.  Identical conditions give a zero interval; a constant
    shift ``c`` gives ``[c, c]``.
    """
    d = _differences(a, b)
    n = d.size
    rng = np.random.default_rng(seed)
    means = np.concatenate([d[rng.integers(0, n, size=(rows, n))].mean(axis=1) for rows in _chunks(n_boot, n)])
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(means, [alpha, 1.0 - alpha])
    stderr = float(means.std(ddof=1)) if means.size > 1 else 0.0
    return Interval(float(d.mean()), float(low), float(high), stderr)


def sign_flip_pvalue(
    a: Any, b: Any | None = None, *, n_perm: int = PERMUTATIONS, seed: int = SEED, exact_max: int = EXACT_MAX_ITEMS
) -> float:
    """Two-sided paired permutation p-value for ``mean(a - b) = 0`` by flipping the sign of differences.

    Under the null of exchangeable conditions each item's two scores could
    have come the other way round, i.e. each difference is equally likely
    with either sign.  The statistic is ``|mean(d)|``; the p-value is the
    share of sign patterns whose statistic is at least the observed one.
    With at most ``exact_max`` items every one of the ``2**n`` patterns is
    enumerated (exact; the smallest possible p is ``2 / 2**n``).  Beyond
    that ``n_perm`` random patterns are drawn and ``(1 + hits) / (1 + n_perm)``
    is returned: counting the observed pattern keeps the test valid (never
    p = 0) and makes the smallest p ``1 / (1 + n_perm)``.
    """
    d = _differences(a, b)
    n = d.size
    observed = abs(d.mean())
    tolerance = 1e-10 * (np.abs(d).mean() + 1e-300)  # float-order ties count as ties
    if n <= exact_max:
        patterns = np.arange(2**n)[:, None] >> np.arange(n)[None, :] & 1
        stats = np.abs((1 - 2 * patterns) @ d) / n
        return float(np.mean(stats >= observed - tolerance))
    rng = np.random.default_rng(seed)
    hits = 0
    for rows in _chunks(n_perm, n):
        signs = rng.integers(0, 2, size=(rows, n)) * 2 - 1
        hits += int(np.sum(np.abs(signs @ d) / n >= observed - tolerance))
    return float((1 + hits) / (1 + n_perm))


def mcnemar_exact(a_only: int, b_only: int, *, mid_p: bool = False) -> float:
    """Two-sided exact McNemar p-value from the discordant counts of two conditions on 0/1 items.

    Items both conditions got right (or both wrong) say nothing about which
    is better; only the ``m = a_only + b_only`` discordant items do.  Under
    the null each of them favours either condition with probability 1/2, so
    ``a_only ~ Binomial(m, 1/2)`` and the p-value is ``2 P(X <= min(a_only,
    b_only))``, capped at 1 (the binomial is symmetric, so doubling the
    smaller tail equals summing every outcome no likelier than the observed
    one).  ``mid_p`` counts the observed outcome by half: the doubled tail
    minus its probability, ``2 P(X < k) + P(X = k)`` (Fagerland, Lydersen and
    Laake 2013), less conservative and no longer exact-level.
    The binomial sums are integers (``math.comb`` recurrence), so the value
    is exact up to the final division.  No discordant item: p = 1.
    """
    counts = (a_only, b_only)
    if any(isinstance(c, bool) or not isinstance(c, (int, np.integer)) or c < 0 for c in counts):
        raise CalibenchError(f"McNemar's test takes two non-negative whole counts, not {a_only!r} and {b_only!r}")
    m, k = int(a_only) + int(b_only), min(int(a_only), int(b_only))
    if m == 0:
        return 1.0
    term, tail = 1, 1  # C(m, 0), running sum of C(m, i) for i <= k
    for i in range(k):
        term = term * (m - i) // (i + 1)
        tail += term
    numerator = 2 * tail - term if mid_p else 2 * tail
    return min(1.0, numerator / 2**m)


def is_binary(values: Any) -> bool:
    """Whether every score is 0 or 1 (an item's accuracy, not an average over sets)."""
    array = np.asarray(values, dtype=float).ravel()
    return array.size > 0 and bool(np.all((array == 0.0) | (array == 1.0)))


def discordant_counts(a: Any, b: Any) -> tuple[int, int]:
    """``(items only A got right, items only B got right)`` of two 0/1 score vectors over the same items."""
    d = _differences(a, b)
    if not (is_binary(a) and is_binary(b)):
        raise CalibenchError("McNemar's test needs 0/1 scores per item: average scores belong to the sign-flip test")
    return int(np.sum(d > 0)), int(np.sum(d < 0))


def mcnemar_pvalue(a: Any, b: Any, *, mid_p: bool = False) -> float:
    """Exact McNemar p-value of two 0/1 score vectors over the same items (see :func:`mcnemar_exact`)."""
    return mcnemar_exact(*discordant_counts(a, b), mid_p=mid_p)


MCNEMAR = "McNemar exact"
SIGN_FLIP_EXACT = "sign-flip exact"
SIGN_FLIP_DRAWN = f"sign-flip ({PERMUTATIONS} draws)"


@dataclass(frozen=True)
class Comparison:
    """One paired comparison of condition A against B: mean difference, its CI, a p-value and the test used."""

    estimate: float
    low: float
    high: float
    p: float
    test: str
    a_only: int | None = None  # discordant items, for 0/1 scores
    b_only: int | None = None


def compare_paired(a: Any, b: Any) -> Comparison:
    """``mean(a - b)`` with a paired bootstrap CI and the fitting test.

    0/1 scores on both sides (accuracy of single cells) get McNemar's exact
    test; anything else (perplexity windows, accuracies averaged over a
    source's sets) the sign-flip test.  On 0/1 items the sign-flip test *is*
    McNemar's: concordant items have difference 0 and do not move the
    statistic, each discordant one is +-1 with a fair sign, so the share of
    sign patterns at least as extreme is the two-sided binomial tail; the
    exact test just avoids the Monte Carlo beyond 16 items.
    """
    d = _differences(a, b)
    ci = paired_bootstrap_ci(d)
    if is_binary(a) and is_binary(b):
        a_only, b_only = discordant_counts(a, b)
        return Comparison(ci.estimate, ci.low, ci.high, mcnemar_exact(a_only, b_only), MCNEMAR, a_only, b_only)
    test = SIGN_FLIP_EXACT if d.size <= EXACT_MAX_ITEMS else SIGN_FLIP_DRAWN
    return Comparison(ci.estimate, ci.low, ci.high, sign_flip_pvalue(d), test)


def holm(pvalues: Sequence[float]) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values (same order as given; NaNs stay NaN and are not counted).

    Sort the m p-values ascending; the i-th smallest (0-based) is multiplied
    by ``m - i``, a running maximum keeps the adjusted values monotone, and
    they are capped at 1.  Rejecting where the adjusted p < alpha controls the
    family-wise error rate at alpha for any dependence between the tests,
    and is uniformly more powerful than plain Bonferroni.
    """
    p = np.asarray(pvalues, dtype=float)
    out = np.full(p.shape, np.nan)
    valid = np.flatnonzero(~np.isnan(p))
    m = valid.size
    if m == 0:
        return out
    order = valid[np.argsort(p[valid], kind="stable")]
    adjusted = np.minimum(1.0, np.maximum.accumulate(p[order] * (m - np.arange(m))))
    out[order] = adjusted
    return out


def hierarchical_bootstrap_ci(
    scores: Any, *, shared_items: bool = True, level: float = 0.95, n_boot: int = BOOTSTRAPS, seed: int = SEED
) -> Interval:
    """CI of a source's mean score across its sets and items: a two-stage (sets, then items) bootstrap.

    ``scores`` holds one row of item scores per calibration set.  Each
    replicate (1) draws k sets with replacement from the k sets, then (2)
    draws items with replacement, and averages.  The interval is the
    percentile interval of those replicate means.

    Why not the std across sets: a source's mean is uncertain for two
    reasons, which sets happened to be drawn and which items happened to be
    in the benchmark.  ``std / sqrt(k)`` across set means sees only the first
    and *understates*: every set is scored on the same finite items, so the
    item sampling error moves all sets together and never shows up as spread
    between them (and with k = 3 sets the std is itself very noisy).  The
    plain std (the report's "std across sets") answers another question, the
    spread of one draw, and *overstates* the uncertainty of the mean of k
    sets by a factor of sqrt(k).  Resampling both levels counts both sources
    of variance.

    ``shared_items=True`` (a study: every set of a source is scored on the
    same items) draws one item resample per replicate and applies it to every
    drawn set, so the items stay crossed with the sets (Owen's "pigeonhole"
    bootstrap for crossed designs; slightly conservative).  ``scores`` must
    then be a k x n array.  ``shared_items=False`` draws items independently
    within each drawn set (the nested two-stage bootstrap), for sets scored
    on different items; rows may then differ in length.
    """
    if isinstance(scores, np.ndarray) and scores.ndim == 1:
        scores = [scores]  # a single set
    rows = [_vector(r, "a set's item scores") for r in scores]
    k = len(rows)
    if k == 0:
        raise CalibenchError("a hierarchical CI needs at least one set")
    estimate = float(np.mean([r.mean() for r in rows]))
    rng = np.random.default_rng(seed)
    means: list[np.ndarray] = []
    if shared_items:
        if len({r.size for r in rows}) != 1:
            raise CalibenchError("shared_items needs every set scored on the same items: the rows differ in length")
        matrix = np.stack(rows)  # k x n
        n = matrix.shape[1]
        for chunk in _chunks(n_boot, n * k):
            sets = rng.integers(0, k, size=(chunk, k))
            items = rng.integers(0, n, size=(chunk, n))
            flat = (np.arange(chunk)[:, None] * n + items).ravel()
            weights = np.bincount(flat, minlength=chunk * n).reshape(chunk, n) / n  # item counts per replicate
            per_set = weights @ matrix.T  # chunk x k: every set's mean over the replicate's items
            means.append(np.take_along_axis(per_set, sets, axis=1).mean(axis=1))
    else:
        sets = rng.integers(0, k, size=(n_boot, k))
        total = np.zeros(n_boot)
        for slot in range(k):
            for s in range(k):
                chosen = np.flatnonzero(sets[:, slot] == s)
                if chosen.size:
                    n = rows[s].size
                    total[chosen] += rows[s][rng.integers(0, n, size=(chosen.size, n))].mean(axis=1)
        means.append(total / k)
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(np.concatenate(means), [alpha, 1.0 - alpha])
    return Interval(estimate, float(low), float(high))


def _z(alpha: float, power: float) -> float:
    return NormalDist().inv_cdf(1.0 - alpha / 2.0) + NormalDist().inv_cdf(power)


def items_needed(difference: float, paired_std: float, *, alpha: float = 0.05, power: float = 0.8) -> int | float:
    """Items a paired test would need to resolve ``difference``: ``ceil(((z_.975 + z_.8) * s / d)^2)``.

    The normal approximation for a two-sided level-``alpha`` test of the
    mean paired difference with power ``power``, where ``s`` is the std of
    the per-item differences.  It reads: "were this observed difference the
    true one, this many items would detect it 80 % of the time".  ``inf``
    when the difference is zero.
    """
    if not math.isfinite(difference) or not math.isfinite(paired_std):
        return math.nan
    if difference == 0:
        return math.inf
    return max(1, math.ceil((_z(alpha, power) * paired_std / difference) ** 2))


def sets_needed(
    difference: float, set_std_a: float, set_std_b: float, *, alpha: float = 0.05, power: float = 0.8
) -> int | float:
    """Sets per source needed to resolve ``difference`` from the set-to-set variance alone.

    Sets of two sources are independent draws, not pairs, so this is the
    two-sample normal approximation ``ceil((z_.975 + z_.8)^2 (s_A^2 + s_B^2) / d^2)``
    with ``s_A, s_B`` the std across each source's set means (equal numbers
    of sets per source).  ``inf`` when the difference is zero, ``nan`` when a
    source has a single set (no set-to-set variance to go on).
    """
    if not all(math.isfinite(x) for x in (difference, set_std_a, set_std_b)):
        return math.nan
    if difference == 0:
        return math.inf
    return max(2, math.ceil(_z(alpha, power) ** 2 * (set_std_a**2 + set_std_b**2) / difference**2))


# ----------------------------------------------------------------- sources, with sets as a random effect

SET_AWARE = "sets+items t (Welch)"


@dataclass(frozen=True)
class SourceTest:
    """A comparison of two *sources* (sets random), vectorised over leading axes: see :func:`source_difference`."""

    estimate: np.ndarray
    stderr: np.ndarray
    df: np.ndarray
    p: np.ndarray
    low: np.ndarray
    high: np.ndarray


def _source_matrix(values: Any, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=float)
    if array.ndim < 2 or array.shape[-2] < 2 or array.shape[-1] < 2:
        raise CalibenchError(
            f"{name} must be a sets x items array with at least 2 sets and 2 items, got shape {array.shape}: "
            "set-to-set variance needs 2 or more sets per source (add sets in the spec)"
        )
    if not np.all(np.isfinite(array)):
        raise CalibenchError(f"{name} holds non-finite values: drop or fix those items first")
    return array


def source_difference(a: Any, b: Any, *, level: float = 0.95) -> SourceTest:
    """Mean difference of source A minus source B with sets *and* items random: a moment-based mixed-model t test.

    ``a`` (k_A x n) and ``b`` (k_B x n) hold each set's scores on the same n
    items (a study scores every cell on the same items); leading axes, if
    any, are independent comparisons (simulations).  The estimate is the
    difference of the grand means.  Under the crossed random-effects model

        y[source, set, item] = mu_source + set effect + item effect + source x item + noise

    its variance is ``s2_set_A / k_A + s2_set_B / k_B`` (which sets were
    drawn) ``+ s2_item / n`` (which items the benchmark happened to hold).
    The first two are estimated by the variance of each source's set means,
    the third by the variance of the per-item differences of the source
    means.  Both estimates contain the residual noise, so it is counted
    twice: the test is slightly conservative, never liberal, for any share of
    set and item variance.  The degrees of freedom are Welch-Satterthwaite's
    over the three terms: with three sets per source and a set term that
    dominates, about 2 to 4, so few sets are paid for with a wide t
    quantile, as they should be.

    Why not the items-only tests (:func:`compare_paired` on set-averaged
    items): they hold the drawn sets fixed, so their p-value answers "is A
    better than B *for these sets*"; with a set-to-set spread comparable to
    the difference they reject far more often than alpha as a statement
    about sources (tests/core/test_stats_sources.py simulates both).
    """
    a = _source_matrix(a, "a")
    b = _source_matrix(b, "b")
    if a.shape[-1] != b.shape[-1]:
        raise CalibenchError(f"a and b must be scored on the same items: {a.shape[-1]} vs {b.shape[-1]} items")
    if not 0 < level < 1:
        raise CalibenchError(f"level must be between 0 and 1, got {level}")
    from scipy.stats import t as student_t  # lazy: scipy is heavy

    k_a, k_b, n = a.shape[-2], b.shape[-2], a.shape[-1]
    estimate = a.mean(axis=(-2, -1)) - b.mean(axis=(-2, -1))
    terms = [
        (a.mean(axis=-1).var(axis=-1, ddof=1) / k_a, k_a - 1),
        (b.mean(axis=-1).var(axis=-1, ddof=1) / k_b, k_b - 1),
        ((a.mean(axis=-2) - b.mean(axis=-2)).var(axis=-1, ddof=1) / n, n - 1),
    ]
    variance = sum(v for v, _ in terms)
    denominator = sum(v**2 / d for v, d in terms)
    with np.errstate(divide="ignore", invalid="ignore"):
        df = np.where(denominator > 0, variance**2 / np.where(denominator > 0, denominator, 1.0), float(n - 1))
        stderr = np.sqrt(variance)
        statistic = np.where(stderr > 0, np.abs(estimate) / np.where(stderr > 0, stderr, 1.0), np.inf)
    p = np.where(estimate == 0, 1.0, 2.0 * student_t.sf(statistic, df))
    half = student_t.ppf(0.5 + level / 2.0, df) * stderr
    return SourceTest(estimate, stderr, df, np.minimum(p, 1.0), estimate - half, estimate + half)
