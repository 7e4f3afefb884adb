"""Anytime-valid sequential comparisons: simulated error rates under peeking, power, Holm, set-aware version, errors.

The simulations are vectorised over replications: the betting capital of
every replication is one row, and a rule that looks after every block of
``BLOCK`` items rejects at some look exactly when its (never rising)
anytime p-value at the last look is <= alpha.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from calibench.core import sequential as seq
from calibench.core import stats
from calibench.core.errors import CalibenchError, ParameterError

ALPHA = 0.05
BLOCK = 25
CAP = 1000
R = 2000
LOOKS = np.arange(BLOCK, CAP + 1, BLOCK)


def band(alpha: float, reps: int) -> float:
    """Upper edge of the binomial 99 % band around alpha."""
    return alpha + 2.58 * math.sqrt(alpha * (1 - alpha) / reps)


def paired_items(rng, reps: int, n: int, shift: float = 0.0) -> np.ndarray:
    """Per-item differences of two 0/1 scorers sharing item difficulty (correlated pairs): A is ``shift`` better."""
    q = 0.9 * rng.beta(2.0, 2.0, size=(reps, n))  # item difficulty, shared by both conditions
    a = rng.random((reps, n)) < q + shift
    b = rng.random((reps, n)) < q
    return a.astype(float) - b.astype(float)


def naive_rejects(d: np.ndarray) -> np.ndarray:
    """Peek after every block, stop at the first two-sided sign-flip (McNemar, normal approximation) p < 0.05."""
    wins = np.cumsum(d > 0, axis=-1)[..., LOOKS - 1]
    losses = np.cumsum(d < 0, axis=-1)[..., LOOKS - 1]
    with np.errstate(invalid="ignore", divide="ignore"):
        z = np.where(wins + losses > 0, (wins - losses) / np.sqrt(wins + losses), 0.0)
    return np.any(np.abs(z) > 1.959964, axis=-1)


@pytest.fixture(scope="module")
def null_diffs() -> np.ndarray:
    return paired_items(np.random.default_rng(20240), R, CAP)


@pytest.fixture(scope="module")
def null_pvalues(null_diffs) -> np.ndarray:
    return seq.anytime_pvalue(null_diffs, ALPHA, horizon=CAP)[:, LOOKS - 1]


# ----------------------------------------------------------------- error rates under peeking


def test_anytime_rule_keeps_its_level_under_peeking_but_the_naive_rule_does_not(null_diffs, null_pvalues):
    anytime = float(np.mean(np.any(null_pvalues <= ALPHA, axis=-1)))
    untuned = float(np.mean(seq.anytime_pvalue(null_diffs, ALPHA)[:, -1] <= ALPHA))  # t log(1+t) stakes
    naive = float(np.mean(naive_rejects(null_diffs)))
    print(
        f"\nnull, {R} replications, looks every {BLOCK} items to {CAP}: false-positive rate anytime-valid "
        f"(tuned to the cap) {anytime:.4f}, anytime-valid (t log t) {untuned:.4f}, naive peeking {naive:.4f}; "
        f"99% band upper edge {band(ALPHA, R):.4f}"
    )
    assert anytime <= band(ALPHA, R)
    assert untuned <= band(ALPHA, R)
    assert naive > band(ALPHA, R)
    # the p-values never rise, so "any look" and "the last look" are the same event
    assert np.all(np.diff(null_pvalues, axis=-1) <= 0)
    assert np.array_equal(np.any(null_pvalues <= ALPHA, axis=-1), null_pvalues[:, -1] <= ALPHA)


def test_holm_across_ten_null_comparisons_keeps_the_family_wise_rate():
    rng = np.random.default_rng(11)
    family, reps = 10, 1000
    q = 0.9 * rng.beta(2.0, 2.0, size=(reps, CAP))  # the comparisons share items: their tests are correlated
    p = np.empty((family, reps, LOOKS.size))
    for j in range(family):
        d = (rng.random((reps, CAP)) < q).astype(float) - (rng.random((reps, CAP)) < q)
        p[j] = seq.anytime_pvalue(d, ALPHA, horizon=CAP)[:, LOOKS - 1]
    adjusted = seq.holm_sequential(p, axis=0)
    fwer = float(np.mean(np.any(adjusted <= ALPHA, axis=(0, 2))))
    unadjusted = float(np.mean(np.any(p <= ALPHA, axis=(0, 2))))
    print(
        f"\nHolm over {family} null comparisons, {reps} replications: family-wise rate {fwer:.4f} "
        f"(without Holm {unadjusted:.4f})"
    )
    assert fwer <= band(ALPHA, reps)
    assert unadjusted > fwer  # Holm does something
    # adjusted p-values never rise over the looks either: a decision, once made, stands
    assert np.all(np.diff(adjusted, axis=-1) <= 1e-15)


def test_power_under_a_real_difference_decides_early():
    d = paired_items(np.random.default_rng(5), R, CAP, shift=0.10)
    p = seq.anytime_pvalue(d, ALPHA, horizon=CAP)[:, LOOKS - 1]
    decided = p <= ALPHA
    ever = decided.any(axis=-1)
    used = np.where(ever, LOOKS[np.argmax(decided, axis=-1)], CAP)
    print(
        f"\npower at a 0.10 accuracy difference, {R} replications: decided before the cap {ever.mean():.4f}, "
        f"mean items used {used.mean():.1f} of {CAP} (median {np.median(used):.0f})"
    )
    assert ever.mean() >= 0.9
    assert used.mean() <= 0.6 * CAP


def test_sequential_comparison_follows_the_vectorised_rule_and_stops_for_the_right_reason():
    d = paired_items(np.random.default_rng(9), 12, CAP, shift=0.10)
    reference = seq.anytime_pvalue(d, ALPHA, horizon=CAP)
    stops = []
    for row, ref in zip(d, reference, strict=True):
        c = seq.SequentialComparison("A vs B", alpha=ALPHA, cap=CAP, block=BLOCK, futility_after=CAP, grid=201)
        for start in range(0, CAP, BLOCK):
            c.feed(row[start : start + BLOCK])
            status = c.status()
            assert status.p == pytest.approx(ref[c.items - 1], rel=1e-12)
            assert status.estimate == pytest.approx(row[: c.items].mean())
            if status.stopped:
                break
        stops.append(status)
        if status.state == seq.DECIDED:
            assert status.items == LOOKS[np.argmax(ref[LOOKS - 1] <= ALPHA)]
            assert "<= alpha" in status.reason
        else:
            assert status.state == seq.FUTILE and status.items == CAP and "cap" in status.reason
        assert status.scope == seq.THESE_SETS
        with pytest.raises(CalibenchError, match="already stopped"):
            c.feed(row[:BLOCK])
        assert c.status() is status  # sticky
    assert sum(s.state == seq.DECIDED for s in stops) >= 10


def test_futility_stops_a_comparison_with_no_difference_and_rarely_one_with_a_difference():
    rng = np.random.default_rng(21)
    null = paired_items(rng, 40, CAP)
    real = paired_items(rng, 40, CAP, shift=0.10)

    def run(row):
        c = seq.SequentialComparison(cap=CAP, block=BLOCK, grid=201)
        for start in range(0, CAP, BLOCK):
            c.feed(row[start : start + BLOCK])
            status = c.status()
            if status.stopped:
                return status
        raise AssertionError("a comparison at its cap must have stopped")

    null_runs = [run(row) for row in null]
    real_runs = [run(row) for row in real]
    assert all(s.state != seq.DECIDED for s in null_runs)
    null_items = np.mean([s.items for s in null_runs])
    power = np.mean([s.state == seq.DECIDED for s in real_runs])
    print(
        f"\nwith futility (margin {seq.FUTILITY_MARGIN} se): mean items under the null {null_items:.0f} of {CAP}, "
        f"power at 0.10 {power:.3f}, mean items then {np.mean([s.items for s in real_runs]):.0f}"
    )
    assert null_items < 0.7 * CAP  # futility saves items under the null
    assert any("projected log capital" in s.reason for s in null_runs)
    assert power >= 0.9


# ----------------------------------------------------------------- the confidence sequence itself


def loop_sequence(d, alpha, lower, upper, grid, horizon=None):
    """One candidate mean and one item at a time, straight from the definitions, to check the vectorised code."""
    x = [(v - lower) / (upper - lower) for v in d]
    points = [i / (grid - 1) for i in range(grid)]
    lows, highs = [], []
    best_plus = [0.0] * grid
    best_minus = [0.0] * grid
    log_plus = [0.0] * grid
    log_minus = [0.0] * grid
    total, squares = 0.0, 0.0
    variance_before = 0.25
    for t, xt in enumerate(x, start=1):
        h = t * math.log(1 + t) if horizon is None else horizon
        stake = math.sqrt(2 * math.log(2 / alpha) / (variance_before * h))
        for g, m in enumerate(points):
            up = min(stake, 0.5 / m) if m > 0 else stake
            down = min(stake, 0.5 / (1 - m)) if m < 1 else stake
            log_plus[g] += math.log(1 + up * (xt - m))
            log_minus[g] += math.log(1 - down * (xt - m))
            best_plus[g] = max(best_plus[g], log_plus[g])
            best_minus[g] = max(best_minus[g], log_minus[g])
        total += xt
        mean = (0.5 + total) / (t + 1)
        squares += (xt - mean) ** 2
        variance_before = (0.25 + squares) / (t + 1)
        rejected_low = [m for g, m in enumerate(points) if 0.5 * math.exp(best_plus[g]) >= 1 / alpha]
        rejected_high = [m for g, m in enumerate(points) if 0.5 * math.exp(best_minus[g]) >= 1 / alpha]
        lows.append(lower + (upper - lower) * (max(rejected_low) if rejected_low else 0.0))
        highs.append(lower + (upper - lower) * (min(rejected_high) if rejected_high else 1.0))
    return np.array(lows), np.array(highs)


@pytest.mark.parametrize("horizon", [None, 40])
def test_confidence_sequence_equals_an_explicit_loop(horizon):
    d = np.random.default_rng(4).choice([-1.0, 0.0, 1.0], p=[0.15, 0.45, 0.4], size=60)
    cs = seq.confidence_sequence(d, 0.1, grid=81, horizon=horizon)
    low, high = loop_sequence(d, 0.1, -1.0, 1.0, 81, horizon)
    np.testing.assert_allclose(cs.low, low, atol=1e-12)
    np.testing.assert_allclose(cs.high, high, atol=1e-12)
    np.testing.assert_allclose(cs.estimate, np.cumsum(d) / np.arange(1, 61))
    assert cs.low[-1] > cs.low[0] and cs.high[-1] < cs.high[0]  # it did shrink
    # log-perplexity-like differences with a user-supplied range
    w = np.random.default_rng(5).normal(0.05, 0.1, size=40).clip(-0.4, 0.4)
    cs = seq.confidence_sequence(w, 0.1, lower=-0.5, upper=0.5, grid=51)
    low, high = loop_sequence(w, 0.1, -0.5, 0.5, 51)
    np.testing.assert_allclose(cs.low, low, atol=1e-12)
    np.testing.assert_allclose(cs.high, high, atol=1e-12)


def test_a_constant_sequence_is_never_excluded_and_the_sequence_closes_in_on_it():
    d = np.full(400, 0.3)
    cs = seq.confidence_sequence(d)
    assert np.all((cs.low <= 0.3) & (cs.high >= 0.3))
    assert np.all(np.diff(cs.low) >= 0) and np.all(np.diff(cs.high) <= 0)  # running intersection
    assert cs.high[-1] - cs.low[-1] < 0.1
    assert np.all(seq.anytime_pvalue(d, null=0.3) == 1.0)  # the capital at the true constant never moves
    assert seq.anytime_pvalue(d)[-1] < 1e-6  # and 0 is ruled out decisively


def test_confidence_sequence_and_pvalue_agree_at_every_level():
    d = np.random.default_rng(0).choice([-1.0, 0.0, 1.0], p=[0.2, 0.5, 0.3], size=600)
    for alpha in (0.01, 0.05, 0.2):
        cs = seq.confidence_sequence(d, alpha)
        p = seq.anytime_pvalue(d, alpha)
        assert np.array_equal(cs.excludes(0.0), p <= alpha)
        assert cs.excludes(0.0).any() and not cs.excludes(0.0).all()
    looks = np.array([10, 100, 600])
    part = seq.confidence_sequence(d, looks=looks)
    full = seq.confidence_sequence(d)
    np.testing.assert_array_equal(part.low, full.low[looks - 1])
    np.testing.assert_array_equal(part.high, full.high[looks - 1])


def test_coverage_of_the_true_mean_over_all_times_by_simulation():
    rng = np.random.default_rng(2)
    reps, n = 200, 200
    x = 2.0 * rng.beta(2.0, 5.0, size=(reps, n)) - 0.4  # values in [-0.4, 1.6]
    truth = 2.0 * 2.0 / 7.0 - 0.4  # the Beta(2, 5) mean is 2/7
    missed = 0
    for row in x:
        cs = seq.confidence_sequence(row, 0.1, lower=-0.4, upper=1.6, grid=201)
        missed += bool(np.any(cs.excludes(truth)))
    assert missed / reps <= band(0.1, reps)
    # the same through the p-value at the truth, all replications at once, at the tighter level
    p = seq.anytime_pvalue(x, 0.1, null=truth, lower=-0.4, upper=1.6)
    assert np.mean(p[:, -1] <= 0.1) <= band(0.1, reps)


def test_holm_sequential_matches_stats_holm_at_every_look():
    rng = np.random.default_rng(8)
    p = rng.uniform(size=(6, 4, 5)) ** 2
    p[2, 1, 3] = np.nan
    adjusted = seq.holm_sequential(p, axis=0)
    for i in range(4):
        for j in range(5):
            np.testing.assert_allclose(adjusted[:, i, j], stats.holm(p[:, i, j]), equal_nan=True)
    np.testing.assert_allclose(seq.holm_sequential(p[:, 0, 0]), stats.holm(p[:, 0, 0]))


def test_family_status_applies_holm_across_the_family():
    rng = np.random.default_rng(3)
    shifts = [0.25, 0.0, 0.0]
    data = [paired_items(rng, 1, 400, shift=s)[0] for s in shifts]
    family = [seq.SequentialComparison(f"c{i}", cap=400, futility_after=400, grid=201) for i in range(3)]
    decided_at = None
    for start in range(0, 400, BLOCK):
        for c, d in zip(family, data, strict=True):
            if not c.stopped:
                c.feed(d[start : start + BLOCK])
        statuses = seq.family_status(family)
        expected = stats.holm([s.p for s in statuses])
        for s, e in zip(statuses, expected, strict=True):
            if s.state == seq.RUNNING:
                assert s.p_adjusted == pytest.approx(e)
        if statuses[0].state == seq.DECIDED and decided_at is None:
            decided_at = statuses[0].items
            assert statuses[0].p_adjusted <= ALPHA and statuses[0].p * 3 <= ALPHA  # the smallest of 3: times 3
    assert decided_at is not None
    with pytest.raises(ParameterError, match="alpha"):
        seq.family_status([seq.SequentialComparison(alpha=0.05), seq.SequentialComparison(alpha=0.1)])


# ----------------------------------------------------------------- sets as a random effect


def set_items(rng, reps: int, k: int, n: int, delta: float, set_sd: float) -> np.ndarray:
    """reps x k x n differences: pair i of set draws has its own effect Delta_i ~ N(delta, set_sd^2) on shared items."""
    q = 0.15 + 0.7 * rng.beta(2.0, 2.0, size=(reps, 1, n))
    effect = rng.normal(delta, set_sd, size=(reps, k, 1))
    a = rng.random((reps, k, n)) < np.clip(q + effect / 2, 0, 1)
    b = rng.random((reps, k, n)) < np.clip(q - effect / 2, 0, 1)
    return a.astype(float) - b.astype(float)


def test_set_aware_rule_keeps_its_level_where_the_these_sets_rule_does_not():
    reps, k, n = 200, 4, 300
    d = set_items(np.random.default_rng(17), reps, k, n, delta=0.0, set_sd=0.08)
    these_sets = seq.anytime_pvalue(d.mean(axis=1), ALPHA, horizon=n)[:, -1]
    sources = seq.set_anytime_pvalue(d, ALPHA, looks=[n], horizon=n, grid=101)[:, -1]
    rate_these, rate_sources = float(np.mean(these_sets <= ALPHA)), float(np.mean(sources <= ALPHA))
    print(
        f"\nsources equal, set sd 0.08, k={k}, {reps} replications: rejection rate 'for these sets' "
        f"{rate_these:.3f} (a statement about the drawn sets, not the sources), set-aware {rate_sources:.3f}"
    )
    assert rate_sources <= band(ALPHA, reps)
    assert rate_these > band(ALPHA, reps)


def test_set_aware_rule_decides_a_large_difference_and_matches_its_sequence():
    reps, k, n = 20, 8, 600
    d = set_items(np.random.default_rng(23), reps, k, n, delta=0.3, set_sd=0.02)
    p = seq.set_anytime_pvalue(d, ALPHA, looks=[300, n], grid=101)
    print(f"\nset-aware, k={k}, difference 0.3: decided by {n} items in {np.mean(p[:, -1] <= ALPHA):.2f}")
    assert np.mean(p[:, -1] <= ALPHA) >= 0.9
    assert np.all(p[:, 1] <= p[:, 0])  # never rises
    cs = seq.set_confidence_sequence(d[0], ALPHA, looks=[300, n], grid=101)
    assert cs.scope == seq.SOURCES
    # the p-value is the smallest level at which the sequence excludes 0
    for level in (0.01, ALPHA, 0.2):
        at_level = seq.set_confidence_sequence(d[0], level, looks=[300, n], grid=101)
        tuned = seq.set_anytime_pvalue(d[0], level, looks=[300, n], grid=101)
        assert np.array_equal(at_level.excludes(0.0), tuned <= level)
    # the set-aware bounds contain the these-sets bounds' information and more: they are wider
    items_only = seq.confidence_sequence(d[0].mean(axis=0), ALPHA, looks=[300, n], grid=101)
    assert np.all(cs.high - cs.low > items_only.high - items_only.low)


def test_set_interval_corners_against_brute_force_and_the_loose_bound():
    rng = np.random.default_rng(1)
    low = rng.uniform(-0.2, 0.1, size=4)
    high = low + rng.uniform(0.01, 0.2, size=4)
    lo, hi = seq._set_interval(low, high, 0.05)
    # brute force over a fine lattice of the box: never beyond the corner answer, and reaching it
    factor = float(seq._t_quantile(0.975, 3)) / 2.0
    axes = [np.linspace(a, b, 7) for a, b in zip(low, high, strict=True)]
    points = np.stack(np.meshgrid(*axes), axis=-1).reshape(-1, 4)
    ends_lo = points.mean(axis=1) - factor * points.std(axis=1, ddof=1)
    ends_hi = points.mean(axis=1) + factor * points.std(axis=1, ddof=1)
    assert lo == pytest.approx(ends_lo.min()) and hi == pytest.approx(ends_hi.max())
    # more pairs than corners are enumerated for: a looser, still containing, bound
    low16 = np.concatenate([low] * 4)
    high16 = np.concatenate([high] * 4)
    loose = seq._set_interval(low16, high16, 0.05)
    corners = seq.MAX_VERTEX_SETS
    exact = seq._set_interval(low16[:corners], high16[:corners], 0.05)
    assert loose[0] < exact[0] and loose[1] > exact[1]


def test_set_aware_sequential_comparison_matches_the_function_and_reports_futility():
    rng = np.random.default_rng(31)
    d = set_items(rng, 1, 3, 300, delta=0.0, set_sd=0.1)[0]
    c = seq.SequentialComparison("A vs B (sources)", sets=3, cap=300, grid=201, futility_after=50)
    for start in range(0, 300, BLOCK):
        c.feed(d[:, start : start + BLOCK])
        status = c.status()
        if status.stopped:
            break
    assert status.scope == seq.SOURCES
    reference = seq.set_anytime_pvalue(d[:, : c.items], ALPHA, looks=[c.items], horizon=300, grid=201)[-1]
    assert status.p == pytest.approx(reference)
    assert status.state == seq.FUTILE and "t-interval" in status.reason


# ----------------------------------------------------------------- determinism and errors


def test_deterministic():
    a = paired_items(np.random.default_rng(42), 50, 300)
    b = paired_items(np.random.default_rng(42), 50, 300)
    assert np.array_equal(a, b)
    assert np.array_equal(seq.anytime_pvalue(a), seq.anytime_pvalue(b))
    first, second = seq.confidence_sequence(a[0]), seq.confidence_sequence(b[0])
    assert np.array_equal(first.low, second.low) and np.array_equal(first.high, second.high)

    def statuses(row):
        c = seq.SequentialComparison(cap=300, grid=201)
        out = []
        for start in range(0, 300, BLOCK):
            c.feed(row[start : start + BLOCK])
            out.append(c.status())
            if out[-1].stopped:
                break
        return out

    assert statuses(a[1]) == statuses(b[1])


@pytest.mark.parametrize("alpha", [0, 1, 1.5, -0.1, "0.05", True])
def test_alpha_outside_zero_one_is_refused(alpha):
    with pytest.raises(ParameterError, match="alpha"):
        seq.confidence_sequence([0.0, 1.0], alpha)
    with pytest.raises(ParameterError, match="alpha"):
        seq.anytime_pvalue([0.0, 1.0], alpha)
    with pytest.raises(ParameterError, match="alpha"):
        seq.SequentialComparison(alpha=alpha)


def test_error_paths_say_what_is_wrong():
    with pytest.raises(ParameterError, match=r"cap \(10 items\) is below the first block of 25"):
        seq.SequentialComparison(cap=10, block=25)
    for lower, upper in [(1.0, -1.0), (0.5, 0.5)]:
        with pytest.raises(ParameterError, match="lower must be below upper"):
            seq.confidence_sequence([0.0], lower=lower, upper=upper)
        with pytest.raises(ParameterError, match="lower must be below upper"):
            seq.SequentialComparison(lower=lower, upper=upper)
    with pytest.raises(ParameterError, match=r"1 lie outside \[-1.0, 1.0\] \(e.g. 1.5\).*clip=True"):
        seq.confidence_sequence([0.0, 1.5, 1.0])
    with pytest.raises(ParameterError, match="outside"):
        seq.anytime_pvalue([[0.0, -2.0]])
    c = seq.SequentialComparison(cap=50)
    with pytest.raises(ParameterError, match="outside"):
        c.feed([0.0, 3.0])
    assert c.items == 0  # a refused block leaves the state alone
    with pytest.raises(ParameterError, match="past its cap of 50"):
        c.feed(np.zeros(51))
    with pytest.raises(ParameterError, match="block must be a vector"):
        c.feed(np.zeros((2, 5)))
    clipped = seq.confidence_sequence([0.0, 1.5, 1.0], clip=True)
    assert np.array_equal(clipped.high, seq.confidence_sequence([0.0, 1.0, 1.0]).high)
    with pytest.raises(CalibenchError, match="non-finite"):
        seq.confidence_sequence([0.0, np.nan])
    with pytest.raises(CalibenchError, match="at least one item"):
        seq.confidence_sequence([])
    with pytest.raises(ParameterError, match="null must lie strictly inside"):
        seq.anytime_pvalue([0.0], null=1.0)
    with pytest.raises(ParameterError, match="at least 2 pairs"):
        seq.set_confidence_sequence([[0.0, 1.0]])
    with pytest.raises(ParameterError, match="sets must be a whole number >= 2"):
        seq.SequentialComparison(sets=1)
    with pytest.raises(ParameterError, match="block must be a 3 x b array"):
        seq.SequentialComparison(sets=3).feed(np.zeros((2, 5)))
    with pytest.raises(ParameterError, match="looks must be increasing"):
        seq.confidence_sequence([0.0, 1.0, 0.0], looks=[2, 1])
    with pytest.raises(CalibenchError, match="at least one comparison"):
        seq.family_status([])
