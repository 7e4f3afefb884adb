"""How well a judge's scores separate labelled summaries: ROC-AUC and split-half balanced accuracy, with CIs.

The convention throughout: label 1 means the summary is consistent with its document, label 0 that it is not,
and a higher score is read as "more consistent".  A judge that runs the other way (a novel n-gram share, say)
shows an AUC below 0.5 and a balanced accuracy near chance.

* :func:`roc_auc`: the probability that a random consistent row scores above a random inconsistent one, ties
  counting one half (the Mann-Whitney statistic over average ranks).
* :func:`split_half_balanced_accuracy`: the rows are split in two halves, stratified by label, with a seeded
  permutation; the threshold that maximizes balanced accuracy on the first half (predict consistent when
  score >= threshold) is applied to the second half, and that half's balanced accuracy is the result.  Fitting
  and scoring on different rows keeps the number honest: the best threshold on the same rows is optimistic.
* :func:`bootstrap_ci`: percentile 95% intervals over rows resampled with replacement *within each label*
  (so every replicate has both classes).  For balanced accuracy each replicate is split anew (its own seeded
  split of the resampled rows), so the interval holds the split's chance as well as the sample's.

Everything is seeded: the same rows and seed give the same numbers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from calibench.core.errors import CalibenchError

CI_LEVEL = 0.95


@dataclass(frozen=True)
class Estimate:
    """A statistic on the rows and its percentile bootstrap interval."""

    value: float
    low: float
    high: float


def _arrays(scores: Sequence[float], labels: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels)
    if s.shape != y.shape or s.ndim != 1:
        raise CalibenchError(f"scores and labels must be two lists of one length, got {s.shape} and {y.shape}")
    if not np.isin(y, (0, 1)).all():
        raise CalibenchError("labels must be 0 (inconsistent) or 1 (consistent)")
    if np.isnan(s).any():
        raise CalibenchError("scores hold NaN: drop the rows a judge cannot score first")
    y = y.astype(np.int64)
    n_pos = int(y.sum())
    if n_pos == 0 or n_pos == len(y):
        only = "consistent (1)" if n_pos else "inconsistent (0)"
        raise CalibenchError(f"all {len(y)} labels are {only}: a judge needs both classes to be validated")
    return s, y


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n, tied values sharing the mean of their ranks."""
    order = np.argsort(values, kind="mergesort")
    sorted_vals = values[order]
    ranks = np.empty(len(values), dtype=np.float64)
    start = 0
    while start < len(values):
        stop = start + 1
        while stop < len(values) and sorted_vals[stop] == sorted_vals[start]:
            stop += 1
        ranks[order[start:stop]] = (start + 1 + stop) / 2.0  # mean of ranks start+1 .. stop
        start = stop
    return ranks


def _auc(s: np.ndarray, y: np.ndarray) -> float:
    ranks = _average_ranks(s)
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    return float((ranks[y == 1].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def roc_auc(scores: Sequence[float], labels: Sequence[int]) -> float:
    """ROC-AUC of ``scores`` for label 1 (higher = consistent), ties counting one half."""
    return _auc(*_arrays(scores, labels))


def _balanced_accuracy(predicted: np.ndarray, y: np.ndarray) -> float:
    return float((predicted[y == 1].mean() + (1 - predicted[y == 0]).mean()) / 2.0)


def best_threshold(s: np.ndarray, y: np.ndarray) -> float:
    """The threshold t that maximizes balanced accuracy of ``score >= t`` on these rows (the lowest such t
    among the observed scores, or +inf when predicting all inconsistent is best)."""
    candidates = np.append(np.unique(s), np.inf)
    accs = [_balanced_accuracy((s >= t).astype(np.int64), y) for t in candidates]
    return float(candidates[int(np.argmax(accs))])


def _halves(y: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A stratified split of row indices: per label a permutation, its first half fits, the rest is scored."""
    fit, held = [], []
    for label in (0, 1):
        idx = rng.permutation(np.flatnonzero(y == label))
        cut = len(idx) // 2
        fit.append(idx[:cut])
        held.append(idx[cut:])
    return np.concatenate(fit), np.concatenate(held)


def _split_ba(s: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> float:
    fit, held = _halves(y, rng)
    if len(set(y[fit].tolist())) < 2:  # a class of one row: nothing to fit on, use the midpoint rule
        threshold = float(np.median(s))
    else:
        threshold = best_threshold(s[fit], y[fit])
    return _balanced_accuracy((s[held] >= threshold).astype(np.int64), y[held])


def split_half_balanced_accuracy(scores: Sequence[float], labels: Sequence[int], seed: int = 0) -> float:
    """Balanced accuracy on one stratified half with the threshold fitted on the other (see the module)."""
    s, y = _arrays(scores, labels)
    if min(int(y.sum()), len(y) - int(y.sum())) < 2:
        raise CalibenchError("split-half balanced accuracy needs at least 2 rows of each label")
    return _split_ba(s, y, np.random.default_rng(seed))


def _bootstrap(
    s: np.ndarray, y: np.ndarray, stat: Callable[[np.ndarray, np.ndarray, np.random.Generator], float],
    n_boot: int, seed: int,
) -> tuple[float, float]:  # fmt: skip
    rng = np.random.default_rng(seed)
    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    values = np.empty(n_boot, dtype=np.float64)
    for b in range(n_boot):
        idx = np.concatenate([rng.choice(neg, len(neg)), rng.choice(pos, len(pos))])
        values[b] = stat(s[idx], y[idx], rng)
    tail = (1 - CI_LEVEL) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


def auc_with_ci(scores: Sequence[float], labels: Sequence[int], n_boot: int = 1000, seed: int = 0) -> Estimate:
    """ROC-AUC and its percentile bootstrap 95% CI (rows resampled within each label)."""
    s, y = _arrays(scores, labels)
    if n_boot < 1:
        raise CalibenchError(f"bootstrap replicates must be at least 1, got {n_boot}")
    low, high = _bootstrap(s, y, lambda a, b, _rng: _auc(a, b), n_boot, seed)
    return Estimate(_auc(s, y), low, high)


def balanced_accuracy_with_ci(
    scores: Sequence[float], labels: Sequence[int], n_boot: int = 1000, seed: int = 0
) -> Estimate:
    """Split-half balanced accuracy (split seeded by ``seed``) and its bootstrap 95% CI, each replicate
    resampled within each label and split anew."""
    value = split_half_balanced_accuracy(scores, labels, seed)
    s, y = _arrays(scores, labels)
    if n_boot < 1:
        raise CalibenchError(f"bootstrap replicates must be at least 1, got {n_boot}")
    low, high = _bootstrap(s, y, _split_ba, n_boot, seed + 1)
    return Estimate(value, low, high)
