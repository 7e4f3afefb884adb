"""ROC-AUC and split-half balanced accuracy against sklearn, their CIs, determinism and degenerate inputs."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score, roc_auc_score

from calibench.core.errors import CalibenchError
from calibench.summarize.judge_stats import (
    _halves,
    auc_with_ci,
    balanced_accuracy_with_ci,
    best_threshold,
    roc_auc,
    split_half_balanced_accuracy,
)


def _data(seed: int, n: int = 60, ties: bool = True) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    y[:2] = [0, 1]
    s = rng.normal(size=n) + y
    return (np.round(s, 1) if ties else s), y


@pytest.mark.parametrize("seed", range(5))
def test_auc_matches_sklearn_with_ties(seed):
    s, y = _data(seed)
    assert len(np.unique(s)) < len(s)  # ties present
    assert roc_auc(s, y) == pytest.approx(roc_auc_score(y, s), abs=1e-12)


def test_auc_all_tied_is_one_half_and_perfect_is_one():
    assert roc_auc([0.3, 0.3, 0.3, 0.3], [0, 1, 0, 1]) == 0.5
    assert roc_auc([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1]) == 1.0
    assert roc_auc([0.1, 0.2, 0.8, 0.9], [1, 1, 0, 0]) == 0.0  # higher = consistent: a reversed score is 0


@pytest.mark.parametrize("seed", range(3))
def test_split_half_balanced_accuracy_matches_sklearn_on_the_held_half(seed):
    s, y = _data(seed)
    fit, held = _halves(y, np.random.default_rng(seed))
    assert set(fit).isdisjoint(held) and len(fit) + len(held) == len(y)
    for label in (0, 1):  # stratified: each class split in half
        assert abs((y[fit] == label).sum() - (y[held] == label).sum()) <= 1
    t = best_threshold(s[fit], y[fit])
    # the fitted threshold is the best on the fit half over every observed cut (brute force via sklearn)
    best = max(balanced_accuracy_score(y[fit], (s[fit] >= c).astype(int)) for c in [*np.unique(s[fit]), np.inf])
    assert balanced_accuracy_score(y[fit], (s[fit] >= t).astype(int)) == pytest.approx(best)
    expected = balanced_accuracy_score(y[held], (s[held] >= t).astype(int))
    assert split_half_balanced_accuracy(s, y, seed) == pytest.approx(expected)


def test_cis_hold_the_estimate_and_are_deterministic():
    s, y = _data(7, n=80)
    a1, a2 = auc_with_ci(s, y, 300, seed=3), auc_with_ci(s, y, 300, seed=3)
    assert a1 == a2
    assert a1.low <= a1.value <= a1.high and a1.high - a1.low > 0.01
    b1, b2 = balanced_accuracy_with_ci(s, y, 300, seed=3), balanced_accuracy_with_ci(s, y, 300, seed=3)
    assert b1 == b2 and b1.low <= b1.high and 0 <= b1.low and b1.high <= 1
    assert auc_with_ci(s, y, 300, seed=4) != a1  # the seed matters


def test_separable_scores_give_tight_perfect_intervals():
    s = np.r_[np.linspace(0, 1, 20), np.linspace(2, 3, 20)]
    y = np.r_[np.zeros(20, int), np.ones(20, int)]
    est = auc_with_ci(s, y, 200)
    assert (est.value, est.low, est.high) == (1.0, 1.0, 1.0)
    assert balanced_accuracy_with_ci(s, y, 200).value >= 0.9  # the cut is the lowest consistent fit score


@pytest.mark.parametrize(
    ("scores", "labels", "match"),
    [
        ([0.1, 0.2, 0.3], [1, 1, 1], "all 3 labels are consistent"),
        ([0.1, 0.2], [0, 0], "all 2 labels are inconsistent"),
        ([0.1, 0.2], [0, 2], "labels must be 0"),
        ([0.1, float("nan")], [0, 1], "NaN"),
        ([0.1, 0.2, 0.3], [0, 1], "one length"),
    ],
)
def test_degenerate_inputs_are_one_clear_error(scores, labels, match):
    with pytest.raises(CalibenchError, match=match):
        roc_auc(scores, labels)


def test_split_half_needs_two_rows_per_class():
    with pytest.raises(CalibenchError, match="at least 2 rows of each label"):
        split_half_balanced_accuracy([0.1, 0.2, 0.3], [0, 0, 1])
