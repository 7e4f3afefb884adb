"""The study report's paired tables: sources compared item by item, with CIs, p-values and sizes.

How sets and items are paired.  Sets of two sources are *not* paired: set 0
of wiki and set 0 of code are independent draws that merely share an index.
Items are paired: every cell of a (model, method, n, seq_len, task) is scored
on the same lm-eval documents or perplexity windows, known by the same item
id in the store's ``samples`` table.  So for each source the item's score is
averaged over that source's sets (the source's per-item mean), and two
sources are compared on the per-item differences of those means:

* the mean difference (source A minus source B; for perplexity tasks the
  item is a window and its score the window's mean NLL, so the difference is
  in log-perplexity and ``exp`` of it is the perplexity ratio A / B);
* a paired bootstrap 95% CI over items and a sign-flip permutation p-value;
* Holm-Bonferroni across all source pairs of the same (model, method, n,
  seq_len, task), with rows marked significant where the adjusted p < 0.05;
* the items a paired test would need to resolve the observed difference at
  80% power, and the sets per source the set-to-set variance alone calls for.

Only the items present in every cell of the group are used, so every source
and pair of a group sees the same items.  Per source, a hierarchical
(sets, then items) bootstrap CI of its mean accounts for both set-to-set and
item-to-item variance (see :func:`calibench.study.paired.hierarchical_bootstrap_ci`).

Accuracy tasks use the per-item ``acc``; tasks without it (generative
tasks, summarization) are left out of these tables.  Nothing is produced
for a study with fewer than two sources or without per-item samples.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Any

import numpy as np

from calibench.study import paired
from calibench.study.store import Store

PAIRED_HEADING = ("Paired differences between sources, item by item (source A minus source B over shared items; "
                  "paired bootstrap 95% CI, sign-flip p, Holm across the pairs of each model x method x task)")
SOURCE_CI_HEADING = "Source means with a hierarchical bootstrap 95% CI (sets, then items)"
GROUP = ["model", "method", "n", "seq_len", "task"]
ALPHA = 0.05


def item_score(task: str, item: dict[str, Any]) -> float | None:
    """The paired unit's score: a window's mean NLL for perplexity, the 0/1 ``acc`` otherwise."""
    value = item.get("nll") if task.startswith("ppl:") else (item.get("metrics") or {}).get("acc")
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)) and math.isfinite(value):
        return float(value)
    return None


def quantity(task: str) -> str:
    return "log-ppl (window NLL)" if task.startswith("ppl:") else "acc"


def source_matrices(frame: Any, samples: dict[str, dict[tuple[str, str], dict[str, dict[str, Any]]]]
                    ) -> dict[tuple[Any, ...], dict[str, np.ndarray]]:
    """Per group: ``{source: sets x items array}`` over the items every cell of the group has (sorted ids)."""
    cells = frame[(frame.method != "dense") & (frame.source != "-")][[*GROUP, "source", "set_index", "key"]]
    out: dict[tuple[Any, ...], dict[str, np.ndarray]] = {}
    for group, part in cells.drop_duplicates().groupby(GROUP, sort=True):
        task = group[-1]
        per_cell: dict[str, list[dict[str, float]]] = {}
        for source, rows in part.sort_values("set_index").groupby("source", sort=True):
            scored = []
            for key in rows.key:
                items = samples.get(task, {}).get((key, task), {})
                scores = {i: s for i, item in items.items() if (s := item_score(task, item)) is not None}
                if scores:
                    scored.append(scores)
            if scored:
                per_cell[source] = scored
        if len(per_cell) < 2:
            continue
        common = sorted(set.intersection(*(set(s) for cells_ in per_cell.values() for s in cells_)))
        if len(common) < 2:
            continue
        out[group] = {source: np.array([[s[i] for i in common] for s in scored]) for source, scored in per_cell.items()}
    return out


def paired_tables(matrices: dict[tuple[Any, ...], dict[str, np.ndarray]]) -> tuple[Any, Any]:
    """The pairwise-difference table and the per-source hierarchical-CI table."""
    import pandas as pd

    pair_rows, source_rows = [], []
    for group, sources in matrices.items():
        task = group[-1]
        lower_better = task.startswith("ppl:")
        base = {**dict(zip(GROUP, group)), "quantity": quantity(task)}
        for source, matrix in sources.items():
            sets, items = matrix.shape
            set_means = matrix.mean(axis=1)
            std = float(set_means.std(ddof=1)) if sets > 1 else math.nan
            ci = paired.hierarchical_bootstrap_ci(matrix, shared_items=True)
            source_rows.append({**base, "source": source, "sets": sets, "items": items, "mean": ci.estimate,
                                "std across sets": std, "CI low": ci.low, "CI high": ci.high,
                                "naive half-width (1.96 std/sqrt(sets))": 1.96 * std / math.sqrt(sets)})
        rows = []
        for a, b in itertools.combinations(sorted(sources), 2):
            per_item_a, per_item_b = sources[a].mean(axis=0), sources[b].mean(axis=0)
            d = per_item_a - per_item_b
            ci = paired.paired_bootstrap_ci(d)
            std_a = float(sources[a].mean(axis=1).std(ddof=1)) if len(sources[a]) > 1 else math.nan
            std_b = float(sources[b].mean(axis=1).std(ddof=1)) if len(sources[b]) > 1 else math.nan
            better = a if (ci.estimate < 0) == lower_better else b
            rows.append({**base, "source A": a, "source B": b, "sets A": len(sources[a]), "sets B": len(sources[b]),
                         "items": d.size, "mean A": float(per_item_a.mean()), "mean B": float(per_item_b.mean()),
                         "difference (A-B)": ci.estimate, "CI low": ci.low, "CI high": ci.high,
                         "ppl ratio (A/B)": math.exp(ci.estimate) if lower_better else math.nan,
                         "p": paired.sign_flip_pvalue(d),
                         "better": better if ci.estimate != 0 else "-",
                         "items needed": paired.items_needed(ci.estimate, float(d.std(ddof=1)) if d.size > 1 else math.nan),
                         "sets needed": paired.sets_needed(ci.estimate, std_a, std_b)})
        for row, adjusted in zip(rows, paired.holm([r["p"] for r in rows])):
            row["p (Holm)"] = float(adjusted)
            row["significant"] = bool(adjusted < ALPHA)
        pair_rows += rows
    order = [*GROUP, "quantity", "source A", "source B", "sets A", "sets B", "items", "mean A", "mean B",
             "difference (A-B)", "CI low", "CI high", "ppl ratio (A/B)", "p", "p (Holm)", "significant", "better",
             "items needed", "sets needed"]
    pairs = pd.DataFrame(pair_rows, columns=order)
    return pairs, pd.DataFrame(source_rows)


def _short(name: str) -> str:
    """A path-like name (a file source, a local model, a file perplexity task) by its last component."""
    name = str(name)
    prefix = "ppl:" if name.startswith("ppl:") else ""
    rest = name[len(prefix):]
    return prefix + (Path(rest).name if "/" in rest else rest)


def plot_forest(pairs: Any, model: str, path: Path) -> Path | None:
    """Forest plot for one model: a panel per task, a row per method x pair, the CI as a bar, zero dashed."""
    part = pairs[pairs.model == model]
    if part.empty:
        return None
    from calibench.study.report import _pyplot

    plt = _pyplot()
    tasks = sorted(part.task.unique())
    height = max(2.5, 0.35 * part.groupby("task").size().max() + 1.2)
    fig, axes = plt.subplots(1, len(tasks), figsize=(6.5 * len(tasks), height + 0.6), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        rows = part[part.task == task].reset_index(drop=True)
        y = np.arange(len(rows))[::-1]
        labels = []
        for yi, (_, row) in zip(y, rows.iterrows()):
            d, colour = row["difference (A-B)"], "#c44e52" if row["significant"] else "#555555"
            ax.errorbar(d, yi, xerr=[[max(0.0, d - row["CI low"])], [max(0.0, row["CI high"] - d)]], fmt="o", color=colour,
                        mfc=colour if row["significant"] else "white", capsize=3)
            labels.append(f"{row['method']} n={row['n']}: {_short(row['source A'])} - {_short(row['source B'])}")
        ax.set_yticks(y, labels, fontsize=8)
        ax.axvline(0, color="black", linestyle="--", linewidth=1)
        ax.set_xlabel("difference A - B in " + quantity(task))
        ax.set_title(_short(task), fontsize=9)
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle(f"{_short(model)}: paired source differences\n95% bootstrap CI over items (filled red: Holm p < 0.05)",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=150)
    plt.close(fig)
    return path


def paired_sections(directory: str | Path, frame: Any, out: Path | None = None
                    ) -> tuple[list[tuple[str, Any]], list[Path]]:
    """The report sections (heading, DataFrame) and forest plots; empty below two sources or without samples."""
    compressed = frame[(frame.method != "dense") & (frame.source != "-")]
    if compressed.empty or compressed.source.nunique() < 2:
        return [], []
    tasks = sorted(t for t in compressed.task.unique())
    store = Store(directory)
    try:
        samples = {task: store.samples(task) for task in tasks}
    finally:
        store.close()
    matrices = source_matrices(frame, samples)
    if not matrices:
        return [], []
    pairs, sources = paired_tables(matrices)
    plots: list[Path] = []
    if out is not None:
        from calibench.study.report import _slug

        models = sorted(pairs.model.unique())
        for model in models:
            suffix = "" if len(models) == 1 else f"-{_slug(model)}"
            path = plot_forest(pairs, model, Path(out) / f"paired_differences{suffix}.png")
            if path is not None:
                plots.append(path)
    return [(PAIRED_HEADING, pairs), (SOURCE_CI_HEADING, sources)], plots
