"""The report's statistics beyond tests/core/test_paired_stats.py: McNemar's exact test, the choice of test, and the
calibration of the bootstrap and permutation tests over many synthetic paired data sets (false positives at the
nominal 5% with no true difference, and the power that items_needed promises with one)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from calibench.core import stats
from calibench.core.errors import CalibenchError

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.filterwarnings("ignore")]

REPEATS = 400
NOMINAL = 0.05


def binomial_band(p: float, repeats: int = REPEATS, sds: float = 3.5) -> tuple[float, float]:
    """Where the share of ``repeats`` independent p-probability events lands with near certainty."""
    half = sds * math.sqrt(p * (1 - p) / repeats)
    return p - half, p + half


def naive_binomial_p(k: int, m: int) -> float:
    """Two-sided binomial test at 1/2 by enumerating every outcome no likelier than the observed one."""
    pmf = [math.comb(m, i) / 2**m for i in range(m + 1)]
    return min(1.0, sum(q for q in pmf if q <= pmf[k] * (1 + 1e-12)))


def naive_mid_p(k: int, m: int) -> float:
    """Fagerland et al. (2013): the doubled smaller tail minus the observed outcome's probability."""
    pmf = [math.comb(m, i) / 2**m for i in range(m + 1)]
    k = min(k, m - k)
    return min(1.0, 2 * sum(pmf[: k + 1]) - pmf[k])


# ----------------------------------------------------------------- McNemar


def test_mcnemar_matches_hand_worked_counts():
    # 1 vs 6 discordant: P(X <= 1) = (1 + 7) / 128, doubled: 16/128
    assert stats.mcnemar_exact(1, 6) == pytest.approx(16 / 128)
    assert stats.mcnemar_exact(6, 1) == pytest.approx(16 / 128)  # symmetric
    # mid-p: 2 P(X < 1) + P(X = 1) = (2 + 7) / 128
    assert stats.mcnemar_exact(1, 6, mid_p=True) == pytest.approx(9 / 128)
    assert stats.mcnemar_exact(0, 5) == pytest.approx(2 / 32)
    assert stats.mcnemar_exact(0, 0) == 1.0 and stats.mcnemar_exact(3, 3) == 1.0
    assert stats.mcnemar_exact(3, 3, mid_p=True) == pytest.approx(1.0)
    # on vectors: concordant items (both right, both wrong) do not count
    a = np.array([1, 1, 1, 0, 0, 1, 1, 1, 1, 1])
    b = np.array([1, 0, 0, 0, 1, 0, 0, 0, 0, 1])
    assert stats.discordant_counts(a, b) == (6, 1)
    assert stats.mcnemar_pvalue(a, b) == pytest.approx(16 / 128)


def test_mcnemar_equals_scipy_binomtest_and_a_naive_enumeration():
    binomtest = pytest.importorskip("scipy.stats").binomtest
    for a_only, b_only in itertools.product(range(0, 26, 3), range(0, 26, 4)):
        m = a_only + b_only
        expected = 1.0 if m == 0 else binomtest(a_only, m, 0.5).pvalue
        assert stats.mcnemar_exact(a_only, b_only) == pytest.approx(expected, rel=1e-10, abs=1e-300)
        if m:
            assert stats.mcnemar_exact(a_only, b_only) == pytest.approx(naive_binomial_p(a_only, m), rel=1e-10)
            assert stats.mcnemar_exact(a_only, b_only, mid_p=True) == pytest.approx(naive_mid_p(a_only, m), rel=1e-10)
    # large counts stay exact integers up to the division (no overflow, no float loss in the tail)
    assert stats.mcnemar_exact(400, 520) == pytest.approx(binomtest(400, 920, 0.5).pvalue, rel=1e-9)


def test_on_binary_items_the_exact_sign_flip_test_is_mcnemars():
    rng = np.random.default_rng(11)
    for _ in range(20):
        a, b = rng.integers(0, 2, size=14), rng.integers(0, 2, size=14)
        assert stats.sign_flip_pvalue(a, b) == pytest.approx(stats.mcnemar_pvalue(a, b))


def test_compare_paired_picks_mcnemar_for_0_1_items_and_the_sign_flip_otherwise():
    rng = np.random.default_rng(2)
    a, b = rng.integers(0, 2, size=60).astype(float), rng.integers(0, 2, size=60).astype(float)
    binary = stats.compare_paired(a, b)
    assert binary.test == stats.MCNEMAR and (binary.a_only, binary.b_only) == stats.discordant_counts(a, b)
    assert binary.p == stats.mcnemar_pvalue(a, b)
    ci = stats.paired_bootstrap_ci(a, b)
    assert (binary.estimate, binary.low, binary.high) == (ci.estimate, ci.low, ci.high)
    averaged = stats.compare_paired((a + b) / 2, b)  # a mean over two sets is not a 0/1 score
    assert averaged.test == stats.SIGN_FLIP_DRAWN and averaged.a_only is None
    assert averaged.p == stats.sign_flip_pvalue((a + b) / 2, b)
    assert stats.compare_paired(a[:10] + 0.5, b[:10]).test == stats.SIGN_FLIP_EXACT


def test_mcnemar_refuses_what_it_cannot_test():
    with pytest.raises(CalibenchError, match="0/1"):
        stats.discordant_counts([0.5, 1.0], [0.0, 1.0])
    with pytest.raises(CalibenchError, match="whole counts"):
        stats.mcnemar_exact(-1, 3)
    with pytest.raises(CalibenchError, match="whole counts"):
        stats.mcnemar_exact(1.5, 3)  # type: ignore[arg-type]
    with pytest.raises(CalibenchError, match="same items"):
        stats.mcnemar_pvalue([0, 1, 1], [0, 1])


# ----------------------------------------------------------------- calibration over synthetic repeats


def paired_data(rng, n: int, shift: float, item_sd: float = 1.0, noise_sd: float = 0.5):
    """Two conditions on the same items: a shared item difficulty plus independent noise; B is A shifted."""
    items = rng.normal(0, item_sd, size=n)
    return items + rng.normal(0, noise_sd, size=n), items + shift + rng.normal(0, noise_sd, size=n)


def test_no_true_difference_gives_false_positives_near_the_nominal_rate():
    """400 synthetic studies without a true difference: each test rejects about 5% of them, as it should."""
    rng = np.random.default_rng(2024)
    flips, intervals = 0, 0
    for r in range(REPEATS):
        a, b = paired_data(rng, 60, 0.0)
        flips += stats.sign_flip_pvalue(a, b, n_perm=999, seed=r) < NOMINAL
        ci = stats.paired_bootstrap_ci(a, b, n_boot=1000, seed=r)
        intervals += not (ci.low <= 0.0 <= ci.high)
    low, high = binomial_band(NOMINAL)
    assert low <= flips / REPEATS <= high, flips
    assert low <= intervals / REPEATS <= high, intervals


def test_mcnemar_keeps_its_level_on_0_1_items_and_mid_p_is_closer_to_it():
    rng = np.random.default_rng(7)
    exact, mid = 0, 0
    for _ in range(REPEATS):
        difficulty = rng.uniform(0.1, 0.9, size=80)  # shared: the same item is easy for both
        a, b = (rng.uniform(size=80) < difficulty).astype(float), (rng.uniform(size=80) < difficulty).astype(float)
        exact += stats.mcnemar_pvalue(a, b) < NOMINAL
        mid += stats.mcnemar_pvalue(a, b, mid_p=True) < NOMINAL
    assert exact / REPEATS <= binomial_band(NOMINAL)[1]  # exact: at most the nominal level
    assert exact <= mid and mid / REPEATS <= binomial_band(NOMINAL)[1]


def test_a_true_difference_is_detected_as_often_as_items_needed_promises():
    """At the items items_needed asks for, a true shift is found in about 80% of studies and the CI covers it."""
    shift, sd_d = 0.3, math.sqrt(2) * 0.5  # the items cancel; the noise of both conditions remains
    n = stats.items_needed(shift, sd_d)
    assert n == math.ceil(((1.959963984540054 + 0.8416212335729143) * sd_d / shift) ** 2)
    rng = np.random.default_rng(99)
    detected, covered, detected_unpaired = 0, 0, 0
    for r in range(REPEATS):
        a, b = paired_data(rng, n, shift)
        detected += stats.sign_flip_pvalue(b, a, n_perm=999, seed=r) < NOMINAL
        ci = stats.paired_bootstrap_ci(b, a, n_boot=1000, seed=r)
        covered += ci.low <= shift <= ci.high
        # the same data without pairing: a two-sample z test on the means sees the item variance too
        z = (b.mean() - a.mean()) / math.sqrt(a.var(ddof=1) / n + b.var(ddof=1) / n)
        detected_unpaired += abs(z) > 1.959963984540054
    low, high = binomial_band(0.8)
    assert low - 0.03 <= detected / REPEATS <= high, detected  # z-based n, t-like test: a shade under 80%
    assert binomial_band(0.95)[0] - 0.02 <= covered / REPEATS, covered
    assert detected_unpaired < 0.6 * detected  # why the report pairs items
