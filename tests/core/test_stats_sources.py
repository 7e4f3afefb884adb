"""The set-aware comparison of sources: numbers against a hand computation, and its level by simulation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from calibench.core.errors import CalibenchError
from calibench.core.stats import source_difference

REPLICATIONS = 4000
ALPHA = 0.05


def band(alpha: float, reps: int) -> float:
    """The upper end of a 3-sigma binomial band around ``alpha``."""
    return alpha + 3 * math.sqrt(alpha * (1 - alpha) / reps)


def test_matches_a_hand_computation() -> None:
    a = [[1.0, 2.0, 3.0, 4.0, 5.5], [1.5, 2.5, 2.5, 4.0, 5.0], [0.5, 2.0, 3.5, 3.0, 5.0]]
    b = [[1.2, 2.1, 2.0, 3.0, 4.0], [0.9, 2.4, 2.6, 3.3, 4.4]]
    set_means_a = [sum(r) / 5 for r in a]
    set_means_b = [sum(r) / 5 for r in b]

    def var(xs: list[float]) -> float:
        m = sum(xs) / len(xs)
        return sum((x - m) ** 2 for x in xs) / (len(xs) - 1)

    per_item = [sum(r[i] for r in a) / 3 - sum(r[i] for r in b) / 2 for i in range(5)]
    terms = [(var(set_means_a) / 3, 2), (var(set_means_b) / 2, 1), (var(per_item) / 5, 4)]
    se = math.sqrt(sum(v for v, _ in terms))
    df = sum(v for v, _ in terms) ** 2 / sum(v * v / d for v, d in terms)
    estimate = sum(set_means_a) / 3 - sum(set_means_b) / 2
    result = source_difference(a, b)
    assert float(result.estimate) == pytest.approx(estimate, abs=1e-12)
    assert float(result.stderr) == pytest.approx(se, rel=1e-12)
    assert float(result.df) == pytest.approx(df, rel=1e-12)
    assert float(result.p) == pytest.approx(2 * scipy_stats.t.sf(abs(estimate) / se, df), rel=1e-9)
    half = scipy_stats.t.ppf(0.975, df) * se
    assert (float(result.low), float(result.high)) == pytest.approx((estimate - half, estimate + half), rel=1e-9)


def simulate(rng: np.random.Generator, reps: int, sets: int, items: int, set_sd: float, shift: float) -> tuple:
    """Scores of two sources under the crossed random-effects model, sets x items per replication."""
    item = rng.normal(0, 0.3, size=(reps, 1, items))  # item difficulty, shared by every cell

    def source(offset: float) -> np.ndarray:
        interaction = rng.normal(0, 0.03, size=(reps, 1, items))
        set_effect = rng.normal(0, set_sd, size=(reps, sets, 1))
        noise = rng.normal(0, 0.02, size=(reps, sets, items))
        return offset + item + interaction + set_effect + noise

    return source(shift), source(0.0)


def items_only_p(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The items-only paired t test on set-averaged item scores (the sign-flip test's large-sample form)."""
    d = a.mean(axis=-2) - b.mean(axis=-2)
    n = d.shape[-1]
    t = d.mean(axis=-1) / (d.std(axis=-1, ddof=1) / math.sqrt(n))
    return 2 * scipy_stats.t.sf(np.abs(t), n - 1)


@pytest.mark.parametrize("set_sd", [0.05, 0.0])
def test_level_holds_under_the_null_where_items_only_does_not(set_sd: float) -> None:
    rng = np.random.default_rng(11)
    a, b = simulate(rng, REPLICATIONS, sets=3, items=32, set_sd=set_sd, shift=0.0)
    rate = float(np.mean(source_difference(a, b).p < ALPHA))
    naive = float(np.mean(items_only_p(a, b) < ALPHA))
    assert rate <= band(ALPHA, REPLICATIONS)
    if set_sd:
        # holding the drawn sets fixed reads their spread as a difference between sources
        assert naive > 3 * ALPHA
    else:
        assert naive <= band(ALPHA, REPLICATIONS)  # with no set variance both are valid
        assert rate <= naive + 0.01  # and the set-aware test gives away little


def test_power_against_a_clear_source_difference() -> None:
    rng = np.random.default_rng(12)
    a, b = simulate(rng, 1000, sets=3, items=32, set_sd=0.01, shift=0.1)
    result = source_difference(a, b)
    assert float(np.mean(result.p < ALPHA)) > 0.8
    assert float(np.mean((result.low < 0.1) & (result.high > 0.1))) >= 0.93  # the CI covers the true shift


def test_coverage_of_the_interval() -> None:
    rng = np.random.default_rng(13)
    a, b = simulate(rng, REPLICATIONS, sets=4, items=20, set_sd=0.04, shift=0.02)
    result = source_difference(a, b)
    assert float(np.mean((result.low <= 0.02) & (result.high >= 0.02))) >= 1 - band(ALPHA, REPLICATIONS)


@pytest.mark.parametrize(
    ("a", "b", "message"),
    [
        ([[1.0, 2.0]], [[1.0, 2.0], [2.0, 3.0]], "at least 2 sets"),
        ([[1.0, 2.0], [2.0, 3.0]], [[1.0, 2.0, 3.0], [2.0, 3.0, 4.0]], "same items"),
        ([[1.0, float("nan")], [2.0, 3.0]], [[1.0, 2.0], [2.0, 3.0]], "non-finite"),
    ],
)
def test_bad_input_is_one_clear_error(a: list, b: list, message: str) -> None:
    with pytest.raises(CalibenchError, match=message):
        source_difference(a, b)


def test_identical_sources_give_p_one() -> None:
    a = [[1.0, 2.0, 3.0], [1.5, 2.5, 3.5]]
    assert float(source_difference(a, a).p) == 1.0


def test_sources_at_planned_looks_keep_their_level_where_peeking_does_not() -> None:
    """The adaptive set-aware rule (the fixed test at each look, Bonferroni over the planned looks) under the null,
    2,000 replications with a look every 16 items to 64, against peeking at the fixed test's own level."""
    from calibench.core.sequential import LookwiseSourceComparison

    reps, block, cap = 2000, 16, 64
    rng = np.random.default_rng(21)
    a, b = simulate(rng, reps, sets=3, items=cap, set_sd=0.02, shift=0.0)
    looks = cap // block
    p = np.stack([source_difference(a[..., :n], b[..., :n]).p for n in range(block, cap + 1, block)], axis=-1)
    lookwise = float(np.mean(np.any(looks * p <= ALPHA, axis=-1)))
    naive = float(np.mean(np.any(p <= ALPHA, axis=-1)))
    assert lookwise <= band(ALPHA, reps)
    assert naive > lookwise  # peeking at the nominal level spends more than alpha
    # the comparison object follows the vectorised rule, replication by replication
    for r in range(25):
        test = LookwiseSourceComparison("r", alpha=ALPHA, cap=cap, block=block, futility_after=10**6)
        for start in range(0, cap, block):
            test.feed(a[r, :, start : start + block], b[r, :, start : start + block])
        assert test.p == pytest.approx(min(1.0, float(np.min(looks * p[r]))))


def test_sources_at_planned_looks_decide_a_clear_difference_early() -> None:
    from calibench.core.sequential import LookwiseSourceComparison, family_status

    rng = np.random.default_rng(22)
    a, b = simulate(rng, 1, sets=3, items=64, set_sd=0.01, shift=0.2)
    test = LookwiseSourceComparison("clear", cap=64, block=16)
    test.feed(a[0, :, :16], b[0, :, :16])
    (status,) = family_status([test])
    assert status.state == "decided" and status.items == 16 and status.low > 0
    with pytest.raises(CalibenchError, match="already stopped"):
        test.feed(a[0, :, 16:32], b[0, :, 16:32])
