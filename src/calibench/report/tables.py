"""The study report's tables, as DataFrames computed from the long results frame (pure: no I/O, no plotting).

* spread across sets, per model x method x source (x n x seq_len) and task:
  mean, std, min, max and range of each accuracy task, of the average
  accuracy and of perplexity (std is the sample std, ddof=1: the spread of
  k draws of calibration data);
* across sources: the best-minus-worst gap of the mean (Williams & Aletras);
* the noise floor (largest change under harmless reruns) beside that spread;
* perplexity over dense per source and held-out text (the transfer matrix);
* activation statistics of each source's sets and the perplexity spread per
  model (the cross-model comparison);
* paired tables from per-item samples: source against source and compressed
  against dense, with bootstrap CIs, tests, Holm and sample sizes, and each
  source's mean with a hierarchical CI.

How sets and items are paired.  Sets of two sources are *not* paired: set 0
of wiki and set 0 of code are independent draws that merely share an index.
Items are paired: every cell of a (model, method, n, seq_len, task) is scored
on the same lm-eval documents or perplexity windows, known by the same item
id in the store's ``samples`` table (and so is the model's dense cell).  So
for each source an item's score is averaged over that source's sets (the
source's per-item mean), and two conditions are compared on the per-item
differences of those means.  Only items present in every cell compared are
used.  Every table has a ``model`` column: models are never pooled.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np

from calibench.core import stats
from calibench.study.adaptive import item_score  # the paired unit, as adaptive evaluation scores it

ACCURACY_METRIC = "acc"
PERPLEXITY_METRIC = "perplexity"
AVERAGE = "average"
PPL_PREFIX = "ppl:"
ACT_PREFIX = "act:"
ALPHA = 0.05  # Holm-adjusted p below this is marked significant

SPREAD_KEYS = ["model", "method", "source", "n", "seq_len", "task"]
GROUP = ["model", "method", "n", "seq_len", "task"]  # cells scored on the same items, sources apart
DENSE_FAMILY = ["model", "task"]  # Holm family of the comparisons against dense


def spread(values: Any) -> dict[str, float]:
    """Number of sets, mean, sample std (0 for one set), min, max and range of one condition's values."""
    array = np.asarray(values, dtype=float)
    return {
        "sets": int(array.size),
        "mean": float(array.mean()),
        "std": float(array.std(ddof=1)) if array.size > 1 else 0.0,
        "min": float(array.min()),
        "max": float(array.max()),
        "range": float(array.max() - array.min()),
    }


def spread_table(frame: Any, keys: list[str] = SPREAD_KEYS) -> Any:
    """One row per group of ``keys``: :func:`spread` of its values across sets."""
    import pandas as pd

    return pd.DataFrame(
        [{**dict(zip(keys, group)), **spread(part["value"])} for group, part in frame.groupby(keys, sort=True)]
    )


def accuracy_frame(frame: Any) -> Any:
    return frame[(frame.metric == ACCURACY_METRIC) & ~frame.task.str.startswith(PPL_PREFIX)]


def perplexity_frame(frame: Any) -> Any:
    return frame[frame.task.str.startswith(PPL_PREFIX) & (frame.metric == PERPLEXITY_METRIC)]


def accuracy_table(frame: Any) -> Any:
    """Per (model, method, source, n, seq_len) and task (plus 'average'): spread across sets."""
    import pandas as pd

    acc = accuracy_frame(frame)
    if acc.empty:
        return pd.DataFrame()
    per_cell_avg = acc.groupby(["key", "model", "method", "source", "n", "seq_len", "set_index"], as_index=False)[
        "value"
    ].mean()
    per_cell_avg["task"] = AVERAGE
    return spread_table(pd.concat([acc[per_cell_avg.columns], per_cell_avg], ignore_index=True))


def perplexity_table(frame: Any) -> Any:
    return spread_table(frame[frame.metric == PERPLEXITY_METRIC])


def gap_table(acc: Any) -> Any:
    """Across sources, per model x method x n x seq_len: best and worst mean average accuracy and the gap."""
    import pandas as pd

    if len(acc) == 0:
        return pd.DataFrame()
    avg = acc[(acc.task == AVERAGE) & (acc.method != "dense")]
    out = []
    for group, part in avg.groupby(["model", "method", "n", "seq_len"], sort=True):
        best, worst = part.loc[part["mean"].idxmax()], part.loc[part["mean"].idxmin()]
        out.append(
            {
                **dict(zip(["model", "method", "n", "seq_len"], group)),
                "best source": best.source,
                "best mean": best["mean"],
                "worst source": worst.source,
                "worst mean": worst["mean"],
                "gap": best["mean"] - worst["mean"],
                "mean std across sets": part["std"].mean(),
            }
        )
    return pd.DataFrame(out)


_GRID = ["model", "method", "n", "seq_len", "task"]


def noise_floor_table(frame: Any, acc: Any, ppl: Any) -> Any:
    """Per model x method x n x seq_len x task: how far reruns under harmless perturbations moved the result.

    ``noise floor`` is the largest |perturbed - original| over the rerun cells
    and perturbations (one column per perturbation too), set next to the mean
    std across sets and the best-minus-worst gap across sources of the same
    task.  Accuracy is compared per task and on the per-cell average.
    ``frame`` must hold the reruns (the full frame, not only the grid).
    """
    import pandas as pd

    keys = ["model", "method", "source", "set_index", "n", "seq_len", "task"]
    scored = accuracy_frame(frame)
    averages = scored.groupby(["key", *keys[:-1], "perturbation"], as_index=False)["value"].mean().assign(task=AVERAGE)
    values = pd.concat([frame[frame.metric.isin([ACCURACY_METRIC, PERPLEXITY_METRIC])], averages], ignore_index=True)
    base = values[values.perturbation == ""][[*keys, "value"]]
    moved = values[values.perturbation != ""][[*keys, "perturbation", "value"]]
    if moved.empty:
        return pd.DataFrame()
    paired = moved.merge(base, on=keys, suffixes=("", "_original"))
    paired["change"] = (paired["value"] - paired["value_original"]).abs()
    both = pd.concat([t for t in (acc, ppl) if len(t)], ignore_index=True)
    both = both[both.method != "dense"]
    out = []
    for group, part in paired.groupby(_GRID, sort=True):
        row = dict(zip(_GRID, group))
        same = both[(both[_GRID] == pd.Series(row)).all(axis=1)]
        row["reruns"] = int(len(part))
        for name, sub in part.groupby("perturbation"):
            row[f"max change ({name})"] = float(sub["change"].max())
        row["noise floor"] = float(part["change"].max())
        row["mean std across sets"] = float(same["std"].mean()) if len(same) else float("nan")
        row["source gap"] = float(same["mean"].max() - same["mean"].min()) if len(same) > 1 else float("nan")
        out.append(row)
    return pd.DataFrame(out)


def perplexity_increase_table(frame: Any) -> Any:
    """Per method x calibration source x held-out text: perplexity over dense, in %, mean and std across sets.

    With several held-out texts (languages, domains) this is the transfer
    matrix: does calibrating on a text protect that text, and what does it
    cost the others?  The increase is 100 * (ppl / dense ppl - 1), per set,
    then summarised across sets, so the std is the set-to-set spread.
    """
    import pandas as pd

    ppl = perplexity_frame(frame)
    dense = ppl[ppl.method == "dense"].groupby(["model", "task"])["value"].mean()
    rows = []
    compressed = ppl[ppl.method != "dense"]
    for (model, method, source, task), part in compressed.groupby(["model", "method", "source", "task"], sort=True):
        if (model, task) not in dense.index:
            continue
        increase = 100.0 * (part["value"].to_numpy() / dense[(model, task)] - 1.0)
        rows.append(
            {
                "model": model,
                "method": method,
                "source": source,
                "task": task,
                "dense": dense[(model, task)],
                "increase % mean": float(increase.mean()),
                "increase % std": float(increase.std(ddof=1)) if len(increase) > 1 else float("nan"),
                "sets": len(increase),
            }
        )
    return pd.DataFrame(rows)


def activation_table(frame: Any) -> Any:
    """Per model, source and activation metric (``act:`` tasks): mean, std, min and max across the source's sets.

    The same set gives the same statistics under every method (they are
    measured on the dense model before compression), so each set counts once.
    """
    import pandas as pd

    act = frame[frame.task.str.startswith(ACT_PREFIX)]
    if act.empty:
        return pd.DataFrame()
    per_set = act.drop_duplicates(["model", "source", "set_index", "n", "seq_len", "metric"])
    rows = []
    for (model, source, metric), part in per_set.groupby(["model", "source", "metric"], sort=True):
        values = part.value.to_numpy(dtype=float)
        rows.append(
            {
                "model": model,
                "source": source,
                "metric": metric,
                "sets": len(values),
                "mean": float(values.mean()),
                "std": float(values.std(ddof=1)) if len(values) > 1 else float("nan"),
                "min": float(values.min()),
                "max": float(values.max()),
            }
        )
    return pd.DataFrame(rows)


def perplexity_spread_table(frame: Any) -> Any:
    """Per model, method and perplexity task: how far perplexity moves across every calibration set.

    Min, max, range and range over dense: the number that says whether this
    model is sensitive to its calibration data at all.
    """
    import pandas as pd

    ppl = perplexity_frame(frame)
    dense = ppl[ppl.method == "dense"].groupby(["model", "task"])["value"].mean()
    rows = []
    for (model, method, task), part in ppl[ppl.method != "dense"].groupby(["model", "method", "task"], sort=True):
        values = part.value.to_numpy(dtype=float)
        base = dense.get((model, task), float("nan"))
        best, worst = part.loc[part.value.idxmin()], part.loc[part.value.idxmax()]
        rows.append(
            {
                "model": model,
                "method": method,
                "task": task,
                "dense": base,
                "sets": len(values),
                "min": float(values.min()),
                "max": float(values.max()),
                "range": float(np.ptp(values)),
                "range % of dense": 100.0 * float(np.ptp(values)) / base if base == base else float("nan"),
                "best source": best.source,
                "worst source": worst.source,
            }
        )
    return pd.DataFrame(rows)


# ----------------------------------------------------------------- paired tables


def quantity(task: str) -> str:
    return "log-ppl (window NLL)" if task.startswith(PPL_PREFIX) else "acc"


Samples = dict[tuple[str, str], dict[str, dict[str, Any]]]  # (cell key, task) -> item id -> item


def _scores(samples: Samples, key: str, task: str) -> dict[str, float]:
    items = samples.get((key, task), {})
    return {i: s for i, item in items.items() if (s := item_score(task, item)) is not None}


def _matrix(cells: list[dict[str, float]], common: list[str]) -> np.ndarray:
    return np.array([[scores[i] for i in common] for scores in cells])


def _shared(cells: list[dict[str, float]]) -> list[str]:
    """The item ids every cell has, sorted (resampling depends on the order, so it is fixed)."""
    return sorted(set.intersection(*(set(c) for c in cells))) if cells else []


def _compressed_cells(frame: Any) -> Any:
    return frame[(frame.method != "dense") & (frame.source != "-")][
        [*GROUP, "source", "set_index", "key"]
    ].drop_duplicates()


def _source_cells(part: Any, samples: Samples, task: str) -> dict[str, list[dict[str, float]]]:
    """``{source: [per-set item scores]}`` of one group's cells, sets in index order, unscored cells left out."""
    out: dict[str, list[dict[str, float]]] = {}
    for source, rows in part.sort_values("set_index").groupby("source", sort=True):
        scored = [s for s in (_scores(samples, key, task) for key in rows.key) if s]
        if scored:
            out[source] = scored
    return out


def source_matrices(frame: Any, samples: Samples) -> dict[tuple[Any, ...], dict[str, np.ndarray]]:
    """Per group: ``{source: sets x items array}`` over the items every cell of the group has."""
    out: dict[tuple[Any, ...], dict[str, np.ndarray]] = {}
    for group, part in _compressed_cells(frame).groupby(GROUP, sort=True):
        per_source = _source_cells(part, samples, group[-1])
        if len(per_source) < 2:
            continue
        common = _shared([c for cells in per_source.values() for c in cells])
        if len(common) >= 2:
            out[group] = {source: _matrix(cells, common) for source, cells in per_source.items()}
    return out


def dense_matrices(frame: Any, samples: Samples) -> dict[tuple[Any, ...], tuple[np.ndarray, np.ndarray]]:
    """Per (model, method, n, seq_len, task, source): ``(dense item scores, sets x items array)`` on shared items."""
    dense = frame[frame.method == "dense"].drop_duplicates(["model", "task"]).set_index(["model", "task"])["key"]
    out: dict[tuple[Any, ...], tuple[np.ndarray, np.ndarray]] = {}
    for group, part in _compressed_cells(frame).groupby(GROUP, sort=True):
        model, task = group[0], group[-1]
        base = _scores(samples, dense[(model, task)], task) if (model, task) in dense.index else {}
        if not base:
            continue
        for source, cells in _source_cells(part, samples, task).items():
            common = _shared([base, *cells])
            if len(common) >= 2:
                out[(*group, source)] = (np.array([base[i] for i in common]), _matrix(cells, common))
    return out


def _compare(a: np.ndarray, b: np.ndarray, task: str, names: tuple[str, str]) -> dict[str, Any]:
    """The comparison columns of per-item scores ``a`` against ``b`` (named ``names`` in the column labels)."""
    first, second = names
    result = stats.compare_paired(a, b)
    d = a - b
    return {
        f"difference ({first}-{second})": result.estimate,
        "CI low": result.low,
        "CI high": result.high,
        f"ppl ratio ({first}/{second})": math.exp(result.estimate) if task.startswith(PPL_PREFIX) else math.nan,
        "test": result.test,
        f"discordant ({first}/{second})": "-" if result.a_only is None else f"{result.a_only}/{result.b_only}",
        "p": result.p,
        "items needed": stats.items_needed(result.estimate, float(d.std(ddof=1)) if d.size > 1 else math.nan),
    }


def _holm_within(rows: list[dict[str, Any]], family: list[str]) -> None:
    """Add ``p (Holm)`` and ``significant`` to each row, Holm-adjusting within each family of rows."""
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(tuple(row[k] for k in family), []).append(row)
    for members in groups.values():
        for row, adjusted in zip(members, stats.holm([r["p"] for r in members])):
            row["p (Holm)"] = float(adjusted)
            row["significant"] = bool(adjusted < ALPHA)


def _set_std(matrix: np.ndarray) -> float:
    return float(matrix.mean(axis=1).std(ddof=1)) if len(matrix) > 1 else math.nan


SOURCES_SCOPE = "sources"  # sets random: a statement about the sources the sets were drawn from
THESE_SETS = "these sets"  # items only: a statement about the evaluated sets


def _source_test(a: np.ndarray, b: np.ndarray, row: dict[str, Any]) -> dict[str, Any]:
    """The decision columns of a source pair: set-aware where both sources have 2+ sets, items-only otherwise.

    The items-only p stays beside it as ``p (these sets)``; with a single set
    per source the pair can only be decided for these sets, and ``scope`` says so.
    """
    items_only = {"p (these sets)": row["p"]}
    if len(a) < 2 or len(b) < 2:
        return {**items_only, "scope": THESE_SETS}
    result = stats.source_difference(a, b)
    return {
        **items_only,
        "scope": SOURCES_SCOPE,
        "test": stats.SET_AWARE,
        "CI low": float(result.low),
        "CI high": float(result.high),
        "p": float(result.p),
        "df": float(result.df),
    }


PAIR_COLUMNS = [
    *GROUP,
    "quantity",
    "source A",
    "source B",
    "sets A",
    "sets B",
    "items",
    "mean A",
    "mean B",
    "difference (A-B)",
    "CI low",
    "CI high",
    "ppl ratio (A/B)",
    "scope",
    "test",
    "df",
    "discordant (A/B)",
    "p (these sets)",
    "p",
    "p (Holm)",
    "significant",
    "better",
    "items needed",
    "sets needed",
]
DENSE_COLUMNS = [
    "model",
    "method",
    "n",
    "seq_len",
    "task",
    "quantity",
    "source",
    "sets",
    "items",
    "dense",
    "compressed",
    "difference (compressed-dense)",
    "CI low",
    "CI high",
    "ppl ratio (compressed/dense)",
    "test",
    "discordant (compressed/dense)",
    "p",
    "p (Holm)",
    "significant",
    "items needed",
]


def paired_tables(matrices: dict[tuple[Any, ...], dict[str, np.ndarray]]) -> tuple[Any, Any]:
    """The source-pair table (Holm within each model x method x n x seq_len x task) and the per-source CI table.

    A pair is decided by the set-aware test (:func:`calibench.core.stats.source_difference`:
    sets and items random, scope "sources") when both sources have two or
    more sets; the items-only paired test on the per-item differences of the
    set-averaged scores (A minus B) is kept as ``p (these sets)``, and is the
    decision only where a source has a single set (scope "these sets").  The per-source CI is the
    hierarchical (sets, then items) bootstrap, one item draw shared by all
    sets (see :func:`calibench.core.stats.hierarchical_bootstrap_ci`).
    """
    import pandas as pd

    pair_rows, source_rows = [], []
    for group, sources in matrices.items():
        task = group[-1]
        base = {**dict(zip(GROUP, group)), "quantity": quantity(task)}
        for source, matrix in sources.items():
            sets, items = matrix.shape
            std = _set_std(matrix)
            ci = stats.hierarchical_bootstrap_ci(matrix, shared_items=True)
            source_rows.append(
                {
                    **base,
                    "source": source,
                    "sets": sets,
                    "items": items,
                    "mean": ci.estimate,
                    "std across sets": std,
                    "CI low": ci.low,
                    "CI high": ci.high,
                    "naive half-width (1.96 std/sqrt(sets))": 1.96 * std / math.sqrt(sets),
                }
            )
        for a, b in itertools.combinations(sorted(sources), 2):
            per_item_a, per_item_b = sources[a].mean(axis=0), sources[b].mean(axis=0)
            row = {
                **base,
                "source A": a,
                "source B": b,
                "sets A": len(sources[a]),
                "sets B": len(sources[b]),
                "items": per_item_a.size,
                "mean A": float(per_item_a.mean()),
                "mean B": float(per_item_b.mean()),
                **_compare(per_item_a, per_item_b, task, ("A", "B")),
            }
            row.update(_source_test(sources[a], sources[b], row))
            difference = row["difference (A-B)"]
            better = a if (difference < 0) == task.startswith(PPL_PREFIX) else b
            row["better"] = better if difference != 0 else "-"
            row["sets needed"] = stats.sets_needed(difference, _set_std(sources[a]), _set_std(sources[b]))
            pair_rows.append(row)
    _holm_within(pair_rows, GROUP)
    return pd.DataFrame(pair_rows, columns=PAIR_COLUMNS), pd.DataFrame(source_rows)


def dense_table(matrices: dict[tuple[Any, ...], tuple[np.ndarray, np.ndarray]]) -> Any:
    """Each model x method x source x task against the model's dense cell, Holm within each model x task.

    The compressed per-item score is the source's mean over its sets, the
    dense one the dense cell's; the difference is compressed minus dense
    (negative accuracy, positive log-perplexity: the damage of compression).
    A family is every comparison on one model's task, since they answer one
    question (where did compressing this model measurably change this task).
    """
    import pandas as pd

    rows = []
    for (*group, source), (dense, matrix) in matrices.items():
        task = group[-1]
        compressed = matrix.mean(axis=0)
        rows.append(
            {
                **dict(zip(GROUP, group)),
                "quantity": quantity(task),
                "source": source,
                "sets": len(matrix),
                "items": dense.size,
                "dense": float(dense.mean()),
                "compressed": float(compressed.mean()),
                **_compare(compressed, dense, task, ("compressed", "dense")),
            }
        )
    _holm_within(rows, DENSE_FAMILY)
    return pd.DataFrame(rows, columns=DENSE_COLUMNS)
