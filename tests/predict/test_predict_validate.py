"""Spearman, its bootstrap CI and the held-out validation, against scipy and naive implementations."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from calibench.predict.validate import (
    bootstrap_spearman_ci,
    choose,
    folds_by,
    rankdata,
    spearman,
    validate,
)


def test_rankdata_and_spearman_match_scipy_with_ties():
    rng = np.random.default_rng(1)
    for trial in range(30):
        n = int(rng.integers(3, 25))
        x = rng.integers(0, 5, n).astype(float) if trial % 2 else rng.normal(size=n)
        y = x * rng.normal() + rng.normal(size=n)
        np.testing.assert_allclose(rankdata(x), stats.rankdata(x))
        expected = stats.spearmanr(x, y).statistic
        if np.isnan(expected):
            assert math.isnan(spearman(x, y))
        else:
            assert spearman(x, y) == pytest.approx(expected, abs=1e-12)


def test_spearman_is_nan_for_too_few_or_constant_and_drops_non_finite_pairs():
    assert math.isnan(spearman([1, 2], [3, 4]))
    assert math.isnan(spearman([1, 1, 1, 1], [1, 2, 3, 4]))
    x, y = [1, 2, np.nan, 4, 5], [2, 1, 7, 4, 3]
    assert spearman(x, y) == pytest.approx(stats.spearmanr([1, 2, 4, 5], [2, 1, 4, 3]).statistic)


def naive_bootstrap(x, y, n_boot, seed, level=0.95):
    """One replicate per row of the same generator draw, scipy's Spearman, NaN replicates dropped."""
    rng = np.random.default_rng(seed)
    index = rng.integers(0, len(x), size=(n_boot, len(x)))
    rhos = []
    for row in index:
        xs, ys = x[row], y[row]
        if np.unique(xs).size < 2 or np.unique(ys).size < 2:
            continue
        rhos.append(stats.spearmanr(xs, ys).statistic)
    alpha = (1 - level) / 2
    return np.quantile(rhos, [alpha, 1 - alpha])


def test_bootstrap_ci_matches_a_naive_loop_exactly():
    rng = np.random.default_rng(4)
    x = rng.normal(size=15)
    y = 0.6 * x + rng.normal(size=15)
    ci = bootstrap_spearman_ci(x, y, n_boot=500, seed=3)
    low, high = naive_bootstrap(x, y, 500, 3)
    assert ci.low == pytest.approx(low, abs=1e-12) and ci.high == pytest.approx(high, abs=1e-12)
    assert ci.estimate == pytest.approx(stats.spearmanr(x, y).statistic)
    assert ci.low <= ci.estimate <= ci.high


def test_bootstrap_ci_covers_the_truth_at_about_the_nominal_rate():
    """Independent x, y (true rho 0): the 90% CI holds 0 in most repeats, and a strong relation's CI excludes 0."""
    rng = np.random.default_rng(0)
    covered = 0
    for _ in range(60):
        x, y = rng.normal(size=30), rng.normal(size=30)
        ci = bootstrap_spearman_ci(x, y, n_boot=300, seed=int(rng.integers(1e9)), level=0.90)
        covered += ci.low <= 0 <= ci.high
    assert covered >= 46  # 90% nominal; the percentile bootstrap of rho is roughly calibrated at n=30
    x = rng.normal(size=30)
    strong = bootstrap_spearman_ci(x, x + 0.3 * rng.normal(size=30), n_boot=300)
    assert strong.low > 0.5


def test_folds_hold_out_each_label_once_and_never_overlap():
    labels = [0, 1, 2, 0, 1, 2, 0, 1, 2, 0]
    folds = folds_by(labels)
    assert [f.label for f in folds] == [0, 1, 2]
    held = np.concatenate([f.held_out for f in folds])
    assert sorted(held.tolist()) == list(range(len(labels)))
    for fold in folds:
        assert not set(fold.selection) & set(fold.held_out)
        assert set(fold.selection) | set(fold.held_out) == set(range(len(labels)))
        assert all(labels[i] == fold.label for i in fold.held_out)
    assert folds_by([3, 3, 3]) == []


def test_choose_uses_the_fixed_sign_or_learns_it():
    y = np.arange(6.0)
    signals = {"down": -y, "up_noisy": y + np.array([0, 3, -1, 2, 0, 1.0])}
    assert choose(signals, y, {"down": -1, "up_noisy": 1}).signal == "down"  # oriented rho 1
    learned = choose({"down": -y}, y, {})
    assert learned.sign == -1 and learned.selection_rho == pytest.approx(1.0)
    assert choose({"down": -y}, y, {"down": 1}).selection_rho == pytest.approx(-1.0)  # a wrong fixed sign is kept


def test_a_signal_perfect_on_selection_cells_gets_its_honest_held_out_score():
    """Fold 0 holds out set 0; 'cheat' is perfect on sets 1-2 and random on set 0, 'honest' is decent everywhere."""
    rng = np.random.default_rng(7)
    sources, sets = 8, 3
    labels = np.tile(np.arange(sets), sources)
    y = rng.normal(size=labels.size)
    cheat = y.copy()
    random_part = rng.normal(size=(labels == 0).sum())
    cheat[labels == 0] = random_part
    honest = y + 0.8 * rng.normal(size=y.size)
    result = validate({"cheat": cheat, "honest": honest}, y, labels, {}, n_boot=200)
    fold0 = result.folds[0]
    assert fold0.label == 0 and fold0.chosen.signal == "cheat"
    assert fold0.chosen.selection_rho == pytest.approx(1.0)
    # its held-out score is exactly the rank correlation of its random part with the held-out outcomes
    assert fold0.held_out_rho == pytest.approx(stats.spearmanr(random_part, y[labels == 0]).statistic)
    assert fold0.held_out_rho < 0.9
    # the procedure's estimate is the mean over folds of what each fold chose, scored on its own held-out cells
    assert result.procedure_held_out == pytest.approx(np.mean([f.held_out_rho for f in result.folds]))


def test_selection_never_sees_held_out_cells():
    """Scrambling every signal on a fold's held-out cells changes no choice of that fold."""
    rng = np.random.default_rng(11)
    labels = np.tile(np.arange(3), 6)
    y = rng.normal(size=labels.size)
    signals = {f"s{i}": y * (i / 4) + rng.normal(size=y.size) for i in range(5)}
    base = validate(signals, y, labels, {}, n_boot=50)
    for fold_index, fold in enumerate(folds_by(labels)):
        scrambled = {name: v.copy() for name, v in signals.items()}
        for v in scrambled.values():
            v[fold.held_out] = rng.normal(size=fold.held_out.size) * 100
        again = validate(scrambled, y, labels, {}, n_boot=50)
        assert again.folds[fold_index].chosen == base.folds[fold_index].chosen
        for name in signals:  # selection scores are untouched too
            assert again.folds[fold_index].per_signal[name][1] == base.folds[fold_index].per_signal[name][1]


def test_validation_summary_matches_per_fold_numbers():
    rng = np.random.default_rng(2)
    labels = np.tile(np.arange(3), 5)
    y = rng.normal(size=15)
    x = -y + 0.5 * rng.normal(size=15)
    result = validate({"x": x}, y, labels, {"x": -1}, n_boot=100)
    summary = result.signals["x"]
    assert summary.all_cells.estimate == pytest.approx(stats.spearmanr(x, y).statistic)
    for fold in result.folds:
        sel, held = fold.per_signal["x"][1], fold.per_signal["x"][2]
        mask = labels == fold.label
        assert sel == pytest.approx(-stats.spearmanr(x[~mask], y[~mask]).statistic)
        assert held == pytest.approx(-stats.spearmanr(x[mask], y[mask]).statistic)
    assert summary.held_out_rho == pytest.approx(np.mean([f.per_signal["x"][2] for f in result.folds]))
    assert summary.chosen_in == 3
