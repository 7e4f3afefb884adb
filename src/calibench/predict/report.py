"""The study report's predictor sections: which cheap signals predict the full results, validated on held-out cells.

For each model x method x outcome, the cells are the compressed grid cells
(one per calibration set).  The outcomes are oriented so that higher is
better: ``-log ppl`` for every perplexity task (the log is what the paired
statistics use as well), and the average accuracy over the accuracy tasks.
Per signal the table gives

* its Spearman correlation with the outcome over all cells, raw (negative
  for a signal where lower predicts better), with a bootstrap 95% CI over cells;
* the held-out validation of :func:`calibench.predict.validate.validate`:
  one fold per set index (set i of every source held out, the other sets
  select), the sign learned on the selection cells where it is not fixed,
  and the mean over folds of the oriented Spearman on the selection cells and
  on the held-out cells;
* how many folds' selection picked it.

A second table follows the selection procedure itself: on each fold the best
signal of the selection cells, and its Spearman on that fold's held-out
cells: the honest estimate of how well "the best signal" predicts.  Every
table and plot is per model; the plot shows, per method and outcome, the
all-cells correlation with its CI beside the held-out one.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from calibench.core.plots import model_paths, pyplot, save_figure, slug, styled
from calibench.predict.signals import SIGNALS
from calibench.predict.study_signals import cell_signals
from calibench.predict.validate import Validation, validate
from calibench.report.plots import short
from calibench.report.render import Section

SIGNALS_HEADING = (
    "Which signals predict: Spearman of each cheap signal with the full result across calibration sets "
    "(all cells with a bootstrap 95% CI; selection and held-out folds by set index)"
)
SELECTION_HEADING = (
    "Which signals predict, selected honestly: the best signal of each selection split, scored on "
    "its held-out cells only"
)
AVERAGE_ACC = "average acc"


def outcome_name(task: str) -> str:
    return f"{task} (-log ppl)"


def cell_outcomes(frame: Any) -> Any:
    """Per compressed grid cell: each perplexity task as ``-log ppl`` and the average accuracy (higher is better)."""
    import pandas as pd

    columns = ["key", "model", "method", "outcome", "value"]
    cells = frame[(frame.method != "dense") & (frame.source != "-")]
    if "perturbation" in cells.columns:
        cells = cells[cells.perturbation == ""]
    ppl = cells[cells.task.str.startswith("ppl:") & (cells.metric == "perplexity") & (cells.value > 0)]
    out = [
        pd.DataFrame(
            {
                "key": ppl.key,
                "model": ppl.model,
                "method": ppl.method,
                "outcome": [outcome_name(t) for t in ppl.task],
                "value": -np.log(ppl.value.astype(float)),
            }
        )
    ]
    scored = cells[(cells.metric == "acc") & ~cells.task.str.contains(":")]
    if len(scored):
        average = scored.groupby(["key", "model", "method"], as_index=False)["value"].mean()
        out.append(average.assign(outcome=AVERAGE_ACC)[columns])
    return pd.concat(out, ignore_index=True)[columns] if out else pd.DataFrame(columns=columns)


def validations(outcomes: Any, signals: Any) -> dict[tuple[str, str, str], tuple[Validation, int]]:
    """Per (model, method, outcome): the validation of every signal over its cells, and the number of cells."""
    found: dict[tuple[str, str, str], tuple[Validation, int]] = {}
    if outcomes.empty or signals.empty:
        return found
    wide = signals.pivot_table(index="key", columns="signal", values="value", aggfunc="first")
    set_index = signals.drop_duplicates("key").set_index("key")["set_index"]
    for (model, method, outcome), part in outcomes.groupby(["model", "method", "outcome"], sort=True):
        keys = [k for k in part.key if k in wide.index]
        if len(keys) < 3:
            continue
        values = part.set_index("key").loc[keys, "value"].to_numpy(dtype=float)
        matrix = {name: wide.loc[keys, name].to_numpy(dtype=float) for name in wide.columns}
        signs = {name: SIGNALS.get(name).sign for name in matrix if name in SIGNALS}
        found[(model, method, outcome)] = (validate(matrix, values, set_index.loc[keys].tolist(), signs), len(keys))
    return found


def _chosen_share(count: int, folds: int) -> str:
    return f"{count}/{folds}" if folds else "-"


def signal_table(found: dict[tuple[str, str, str], tuple[Validation, int]]) -> Any:
    import pandas as pd

    rows = []
    for (model, method, outcome), (result, _) in found.items():
        for name, v in sorted(result.signals.items()):
            rows.append(
                {
                    "model": model,
                    "method": method,
                    "outcome": outcome,
                    "signal": name,
                    "direction": SIGNALS.get(name).direction if name in SIGNALS else "learned",
                    "cells": v.cells,
                    "spearman (all cells)": v.all_cells.estimate,
                    "CI low": v.all_cells.low,
                    "CI high": v.all_cells.high,
                    "selection (oriented)": v.selection_rho,
                    "held-out (oriented)": v.held_out_rho,
                    "chosen in folds": _chosen_share(v.chosen_in, len(result.folds)),
                }
            )
    return pd.DataFrame(rows)


def selection_table(found: dict[tuple[str, str, str], tuple[Validation, int]]) -> Any:
    import pandas as pd

    rows = []
    for (model, method, outcome), (result, _) in found.items():
        for fold in result.folds:
            chosen = fold.chosen
            rows.append(
                {
                    "model": model,
                    "method": method,
                    "outcome": outcome,
                    "held-out set index": fold.label,
                    "selection cells": fold.selection_cells,
                    "held-out cells": fold.held_out_cells,
                    "chosen signal": chosen.signal if chosen else "-",
                    "sign": ("+" if chosen.sign > 0 else "-") if chosen else "-",
                    "selection (oriented)": chosen.selection_rho if chosen else math.nan,
                    "held-out (oriented)": fold.held_out_rho,
                }
            )
        if result.folds:
            rows.append(
                {
                    "model": model,
                    "method": method,
                    "outcome": outcome,
                    "held-out set index": "mean",
                    "selection cells": "-",
                    "held-out cells": "-",  # "-", not NaN: keeps the counts integers
                    "chosen signal": f"all cells choose {result.chosen_all.signal}" if result.chosen_all else "-",
                    "sign": ("+" if result.chosen_all.sign > 0 else "-") if result.chosen_all else "-",
                    "selection (oriented)": result.chosen_all.selection_rho if result.chosen_all else math.nan,
                    "held-out (oriented)": result.procedure_held_out,
                }
            )
    return pd.DataFrame(rows)


@styled
def plot_model(table: Any, model: str, path: Path) -> Path | None:
    """Per method x outcome: all-cells Spearman with its 95% CI (left) and the held-out oriented one (right)."""
    part = table[table.model == model]
    if part.empty:
        return None
    plt = pyplot()
    panels = list(part.groupby(["method", "outcome"], sort=True))
    signals = sorted(part.signal.unique())
    height = max(2.4, 0.28 * len(signals) + 1.2)
    fig, axes = plt.subplots(len(panels), 2, figsize=(11, height * len(panels)), squeeze=False, sharex=True)
    y = np.arange(len(signals))[::-1]
    for row, ((method, outcome), rows) in enumerate(panels):
        rows = rows.set_index("signal").reindex(signals)
        left, right = axes[row]
        estimate = rows["spearman (all cells)"].to_numpy(dtype=float)
        low = np.nan_to_num(estimate - rows["CI low"].to_numpy(dtype=float))
        high = np.nan_to_num(rows["CI high"].to_numpy(dtype=float) - estimate)
        left.errorbar(
            estimate, y, xerr=[np.clip(low, 0, None), np.clip(high, 0, None)], fmt="o", color="#4c72b0", capsize=3
        )
        left.set_title(f"{method}, {short(outcome)}: all cells, 95% CI", fontsize=9)
        held = rows["held-out (oriented)"].to_numpy(dtype=float)
        right.barh(y, np.nan_to_num(held), color=["#55a868" if h > 0 else "#c44e52" for h in np.nan_to_num(held)])
        right.set_title("held-out folds, sign from selection (oriented)", fontsize=9)
        for ax in (left, right):
            ax.axvline(0, color="black", linewidth=0.8)
            ax.set_yticks(y, signals, fontsize=8)
            ax.set_xlim(-1.05, 1.05)
            ax.set_ylim(-0.6, len(signals) - 0.4)
            ax.grid(axis="x", alpha=0.3)
    for ax in axes[-1]:
        ax.set_xlabel("Spearman rho")
    fig.suptitle(f"{slug(model)}: cheap signals against the full result (higher outcome is better)", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.45 / fig.get_figheight()))  # keep the title off the first panel's titles
    return save_figure(fig, path, tight=False)


def sections(directory: str | Path, frame: Any, out: Path | None) -> list[Section]:
    """The study report's predictor sections (the plots under the last); none when the study stored no signals."""

    signals = cell_signals(directory)
    if signals.empty:
        return []
    found = validations(cell_outcomes(frame), signals)
    if not found:
        return []
    table = signal_table(found)
    result = [Section(SIGNALS_HEADING, tables=[table])]
    chosen = selection_table(found)
    if len(chosen):
        result.append(Section(SELECTION_HEADING, tables=[chosen]))
    if out is not None:
        for model, path in model_paths(sorted(table.model.unique()), Path(out), "signals").items():
            if plot_model(table, model, path) is not None:
                result[-1].plots.append(path)
    return result
