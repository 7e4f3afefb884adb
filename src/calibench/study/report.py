"""The study report: the tables and plots of the calibration-data papers.

* per model x method x source: mean, std, min, max and range across sets of
  every task's accuracy and of the average accuracy, perplexity alongside,
  and the dense baseline;
* across sources: the best-minus-worst gap of the mean (Williams & Aletras);
* plots: average accuracy per source for each method (one point per set,
  box behind, dense line), the per-task spread, and accuracy and perplexity
  against n (sample-size curves) when the grid varies n;
* exports: results.csv / results.parquet (one row per number), report.md,
  report.html (PNGs embedded) and the PNGs themselves.

Statistics use the sample standard deviation (ddof=1) across sets, as a
spread across k draws of calibration data.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from calibench.errors import CalibenchError
from calibench.study.activation_report import activation_table, perplexity_spread_table, plot_activation_vs_perplexity
from calibench.study.store import DB_NAME, Store

ACCURACY_METRIC = "acc"
PERPLEXITY_METRIC = "perplexity"
AVERAGE = "average"
REPORT_DIR = "report"


def load_frame(directory: str | Path) -> Any:
    """All results of a study as a long DataFrame (one row per number)."""
    import pandas as pd

    directory = Path(directory)
    if not (directory / DB_NAME).exists():
        raise CalibenchError(f"{directory} has no {DB_NAME}: run `calibench study run SPEC --out {directory}` first")
    store = Store(directory)
    try:
        rows = store.rows()
        failures = store.failures()
        meta = store.meta()
    finally:
        store.close()
    records = []
    for row in rows:
        cfg = row["config"]
        records.append({
            "key": row["key"], "model": cfg["model"], "method": cfg["method"], "method_name": cfg.get("method_name", ""),
            "source": cfg["source"] or "-",
            "set_index": cfg["set_index"], "n": cfg["n"], "seq_len": cfg["seq_len"], "task": row["task"],
            "metric": row["metric"], "value": row["value"], "stderr": row["stderr"], "items": row["n"],
            "limit": row["limit"], "perturbation": cfg.get("perturbation", ""),
            "numerics": _numerics_label(row["record"].get("numerics")),
        })
    columns = ["key", "model", "method", "method_name", "source", "set_index", "n", "seq_len", "task", "metric", "value", "stderr", "items", "limit", "perturbation",
               "numerics"]
    return pd.DataFrame.from_records(records, columns=columns), failures, meta


def _numerics_label(numerics: dict[str, Any] | None) -> str:
    """The kernels a cell ran on, as one comparable string ('' for cells recorded before it was kept)."""
    if not numerics:
        return ""
    kernels = "pinned" if numerics.get("reproducible") else f"{numerics.get('aten_cpu_capability')}"
    return f"{numerics.get('cpu')} / {numerics.get('cuda') or 'cpu'} / {kernels}"


def _spread(values: Any) -> dict[str, float]:
    array = np.asarray(values, dtype=float)
    return {
        "sets": int(array.size),
        "mean": float(array.mean()),
        "std": float(array.std(ddof=1)) if array.size > 1 else 0.0,
        "min": float(array.min()),
        "max": float(array.max()),
        "range": float(array.max() - array.min()),
    }


def accuracy_table(frame: Any) -> Any:
    """Per (model, method, source, n, seq_len) and task (plus 'average'): spread across sets."""
    import pandas as pd

    acc = frame[(frame.metric == ACCURACY_METRIC) & ~frame.task.str.startswith("ppl:")]
    if acc.empty:
        return pd.DataFrame()
    per_cell_avg = acc.groupby(["key", "model", "method", "source", "n", "seq_len", "set_index"], as_index=False)["value"].mean()
    per_cell_avg["task"] = AVERAGE
    both = pd.concat([acc[per_cell_avg.columns], per_cell_avg], ignore_index=True)
    out = []
    for group, part in both.groupby(["model", "method", "source", "n", "seq_len", "task"], sort=True):
        out.append({**dict(zip(["model", "method", "source", "n", "seq_len", "task"], group)), **_spread(part["value"])})
    return pd.DataFrame(out)


def perplexity_table(frame: Any) -> Any:
    import pandas as pd

    ppl = frame[frame.metric == PERPLEXITY_METRIC]
    out = []
    for group, part in ppl.groupby(["model", "method", "source", "n", "seq_len", "task"], sort=True):
        out.append({**dict(zip(["model", "method", "source", "n", "seq_len", "task"], group)), **_spread(part["value"])})
    return pd.DataFrame(out)


def gap_table(acc: Any) -> Any:
    """Across sources, per model x method x n x seq_len: best and worst mean average accuracy and the gap."""
    import pandas as pd

    avg = acc[(acc.task == AVERAGE) & (acc.method != "dense")]
    out = []
    for group, part in avg.groupby(["model", "method", "n", "seq_len"], sort=True):
        best, worst = part.loc[part["mean"].idxmax()], part.loc[part["mean"].idxmin()]
        out.append({
            **dict(zip(["model", "method", "n", "seq_len"], group)),
            "best source": best.source, "best mean": best["mean"], "worst source": worst.source,
            "worst mean": worst["mean"], "gap": best["mean"] - worst["mean"], "mean std across sets": part["std"].mean(),
        })
    return pd.DataFrame(out)


_GRID = ["model", "method", "n", "seq_len", "task"]


def noise_floor_table(frame: Any, acc: Any, ppl: Any) -> Any:
    """Per model x method x n x seq_len x task: how far reruns under harmless perturbations moved the result.

    ``noise floor`` is the largest |perturbed - original| over the rerun cells
    and perturbations (one column per perturbation too), set next to the mean
    std across sets and the best-minus-worst gap across sources of the same
    task.  Accuracy is compared per task and on the per-cell average.
    """
    import pandas as pd

    keys = ["model", "method", "source", "set_index", "n", "seq_len", "task"]
    scored = frame[~frame.task.str.startswith("ppl:") & (frame.metric == ACCURACY_METRIC)]
    averages = scored.groupby(["key", *keys[:-1], "perturbation"], as_index=False)["value"].mean().assign(task=AVERAGE)
    values = pd.concat([frame[frame.metric.isin([ACCURACY_METRIC, PERPLEXITY_METRIC])], averages], ignore_index=True)
    base = values[values.perturbation == ""][[*keys, "value"]]
    moved = values[values.perturbation != ""][[*keys, "perturbation", "value"]]
    if moved.empty:
        return pd.DataFrame()
    paired = moved.merge(base, on=keys, suffixes=("", "_original"))
    paired["change"] = (paired["value"] - paired["value_original"]).abs()
    spread = pd.concat([t for t in (acc, ppl) if len(t)], ignore_index=True)
    spread = spread[spread.method != "dense"]
    out = []
    for group, part in paired.groupby(_GRID, sort=True):
        row = dict(zip(_GRID, group))
        same = spread[(spread[_GRID] == pd.Series(row)).all(axis=1)]
        row["reruns"] = int(len(part))
        for name, sub in part.groupby("perturbation"):
            row[f"max change ({name})"] = float(sub["change"].max())
        row["noise floor"] = float(part["change"].max())
        row["mean std across sets"] = float(same["std"].mean()) if len(same) else float("nan")
        row["source gap"] = float(same["mean"].max() - same["mean"].min()) if len(same) > 1 else float("nan")
        out.append(row)
    return pd.DataFrame(out)


def noise_floor_notes(noise: Any) -> list[str]:
    """Say where the across-set spread or the source gap is no larger than float-order noise."""
    notes = []
    for _, row in noise.iterrows() if len(noise) else []:
        floor, std, gap = row["noise floor"], row["mean std across sets"], row["source gap"]
        # a tolerance: an accuracy gap of one item and a floor of one item are equal up to float rounding
        weak = [f"{what} ({value:.4g})" for what, value in (("the mean std across sets", std),
                                                             ("the best-minus-worst gap across sources", gap))
                if value == value and value <= floor * (1 + 1e-9)]
        if weak:
            notes.append(
                f"{row['method']} {row['task']}: {' and '.join(weak)} {'are' if len(weak) > 1 else 'is'} within the "
                f"numerical noise floor ({floor:.4g}, the largest change under harmless perturbations): at this n and "
                "seq_len that is not evidence about calibration data."
            )
    return notes


# ----------------------------------------------------------------- plots


def _pyplot() -> Any:
    """matplotlib's pyplot on the file-only Agg backend (reports are written, never shown)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _dense_value(frame: Any, model: str, task: str | None = None) -> float | None:
    dense = frame[(frame.method == "dense") & (frame.model == model) & (frame.metric == ACCURACY_METRIC)
                  & ~frame.task.str.startswith("ppl:")]
    if task is not None:
        dense = dense[dense.task == task]
    return float(dense.value.mean()) if not dense.empty else None


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
    ax.set_xticks(range(1, len(sources) + 1), sources, rotation=30, ha="right")
    ax.grid(axis="y", alpha=0.3)


def plot_average_by_source(frame: Any, path: Path) -> Path | None:
    plt = _pyplot()
    acc = frame[(frame.metric == ACCURACY_METRIC) & ~frame.task.str.startswith("ppl:") & (frame.method != "dense")]
    if acc.empty:
        return None
    cell_avg = acc.groupby(["model", "method", "source", "set_index"], as_index=False)["value"].mean()
    methods = sorted(cell_avg.method.unique())
    model = cell_avg.model.iloc[0]
    fig, axes = plt.subplots(1, len(methods), figsize=(4.2 * len(methods), 3.6), sharey=True, squeeze=False)
    rng = np.random.default_rng(0)
    for ax, method in zip(axes[0], methods):
        _box_by_source(ax, cell_avg[cell_avg.method == method], _dense_value(frame, model), rng)
        ax.set_title(method)
    axes[0][0].set_ylabel("average accuracy (one point per set)")
    fig.suptitle(f"{model}: average zero-shot accuracy by calibration source")
    fig.tight_layout()
    fig.savefig(path, dpi=150)
    plt.close(fig)
    return path


def plot_perplexity_by_source(frame: Any, path: Path) -> Path | None:
    """Perplexity per source (log scale), a row per perplexity dataset and a column per method."""
    plt = _pyplot()
    from matplotlib.ticker import FuncFormatter

    ppl = frame[frame.task.str.startswith("ppl:") & (frame.metric == "perplexity")]
    compressed = ppl[ppl.method != "dense"]
    if compressed.empty:
        return None
    model = compressed.model.iloc[0]
    methods, tasks = sorted(compressed.method.unique()), sorted(compressed.task.unique())
    fig, axes = plt.subplots(len(tasks), len(methods), figsize=(4.2 * len(methods), 3.4 * len(tasks)),
                             sharey="row", squeeze=False)
    rng = np.random.default_rng(0)
    for r, task in enumerate(tasks):
        dense = ppl[(ppl.method == "dense") & (ppl.model == model) & (ppl.task == task)]
        for c, method in enumerate(methods):
            ax = axes[r][c]
            part = compressed[(compressed.method == method) & (compressed.task == task)]
            _box_by_source(ax, part, float(dense.value.mean()) if not dense.empty else None, rng)
            ax.set_yscale("log")
            for axis in (ax.yaxis.set_major_formatter, ax.yaxis.set_minor_formatter):
                axis(FuncFormatter(lambda value, _: f"{value:g}"))
            ax.set_title(f"{method}: {task}")
        axes[r][0].set_ylabel("perplexity (log scale, one point per set)")
    fig.suptitle(f"{model}: held-out perplexity by calibration source (lower is better)")
    fig.tight_layout()
    fig.savefig(path, dpi=150)
    plt.close(fig)
    return path


def perplexity_increase_table(frame: Any) -> Any:
    """Per method x calibration source x held-out text: perplexity over dense, in %, mean and std across sets.

    With several held-out texts (languages, domains) this is the transfer
    matrix: does calibrating on a text protect that text, and what does it
    cost the others?  The increase is 100 * (ppl / dense ppl - 1), per set,
    then summarised across sets, so the std is the set-to-set spread.
    """
    import pandas as pd

    ppl = frame[frame.task.str.startswith("ppl:") & (frame.metric == "perplexity")]
    dense = ppl[ppl.method == "dense"].groupby(["model", "task"])["value"].mean()
    rows = []
    compressed = ppl[ppl.method != "dense"]
    for (model, method, source, task), part in compressed.groupby(["model", "method", "source", "task"], sort=True):
        if (model, task) not in dense.index:
            continue
        increase = 100.0 * (part["value"].to_numpy() / dense[(model, task)] - 1.0)
        rows.append({"model": model, "method": method, "source": source, "task": task, "dense": dense[(model, task)],
                     "increase % mean": float(increase.mean()), "increase % std": float(increase.std(ddof=1))
                     if len(increase) > 1 else float("nan"), "sets": len(increase)})
    return pd.DataFrame(rows)


def plot_perplexity_matrix(increase: Any, path: Path) -> Path | None:
    """A heatmap per method: calibration source (rows) x held-out text (columns), % perplexity over dense."""
    if increase.empty or increase.task.nunique() < 2 or increase.source.nunique() < 2:
        return None
    plt = _pyplot()
    methods = sorted(increase.method.unique())
    sources, tasks = sorted(increase.source.unique()), sorted(increase.task.unique())
    fig, axes = plt.subplots(1, len(methods), figsize=(1.2 * len(tasks) * len(methods) + 2.5, 0.55 * len(sources) + 2),
                             squeeze=False)
    for ax, method in zip(axes[0], methods):
        part = increase[increase.method == method].set_index(["source", "task"])["increase % mean"]
        grid = np.array([[part.get((s, t), np.nan) for t in tasks] for s in sources])
        image = ax.imshow(grid, cmap="viridis_r", aspect="auto")
        for i in range(len(sources)):
            column_best = np.nanargmin(grid, axis=0)
            for j in range(len(tasks)):
                if np.isfinite(grid[i, j]):
                    weight = "bold" if column_best[j] == i else "normal"
                    ax.text(j, i, f"{grid[i, j]:.0f}", ha="center", va="center", fontsize=8, weight=weight,
                            color="white" if grid[i, j] > np.nanmean(grid) else "black")
        ax.set_xticks(range(len(tasks)), [t.removeprefix("ppl:") for t in tasks], rotation=30, ha="right")
        ax.set_yticks(range(len(sources)), sources)
        ax.set_xlabel("held-out text")
        ax.set_title(method)
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="% over dense")
    axes[0][0].set_ylabel("calibration source")
    fig.suptitle("perplexity increase over dense (%, mean across sets; bold: best source per text)")
    fig.tight_layout()
    fig.savefig(path, dpi=150)
    plt.close(fig)
    return path


def plot_noise_floor(noise: Any, path: Path) -> Path | None:
    """Per task, a group of bars per method: noise floor, mean std across sets, source gap (same units)."""
    if noise is None or len(noise) == 0:
        return None
    plt = _pyplot()
    tasks = [t for t in sorted(noise.task.unique()) if t.startswith("ppl:")] + ([AVERAGE] if AVERAGE in set(noise.task) else [])
    tasks = tasks or sorted(noise.task.unique())
    measures = [("noise floor", "#444444"), ("mean std across sets", "#4c72b0"), ("source gap", "#dd8452")]
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.8 * len(tasks), 3.6), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        part = noise[noise.task == task].reset_index(drop=True)
        x = np.arange(len(part))
        for k, (measure, colour) in enumerate(measures):
            ax.bar(x + (k - 1) * 0.27, part[measure].fillna(0), width=0.27, color=colour, label=measure)
        ax.set_xticks(x, [f"{m}\nn={n} len={s}" for m, n, s in zip(part.method, part.n, part.seq_len)], fontsize=8)
        ax.set_title(task if task != AVERAGE else "average accuracy")
        ax.set_ylabel("perplexity" if task.startswith("ppl:") else "accuracy")
    axes[0][0].legend(fontsize=8)
    fig.suptitle("Float-order noise floor against the spread that calibration data causes")
    fig.tight_layout()
    fig.savefig(path, dpi=150)
    plt.close(fig)
    return path


def plot_task_spread(frame: Any, path: Path) -> Path | None:
    plt = _pyplot()
    acc = frame[(frame.metric == ACCURACY_METRIC) & ~frame.task.str.startswith("ppl:") & (frame.method != "dense")]
    if acc.empty:
        return None
    methods = sorted(acc.method.unique())
    tasks = sorted(acc.task.unique())
    sources = sorted(acc.source.unique())
    model = acc.model.iloc[0]
    fig, axes = plt.subplots(1, len(methods), figsize=(max(4.5, 1.1 * len(tasks)) * len(methods), 3.8), sharey=True, squeeze=False)
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
                ax.scatter(np.full(values.size, x), values, color=f"C{j}", s=10, label=source if t == 0 else None)
        for t, task in enumerate(tasks):
            dense = _dense_value(frame, model, task)
            if dense is not None:
                ax.hlines(dense, t - 0.45, t + 0.45, color="black", linestyle="--", linewidth=1)
        ax.set_xticks(range(len(tasks)), tasks, rotation=30, ha="right")
        ax.set_title(method)
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].set_ylabel("accuracy (min-max across sets; dashes: dense)")
    axes[0][-1].legend(fontsize=7, loc="best")
    fig.suptitle(f"{model}: per-task spread across calibration sets")
    fig.tight_layout()
    fig.savefig(path, dpi=150)
    plt.close(fig)
    return path


def plot_sample_size(frame: Any, path: Path) -> Path | None:
    """Average accuracy and perplexity against n, one line per method x source (needs >1 n)."""
    plt = _pyplot()
    compressed = frame[frame.method != "dense"]
    if compressed.n.nunique() < 2:
        return None
    acc = compressed[(compressed.metric == ACCURACY_METRIC) & ~compressed.task.str.startswith("ppl:")]
    ppl = compressed[compressed.metric == PERPLEXITY_METRIC]
    fig, (ax_acc, ax_ppl) = plt.subplots(1, 2, figsize=(10, 3.8))
    for (method, source), part in acc.groupby(["method", "source"]):
        curve = part.groupby(["n", "set_index"]).value.mean().groupby("n").agg(["mean", "std"]).fillna(0)
        ax_acc.errorbar(curve.index, curve["mean"], yerr=curve["std"], marker="o", capsize=3, label=f"{method} / {source}")
    for (method, source), part in ppl.groupby(["method", "source"]):
        curve = part.groupby(["n", "set_index"]).value.mean().groupby("n").agg(["mean", "std"]).fillna(0)
        ax_ppl.errorbar(curve.index, curve["mean"], yerr=curve["std"], marker="o", capsize=3, label=f"{method} / {source}")
    for ax, label in ((ax_acc, "average accuracy"), (ax_ppl, "perplexity")):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("calibration samples n")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    ax_acc.legend(fontsize=7)
    fig.suptitle("sample-size curves (mean ± std across sets)")
    fig.tight_layout()
    fig.savefig(path, dpi=150)
    plt.close(fig)
    return path


# ----------------------------------------------------------------- notes and assembly


def calibration_free_notes(frame: Any) -> list[str]:
    """Methods that never read the calibration set: a zero spread across sets is by construction."""
    from calibench.compress.methods import METHODS

    notes = []
    for label in sorted(frame.loc[frame.method_name != "", "method"].unique()):
        names = frame.loc[frame.method == label, "method_name"].iloc[0].split("+")
        if all(name in METHODS and not METHODS[name].reads_calibration for name in names):
            notes.append(
                f"{label} does not read calibration data: its cells are identical across sets and sources, so its "
                "spread across sets is zero by construction, not evidence about calibration data."
            )
    return notes


def notes_for(frame: Any, meta: dict[str, Any]) -> list[str]:
    notes = []
    limited = frame[frame["limit"].notna() & ~frame.task.str.startswith("ppl:")]
    if not limited.empty:
        limits = sorted({int(x) for x in limited["limit"].unique()})
        notes.append(
            f"Zero-shot results used --limit {', '.join(map(str, limits))} items per task: they are not comparable "
            "with full runs or with published numbers."
        )
    notes.extend(calibration_free_notes(frame))
    kinds = sorted(k for k in frame.numerics.unique() if k)
    if len(kinds) > 1:
        notes.append(
            f"Cells ran on {len(kinds)} different machines or kernel settings ({'; '.join(kinds)}): differences between "
            "them include float-order noise (see the noise floor); rerun with --reproducible on CPU for machine-independent numbers."
        )
    from calibench.assets import ASSETS, asset_manifest

    for model in sorted(frame.model.unique()):
        if model in ASSETS:
            try:
                prequant = asset_manifest(model).get("prequantized")
            except CalibenchError:
                prequant = None
            if prequant:
                notes.append(
                    f"{model} was {prequant} (about 4-bit) before calibench dequantized it: re-quantizing it to 4 bits "
                    "understates the damage a full-precision model would show. Point calibench at hub models for real numbers."
                )
    return notes


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 10 else f"{value:.2f}"
    return str(value)


def _for_display(df: Any) -> Any:
    """The dense baseline has no calibration set: show '-' rather than its placeholder n = seq_len = 0."""
    if "method" not in df.columns:
        return df
    shown = df.copy()
    dense = shown["method"] == "dense"
    for column in ("n", "seq_len"):
        if column in shown.columns:
            shown[column] = shown[column].astype(object).where(~dense, "-")
    return shown


def markdown_table(df: Any) -> str:
    if df is None or len(df) == 0:
        return "_no rows_\n"
    df = _for_display(df)
    header = "| " + " | ".join(map(str, df.columns)) + " |"
    rule = "|" + "---|" * len(df.columns)
    body = ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join([header, rule, *body]) + "\n"


@dataclass
class Report:
    markdown: Path
    html: Path
    csv: Path
    parquet: Path
    plots: list[Path]


def _slug(model: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in (Path(model).name or model))


def per_model_plots(frame: Any, increase: Any, noise: Any, out: Path) -> list[Path]:
    """Every plot once per model (a file suffix per model when there are several): models never share a panel."""
    models = sorted(frame.model.unique())
    plots: list[Path] = []
    for model in models:
        part = frame[frame.model == model]
        suffix = "" if len(models) == 1 else f"-{_slug(model)}"
        plots += [p for p in (
            plot_perplexity_matrix(increase[increase.model == model] if len(increase) else increase,
                                   out / f"perplexity_matrix{suffix}.png"),
            plot_average_by_source(part, out / f"accuracy_by_source{suffix}.png"),
            plot_perplexity_by_source(part, out / f"perplexity_by_source{suffix}.png"),
            plot_task_spread(part, out / f"task_spread{suffix}.png"),
            plot_sample_size(part, out / f"sample_size{suffix}.png"),
            plot_noise_floor(noise[noise.model == model] if len(noise) else noise, out / f"noise_floor{suffix}.png"),
        ) if p is not None]
    return plots


def write_report(directory: str | Path) -> Report:
    """Compute the tables, draw the plots and write every export under ``<dir>/report``."""
    directory = Path(directory)
    everything, failures, meta = load_frame(directory)
    frame = everything[everything.perturbation == ""]  # the grid itself; noise-floor reruns only feed their table
    if frame.empty:
        raise CalibenchError(f"{directory} holds no finished cells yet: run the study first")
    out = directory / REPORT_DIR
    out.mkdir(exist_ok=True)
    everything.to_csv(out / "results.csv", index=False)
    everything.to_parquet(out / "results.parquet", index=False)

    acc = accuracy_table(frame)
    ppl = perplexity_table(frame)
    gaps = gap_table(acc) if len(acc) else acc
    noise = noise_floor_table(everything, acc, ppl)
    increase = perplexity_increase_table(frame)
    activations, spread = activation_table(frame), perplexity_spread_table(frame)
    plots = per_model_plots(frame, increase, noise, out)
    plots += [p for p in (plot_activation_vs_perplexity(frame, out / "activation_vs_perplexity.png", _pyplot()),)
              if p is not None]

    spec = meta.get("spec", {})
    sections: list[tuple[str, Any]] = []  # (heading, table), written as Markdown and as HTML
    notes = notes_for(frame, meta) + noise_floor_notes(noise)
    if failures:
        notes.append(f"{len(failures)} cell(s) failed and are left out: " + "; ".join(
            f"{c['method']} {c['source']}#{c['set_index']}: {e}" for c, e in failures[:5]))
    if len(acc):
        avg = acc[acc.task == AVERAGE].drop(columns=["task"])
        sections.append(("Average accuracy across sets (mean, std, min, max, range)", avg))
        per_task = acc[acc.task != AVERAGE]
        sections.append(("Per-task accuracy across sets", per_task))
        sections.append(("Across sources: best minus worst (mean average accuracy)", gaps))
    if len(ppl):
        sections.append(("Perplexity across sets", ppl))
    if len(increase) and increase.task.nunique() > 1:
        sections.append(("Perplexity increase over dense, per calibration source and held-out text (%)", increase))
    if len(noise):
        sections.append((NOISE_HEADING, noise))
    if len(activations):
        sections.append(("Activation statistics of each source's sets, on the dense model (act:outliers)", activations))
    if len(spread) and (frame.model.nunique() > 1 or len(activations)):
        sections.append(("Perplexity spread across calibration sets, per model and method", spread))
    from calibench.study.paired_report import paired_sections

    source_pairs, paired_plots = paired_sections(directory, frame, out)  # empty below two sources or without samples
    sections.extend(source_pairs)
    plots.extend(paired_plots)
    from calibench.summarize.report import sections as summarization_sections

    summ_sections, summ_plots = summarization_sections(directory, frame, out)  # empty without summ: tasks
    sections.extend(summ_sections)
    plots.extend(summ_plots)

    title = f"calibench study: {spec.get('name', directory.name)}"
    reruns = everything.key.nunique() - frame.key.nunique()
    md = [f"# {title}\n", f"Cells: {frame.key.nunique()} finished" + (f", {len(failures)} failed" if failures else "")
          + (f", plus {reruns} noise-floor rerun(s)" if reruns else "") + ".\n"]
    md += [f"> **Note.** {note}\n" for note in notes]
    for heading, table in sections:
        md += [f"\n## {heading}\n\n", markdown_table(table)]
    md += ["\n## Plots\n\n"] + [f"![{p.stem}]({p.name})\n" for p in plots]
    md_path = out / "report.md"
    md_path.write_text("".join(md), encoding="utf-8")

    html_path = out / "report.html"
    html_path.write_text(_html(title, notes, sections, plots), encoding="utf-8")
    (out / "spec.json").write_text(json.dumps(spec, indent=2, sort_keys=True))
    return Report(md_path, html_path, out / "results.csv", out / "results.parquet", plots)


NOISE_HEADING = "Noise floor: the largest change under harmless perturbations, against the spread across sets"


def _html(title: str, notes: list[str], sections: list[tuple[str, Any]], plots: list[Path]) -> str:
    import html

    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             "<style>body{font-family:sans-serif;max-width:1200px;margin:2em auto}table{border-collapse:collapse;font-size:13px}"
             "td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}th{background:#eee}.note{background:#fff6d6;padding:6px}</style>",
             f"</head><body><h1>{html.escape(title)}</h1>"]
    parts += [f"<p class='note'><b>Note.</b> {html.escape(n)}</p>" for n in notes]
    for heading, df in sections:
        parts.append(f"<h2>{html.escape(heading)}</h2>" + _for_display(df).to_html(index=False, float_format=lambda v: f"{v:.4f}"))
    for plot in plots:
        data = base64.b64encode(plot.read_bytes()).decode()
        parts.append(f"<h2>{html.escape(plot.stem)}</h2><img style='max-width:100%' src='data:image/png;base64,{data}'>")
    parts.append("</body></html>")
    return "\n".join(parts)
