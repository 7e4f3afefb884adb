"""Does a cheap signal predict a calibration set's full result?  Rank correlation and honest validation (pure numpy).

The unit is a *cell*: one calibration set compressed with one method on one
model, with its full result (the outcome) and the signal values computed for
the same set.  Within a model x method, cells differ only by calibration set,
so the Spearman correlation of a signal with the outcome across cells says
how well the signal ranks sets.

* :func:`spearman`: Pearson correlation of the average ranks (ties share the
  mean of their ranks), the textbook definition (and scipy's).
* :func:`bootstrap_spearman_ci`: percentile bootstrap over cells.  Resampled
  cells repeat, so replicates have ties; they are ranked with average ranks
  as well.  A replicate whose ranks are constant on either side has no
  correlation and is left out; when more than half are, the interval is NaN.
* :func:`validate`: choosing the best of many signals on the same cells that
  then measure it inflates its correlation (a winner's curse).  So cells are
  split into folds (by default one fold per set index: set i of every source
  is held out while sets != i select).  In each fold the signal *and its
  sign* are chosen on the selection cells alone (:func:`choose` receives only
  those), and the chosen signal is scored on the held-out cells only.  The
  honest estimate is the mean of those held-out correlations over folds.

Orientation.  Outcomes are given so that higher is better (``-log ppl``,
accuracy).  A signal's sign says whether higher values predict better
results (+1), worse (-1), or is unknown (0) and learned on the selection
cells of each fold: the sign of the selection Spearman.  "Oriented" values
are ``sign * rho``: positive means the signal, used with that sign, ranks
sets the right way.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from calibench.core.stats import Interval

SEED = 0
BOOTSTRAPS = 2000
MIN_CELLS = 3  # fewer points have no meaningful rank correlation
_CHUNK_ELEMENTS = 4_000_000  # bounds the (replicates x n x n) comparisons of one vectorised step


def rankdata(values: Any) -> np.ndarray:
    """Average ranks (1-based) along the last axis: tied values share the mean of the ranks they span.

    Computed as ``#(v_j < v_i) + (#(v_j == v_i) + 1) / 2``, which works row by
    row on a matrix of bootstrap replicates at once.
    """
    x = np.asarray(values, dtype=float)
    less = (x[..., None, :] < x[..., :, None]).sum(axis=-1)
    equal = (x[..., None, :] == x[..., :, None]).sum(axis=-1)
    return less + (equal + 1) / 2.0


def _pearson_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson correlation of each row pair; NaN where a row is constant."""
    a = a - a.mean(axis=-1, keepdims=True)
    b = b - b.mean(axis=-1, keepdims=True)
    denominator = np.sqrt((a * a).sum(axis=-1) * (b * b).sum(axis=-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = (a * b).sum(axis=-1) / denominator
    return np.where(denominator > 1e-12, np.clip(rho, -1.0, 1.0), np.nan)


def finite_pairs(x: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
    """The pairs where both values are finite (a signal that failed on a cell drops that cell)."""
    x, y = np.asarray(x, dtype=float).ravel(), np.asarray(y, dtype=float).ravel()
    if x.shape != y.shape:
        raise ValueError(f"signal and outcome need one value per cell: {x.size} against {y.size}")
    keep = np.isfinite(x) & np.isfinite(y)
    return x[keep], y[keep]


def spearman(x: Any, y: Any) -> float:
    """Spearman's rank correlation over the finite pairs; NaN below :data:`MIN_CELLS` or for constant ranks."""
    x, y = finite_pairs(x, y)
    if x.size < MIN_CELLS:
        return math.nan
    return float(_pearson_rows(rankdata(x)[None], rankdata(y)[None])[0])


def bootstrap_spearman_ci(
    x: Any, y: Any, *, level: float = 0.95, n_boot: int = BOOTSTRAPS, seed: int = SEED
) -> Interval:
    """Percentile bootstrap CI of Spearman's rho, resampling cells (pairs) with replacement.

    The replicate indices are drawn as one ``rng.integers(0, n, size=(n_boot, n))``
    (consumed in row chunks), so a loop drawing one replicate per row of the
    same generator reproduces the interval exactly.
    """
    x, y = finite_pairs(x, y)
    n = x.size
    estimate = spearman(x, y)
    if n < MIN_CELLS or not math.isfinite(estimate):
        return Interval(estimate, math.nan, math.nan)
    rng = np.random.default_rng(seed)
    index = rng.integers(0, n, size=(n_boot, n))
    rows = max(1, _CHUNK_ELEMENTS // (n * n))
    rhos = np.concatenate(
        [
            _pearson_rows(rankdata(x[index[i : i + rows]]), rankdata(y[index[i : i + rows]]))
            for i in range(0, n_boot, rows)
        ]
    )
    valid = rhos[np.isfinite(rhos)]
    if valid.size * 2 < n_boot:
        return Interval(estimate, math.nan, math.nan)
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(valid, [alpha, 1.0 - alpha])
    return Interval(estimate, float(low), float(high))


# ----------------------------------------------------------------- held-out validation


@dataclass(frozen=True)
class Fold:
    """One split of the cells: ``selection`` chooses, ``held_out`` scores; the two are disjoint."""

    label: Any
    selection: np.ndarray
    held_out: np.ndarray


def folds_by(labels: Sequence[Any]) -> list[Fold]:
    """One fold per distinct label: its cells are held out, all others select (e.g. labels = set indices)."""
    labels_array = np.asarray(list(labels), dtype=object)
    distinct = sorted(set(labels_array.tolist()), key=lambda v: (str(type(v)), v))
    if len(distinct) < 2:
        return []
    cells = np.arange(labels_array.size)
    return [Fold(value, cells[labels_array != value], cells[labels_array == value]) for value in distinct]


def orient(rho: float, fixed_sign: int) -> tuple[int, float]:
    """(sign, sign * rho): the fixed sign, or the sign of ``rho`` when the signal's direction is unknown."""
    sign = fixed_sign if fixed_sign in (-1, 1) else (-1 if rho < 0 else 1)
    return sign, sign * rho if math.isfinite(rho) else math.nan


@dataclass(frozen=True)
class Choice:
    """The signal a selection split picked, the sign it is used with, and its oriented selection rho."""

    signal: str
    sign: int
    selection_rho: float


def choose(signals: Mapping[str, Any], outcome: Any, signs: Mapping[str, int]) -> Choice | None:
    """The signal whose oriented Spearman with ``outcome`` is highest (ties: the first name in sorted order).

    Callers pass the selection cells only; nothing here can see held-out cells.
    """
    best: Choice | None = None
    for name in sorted(signals):
        sign, oriented = orient(spearman(signals[name], outcome), signs.get(name, 0))
        if math.isfinite(oriented) and (best is None or oriented > best.selection_rho):
            best = Choice(name, sign, oriented)
    return best


@dataclass(frozen=True)
class FoldResult:
    label: Any
    selection_cells: int
    held_out_cells: int
    chosen: Choice | None
    held_out_rho: float  # the chosen signal's oriented rho on the held-out cells
    per_signal: dict[str, tuple[int, float, float]]  # name -> (sign, oriented selection rho, oriented held-out rho)


@dataclass(frozen=True)
class SignalValidation:
    signal: str
    fixed_sign: int
    cells: int
    all_cells: Interval  # raw (unoriented) Spearman over every cell, with its bootstrap CI
    selection_rho: float  # mean over folds of the oriented selection rho
    held_out_rho: float  # mean over folds of the oriented held-out rho (sign learned on selection when unknown)
    chosen_in: int  # folds whose selection picked this signal


@dataclass(frozen=True)
class Validation:
    folds: list[FoldResult]
    signals: dict[str, SignalValidation]
    procedure_held_out: float  # mean over folds of the held-out rho of whatever each fold chose
    chosen_all: Choice | None  # the choice on all cells (what to use from now on; its rho is not a validation)
    notes: list[str] = field(default_factory=list)


def _nanmean(values: Sequence[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return float(np.mean(finite)) if finite else math.nan


def validate(
    signals: Mapping[str, Any],
    outcome: Any,
    labels: Sequence[Any],
    signs: Mapping[str, int] | None = None,
    *,
    n_boot: int = BOOTSTRAPS,
    seed: int = SEED,
) -> Validation:
    """Every signal's Spearman with ``outcome`` over all cells (with CI), and its held-out score by fold.

    ``signals`` maps names to one value per cell, ``outcome`` holds one value
    per cell (higher is better) and ``labels`` the fold label of each cell.
    """
    signs = dict(signs or {})
    y = np.asarray(outcome, dtype=float)
    values = {name: np.asarray(v, dtype=float) for name, v in signals.items()}
    for name, v in values.items():
        if v.shape != y.shape:
            raise ValueError(f"signal {name} has {v.size} values for {y.size} cells")
    folds = folds_by(labels)
    notes = [] if folds else ["every cell has the same fold label (one set per source?): no held-out validation"]
    results: list[FoldResult] = []
    for fold in folds:
        chosen = choose({n: v[fold.selection] for n, v in values.items()}, y[fold.selection], signs)
        per_signal = {}
        for name, v in values.items():
            sign, selection = orient(spearman(v[fold.selection], y[fold.selection]), signs.get(name, 0))
            per_signal[name] = (sign, selection, sign * spearman(v[fold.held_out], y[fold.held_out]))
        held = per_signal[chosen.signal][2] if chosen is not None else math.nan
        results.append(
            FoldResult(fold.label, int(fold.selection.size), int(fold.held_out.size), chosen, held, per_signal)
        )
    summary = {}
    for name, v in values.items():
        summary[name] = SignalValidation(
            signal=name,
            fixed_sign=signs.get(name, 0),
            cells=int(finite_pairs(v, y)[0].size),
            all_cells=bootstrap_spearman_ci(v, y, n_boot=n_boot, seed=seed),
            selection_rho=_nanmean([r.per_signal[name][1] for r in results]),
            held_out_rho=_nanmean([r.per_signal[name][2] for r in results]),
            chosen_in=sum(1 for r in results if r.chosen is not None and r.chosen.signal == name),
        )
    return Validation(results, summary, _nanmean([r.held_out_rho for r in results]), choose(values, y, signs), notes)
