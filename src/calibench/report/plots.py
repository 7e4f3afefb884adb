"""The study report's plots (the matplotlib setup they share is :mod:`calibench.core.plots`).

Reports are written, never shown, so pyplot runs on the file-only Agg
backend; a figure is rendered into memory and renamed into place, so a
killed report never leaves half a PNG.  ``@styled`` draws a plot function's
figure under :data:`STYLE` without touching the caller's matplotlib
settings.  ``inspect`` and ``summarize`` draw with these helpers too.

Per model, always: every study plot takes one model's rows (it refuses
more), and :func:`per_model` draws it once per model, with a ``-MODEL``
file suffix when the study has several, so two models never share a panel.
The one figure that shows several models gives each its own panel.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from calibench.core.plots import model_paths, pyplot, save_figure, styled
from calibench.report.tables import ACCURACY_METRIC, ACT_PREFIX, AVERAGE, PERPLEXITY_METRIC, PPL_PREFIX, quantity


def short(name: Any) -> str:
    """A path-like name (a file source, a local model, a file perplexity task) by its last component."""
    name = str(name)
    prefix = PPL_PREFIX if name.startswith(PPL_PREFIX) else ""
    rest = name[len(prefix) :]
    return prefix + (Path(rest).name if "/" in rest else rest)


def per_model(frame: Any, out: Path, stem: str, draw: Callable[[Any, Path], Path | None]) -> list[Path]:
    """Draw ``draw(model's rows, path)`` once per model of ``frame``; the plots that had something to show."""
    if frame is None or len(frame) == 0:
        return []
    paths = model_paths(sorted(frame.model.unique()), Path(out), stem)
    return [p for p in (draw(frame[frame.model == model], path) for model, path in paths.items()) if p is not None]


def _one_model(frame: Any) -> str:
    models = frame.model.unique()
    if len(models) != 1:
        raise ValueError(f"a study plot takes one model's rows, got {len(models)} models: draw it per model")
    return str(models[0])


# ----------------------------------------------------------------- the study's plots


def _dense_value(frame: Any, task: str | None = None) -> float | None:
    dense = frame[
        (frame.method == "dense") & (frame.metric == ACCURACY_METRIC) & ~frame.task.str.startswith(PPL_PREFIX)
    ]
    if task is not None:
        dense = dense[dense.task == task]
    return float(dense.value.mean()) if not dense.empty else None


def _compressed_accuracy(frame: Any) -> Any:
    return frame[(frame.metric == ACCURACY_METRIC) & ~frame.task.str.startswith(PPL_PREFIX) & (frame.method != "dense")]


def _box_by_source(ax: Any, part: Any, dense: float | None, rng: Any) -> None:
    """One panel: a box per source behind one point per calibration set, dense as a dashed line."""
    sources = sorted(part.source.unique())
    data = [part[part.source == s].value.to_numpy() for s in sources]
    ax.boxplot(data, widths=0.5, showfliers=False)
    for i, values in enumerate(data, start=1):
        ax.scatter(i + rng.uniform(-0.12, 0.12, len(values)), values, s=18, zorder=3)
    if dense is not None:
        ax.axhline(dense, color="black", linestyle="--", linewidth=1, label=f"dense ({dense:.3g})")
        ax.legend(loc="best", fontsize=8)
    ax.set_xticks(range(1, len(sources) + 1), [short(s) for s in sources], rotation=30, ha="right")
    ax.grid(axis="y", alpha=0.3)


@styled
def plot_average_by_source(frame: Any, path: Path) -> Path | None:
    """Average accuracy per source, a panel per method: one point per set, a box behind, dense dashed."""
    acc = _compressed_accuracy(frame)
    if acc.empty:
        return None
    model = _one_model(frame)
    cell_avg = acc.groupby(["method", "source", "set_index"], as_index=False)["value"].mean()
    methods = sorted(cell_avg.method.unique())
    fig, axes = pyplot().subplots(1, len(methods), figsize=(4.2 * len(methods), 3.6), sharey=True, squeeze=False)
    rng = np.random.default_rng(0)
    for ax, method in zip(axes[0], methods):
        _box_by_source(ax, cell_avg[cell_avg.method == method], _dense_value(frame), rng)
        ax.set_title(method)
    axes[0][0].set_ylabel("average accuracy (one point per set)")
    fig.suptitle(f"{short(model)}: average zero-shot accuracy by calibration source")
    return save_figure(fig, path)


@styled
def plot_perplexity_by_source(frame: Any, path: Path) -> Path | None:
    """Perplexity per source (log scale), a row per perplexity dataset and a column per method."""
    from matplotlib.ticker import FuncFormatter

    ppl = frame[frame.task.str.startswith(PPL_PREFIX) & (frame.metric == PERPLEXITY_METRIC)]
    compressed = ppl[ppl.method != "dense"]
    if compressed.empty:
        return None
    model = _one_model(frame)
    methods, tasks = sorted(compressed.method.unique()), sorted(compressed.task.unique())
    fig, axes = pyplot().subplots(
        len(tasks), len(methods), figsize=(4.2 * len(methods), 3.4 * len(tasks)), sharey="row", squeeze=False
    )
    rng = np.random.default_rng(0)
    for r, task in enumerate(tasks):
        dense = ppl[(ppl.method == "dense") & (ppl.task == task)]
        for c, method in enumerate(methods):
            ax = axes[r][c]
            part = compressed[(compressed.method == method) & (compressed.task == task)]
            _box_by_source(ax, part, float(dense.value.mean()) if not dense.empty else None, rng)
            ax.set_yscale("log")
            for axis in (ax.yaxis.set_major_formatter, ax.yaxis.set_minor_formatter):
                axis(FuncFormatter(lambda value, _: f"{value:g}"))
            ax.set_title(f"{method}: {short(task)}")
        axes[r][0].set_ylabel("perplexity (log scale, one point per set)")
    fig.suptitle(f"{short(model)}: held-out perplexity by calibration source (lower is better)")
    return save_figure(fig, path)


@styled
def plot_perplexity_matrix(increase: Any, path: Path) -> Path | None:
    """A heatmap per method: calibration source (rows) x held-out text (columns), % perplexity over dense."""
    if increase.empty or increase.task.nunique() < 2 or increase.source.nunique() < 2:
        return None
    model = _one_model(increase)
    methods = sorted(increase.method.unique())
    sources, tasks = sorted(increase.source.unique()), sorted(increase.task.unique())
    fig, axes = pyplot().subplots(
        1, len(methods), squeeze=False, figsize=(1.2 * len(tasks) * len(methods) + 2.5, 0.55 * len(sources) + 2)
    )
    for ax, method in zip(axes[0], methods):
        part = increase[increase.method == method].set_index(["source", "task"])["increase % mean"]
        grid = np.array([[part.get((s, t), np.nan) for t in tasks] for s in sources])
        image = ax.imshow(grid, cmap="viridis_r", aspect="auto")
        column_best = np.nanargmin(grid, axis=0)
        for i in range(len(sources)):
            for j in range(len(tasks)):
                if np.isfinite(grid[i, j]):
                    weight = "bold" if column_best[j] == i else "normal"
                    ax.text(
                        j,
                        i,
                        f"{grid[i, j]:.0f}",
                        ha="center",
                        va="center",
                        fontsize=8,
                        weight=weight,
                        color="white" if grid[i, j] > np.nanmean(grid) else "black",
                    )
        ax.set_xticks(range(len(tasks)), [short(t).removeprefix(PPL_PREFIX) for t in tasks], rotation=30, ha="right")
        ax.set_yticks(range(len(sources)), [short(s) for s in sources])
        ax.set_xlabel("held-out text")
        ax.set_title(method)
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="% over dense")
    axes[0][0].set_ylabel("calibration source")
    fig.suptitle(f"{short(model)}: perplexity increase over dense (%, mean across sets; bold: best source per text)")
    return save_figure(fig, path)


@styled
def plot_noise_floor(noise: Any, path: Path) -> Path | None:
    """Per task, a group of bars per method: noise floor, mean std across sets, source gap (same units)."""
    if noise is None or len(noise) == 0:
        return None
    model = _one_model(noise)
    tasks = [t for t in sorted(noise.task.unique()) if t.startswith(PPL_PREFIX)] + (
        [AVERAGE] if AVERAGE in set(noise.task) else []
    )
    tasks = tasks or sorted(noise.task.unique())
    measures = [("noise floor", "#444444"), ("mean std across sets", "#4c72b0"), ("source gap", "#dd8452")]
    fig, axes = pyplot().subplots(1, len(tasks), figsize=(4.8 * len(tasks), 3.6), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        part = noise[noise.task == task].reset_index(drop=True)
        x = np.arange(len(part))
        for k, (measure, colour) in enumerate(measures):
            ax.bar(x + (k - 1) * 0.27, part[measure].fillna(0), width=0.27, color=colour, label=measure)
        ax.set_xticks(x, [f"{m}\nn={n} len={s}" for m, n, s in zip(part.method, part.n, part.seq_len)], fontsize=8)
        ax.set_title(short(task) if task != AVERAGE else "average accuracy")
        ax.set_ylabel("perplexity" if task.startswith(PPL_PREFIX) else "accuracy")
    axes[0][0].legend(fontsize=8)
    fig.suptitle(f"{short(model)}: float-order noise floor against the spread that calibration data causes")
    return save_figure(fig, path)


@styled
def plot_task_spread(frame: Any, path: Path) -> Path | None:
    """Per method, per task: each source's min-max across sets as a bar with its sets as points, dense dashed."""
    acc = _compressed_accuracy(frame)
    if acc.empty:
        return None
    model = _one_model(frame)
    methods, tasks, sources = sorted(acc.method.unique()), sorted(acc.task.unique()), sorted(acc.source.unique())
    fig, axes = pyplot().subplots(
        1, len(methods), figsize=(max(4.5, 1.1 * len(tasks)) * len(methods), 3.8), sharey=True, squeeze=False
    )
    width = 0.8 / max(len(sources), 1)
    for ax, method in zip(axes[0], methods):
        part = acc[acc.method == method]
        for j, source in enumerate(sources):
            for t, task in enumerate(tasks):
                values = part[(part.source == source) & (part.task == task)].value.to_numpy()
                if values.size == 0:
                    continue
                x = t - 0.4 + width * (j + 0.5)
                ax.vlines(x, values.min(), values.max(), color=f"C{j}", linewidth=2)
                ax.scatter(
                    np.full(values.size, x), values, color=f"C{j}", s=10, label=short(source) if t == 0 else None
                )
        for t, task in enumerate(tasks):
            dense = _dense_value(frame, task)
            if dense is not None:
                ax.hlines(dense, t - 0.45, t + 0.45, color="black", linestyle="--", linewidth=1)
        ax.set_xticks(range(len(tasks)), tasks, rotation=30, ha="right")
        ax.set_title(method)
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].set_ylabel("accuracy (min-max across sets; dashes: dense)")
    axes[0][-1].legend(fontsize=7, loc="best")
    fig.suptitle(f"{short(model)}: per-task spread across calibration sets")
    return save_figure(fig, path)


@styled
def plot_sample_size(frame: Any, path: Path) -> Path | None:
    """Average accuracy and perplexity against n, one line per method x source (needs >1 n)."""
    compressed = frame[frame.method != "dense"]
    if compressed.empty or compressed.n.nunique() < 2:
        return None
    model = _one_model(frame)
    curves = (
        (_compressed_accuracy(compressed), "average accuracy"),
        (compressed[compressed.metric == PERPLEXITY_METRIC], "perplexity"),
    )
    fig, axes = pyplot().subplots(1, 2, figsize=(10, 3.8))
    for ax, (part, label) in zip(axes, curves):
        for (method, source), rows in part.groupby(["method", "source"]):
            curve = rows.groupby(["n", "set_index"]).value.mean().groupby("n").agg(["mean", "std"]).fillna(0)
            ax.errorbar(
                curve.index,
                curve["mean"],
                yerr=curve["std"],
                marker="o",
                capsize=3,
                label=f"{method} / {short(source)}",
            )
        ax.set_xscale("log", base=2)
        ax.set_xlabel("calibration samples n")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle(f"{short(model)}: sample-size curves (mean ± std across sets)")
    return save_figure(fig, path)


@styled
def plot_forest(pairs: Any, path: Path) -> Path | None:
    """Forest plot of one model's source pairs: a panel per task, a row per method x pair, the CI as a bar."""
    if pairs is None or pairs.empty:
        return None
    model = _one_model(pairs)
    tasks = sorted(pairs.task.unique())
    height = max(2.5, 0.35 * pairs.groupby("task").size().max() + 1.2)
    fig, axes = pyplot().subplots(1, len(tasks), figsize=(6.5 * len(tasks), height + 0.6), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        rows = pairs[pairs.task == task].reset_index(drop=True)
        y = np.arange(len(rows))[::-1]
        labels = []
        for yi, (_, row) in zip(y, rows.iterrows()):
            d, colour = row["difference (A-B)"], "#c44e52" if row["significant"] else "#555555"
            ax.errorbar(
                d,
                yi,
                xerr=[[max(0.0, d - row["CI low"])], [max(0.0, row["CI high"] - d)]],
                fmt="o",
                color=colour,
                mfc=colour if row["significant"] else "white",
                capsize=3,
            )
            labels.append(f"{row['method']} n={row['n']}: {short(row['source A'])} - {short(row['source B'])}")
        ax.set_yticks(y, labels, fontsize=8)
        ax.axvline(0, color="black", linestyle="--", linewidth=1)
        ax.set_xlabel("difference A - B in " + quantity(task))
        ax.set_title(short(task), fontsize=9)
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle(
        f"{short(model)}: source differences\n95% CI, sets and items random where a source has 2+ sets "
        "(filled red: Holm p < 0.05)",
        fontsize=10,
    )
    return save_figure(fig, path)


ERROR_METRIC = "int8_static_error"


@styled
def plot_activation_vs_perplexity(frame: Any, path: Path) -> Path | None:
    """A panel per model: each set's static int8 error (dense model) against its compressed model's perplexity."""
    act = frame[frame.task.str.startswith(ACT_PREFIX) & (frame.metric == ERROR_METRIC)]
    ppl = frame[frame.task.str.startswith(PPL_PREFIX) & (frame.metric == PERPLEXITY_METRIC) & (frame.method != "dense")]
    if act.empty or ppl.empty:
        return None
    task = sorted(ppl.task.unique())[0]
    keys = ["model", "method", "source", "set_index", "n", "seq_len"]
    joined = ppl[ppl.task == task][keys + ["value"]].merge(
        act[keys + ["value"]].rename(columns={"value": "error"}), on=keys
    )
    if joined.empty:
        return None
    models = sorted(joined.model.unique())
    fig, axes = pyplot().subplots(1, len(models), figsize=(max(8.0, 5.2 * len(models)), 4.4), squeeze=False)
    for ax, model in zip(axes[0], models):
        part = joined[joined.model == model]
        for method, rows in part.groupby("method", sort=True):
            ax.scatter(rows.error, rows.value, s=26, label=method, zorder=3)
            for _, row in rows.iterrows():
                ax.annotate(
                    short(row.source), (row.error, row.value), fontsize=6, xytext=(3, 2), textcoords="offset points"
                )
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("static int8 activation error of the set (dense model)")
        ax.set_ylabel(f"{short(task)} perplexity after compression")
        ax.set_title(short(model), fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle("Does a set's activation cost predict the outcome? (one point per set)")
    return save_figure(fig, path)


@styled
def plot_adaptive_items(table: Any, path: Path) -> Path | None:
    """Items each comparison used before it stopped, a bar per comparison, coloured by how it stopped."""
    if table is None or table.empty:
        return None
    colours = {"decided": "#4c72b0", "futile": "#999999", "running": "#dd8452"}
    rows = table.reset_index(drop=True)
    fig, ax = pyplot().subplots(figsize=(7.5, max(2.5, 0.3 * len(rows) + 1.2)))
    y = np.arange(len(rows))[::-1]
    ax.barh(y, rows["items"], color=[colours.get(s, "#555555") for s in rows["state"]])
    labels = [
        f"{r['method']} {short(r['task'])}: {short(r['source A'])} - {short(r['source B'])}" for _, r in rows.iterrows()
    ]
    ax.set_yticks(y, labels, fontsize=8)
    ax.set_xlabel("items used (per cell)")
    for state, colour in colours.items():
        if (rows["state"] == state).any():
            ax.barh([], [], color=colour, label=state)
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(axis="x", alpha=0.3)
    ax.set_title("Adaptive evaluation: items each comparison used", fontsize=10)
    return save_figure(fig, path)
