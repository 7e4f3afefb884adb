"""How sensitive each compression method is to the calibration source, with in-domain fitting averaged out.

A source that matches a held-out text (wiki calibration, wiki perplexity) wins on that text partly because
the method fits it; averaging the log-perplexity over several held-out domains, each source being in-domain
for at most one of them, leaves the part of the source effect that is not that fit.  Per method:

* a cell's score on a domain is its log-perplexity there (token-weighted mean NLL over the domain's windows);
  its *averaged* score is the mean over the domains;
* a source's score is the mean over its sets; the **across-source spread** is the best-to-worst difference
  of the sources' scores (in log-perplexity, so ``exp`` of it is the worst/best perplexity ratio), and the
  **across-set spread** is the mean over sources of the standard deviation across that source's sets;
* 95% CIs by a hierarchical bootstrap that resamples, in each replicate, the sets of each source (with
  replacement) and the windows of each domain (one draw shared by every cell, as the cells share windows);
  the difference of two methods' spreads is taken within each replicate, so its CI is paired.

The same measures apply to a zero-shot task's accuracy (:data:`ACCURACY`): a cell's score is its mean
accuracy over the task's items, which every cell shares (and, for a loglikelihood task such as LAMBADA,
the mean log-likelihood of the target, :data:`TARGET_LL`, which separates what 0/1 accuracy cannot).  A task
drawn from none of the sources is a held-out domain of its own, though not equally far from each.

Pure functions of a per-item frame (:func:`calibench.report.frame.items_frame`); the report section that
prints them is :func:`sections`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from calibench.core.plots import pyplot, save_figure, styled
from calibench.report.render import Section, Table
from calibench.report.tables import ACCURACY_METRIC, PPL_PREFIX

HEADING = "Source sensitivity per method, with in-domain fitting averaged out over the held-out domains"
N_BOOT = 2000
AVERAGED = "averaged"


@dataclass(frozen=True)
class Measure:
    """What a cell's score on a task is: the (weighted) mean of one per-item column."""

    column: str
    weight: str | None  # the column weighting the mean (tokens per window), None for a plain mean
    unit: str
    higher_is_better: bool


LOG_PPL = Measure("nll", "tokens", "log-ppl", higher_is_better=False)
# a loglikelihood task's target (LAMBADA's last word): continuous, so it resolves what 0/1 accuracy cannot
TARGET_LL = Measure("loglikelihood", None, "target log-lik, nats", higher_is_better=True)
ACCURACY = Measure(f"metrics.{ACCURACY_METRIC}", None, "accuracy", higher_is_better=True)  # lm-eval item field


@dataclass(frozen=True)
class CellItems:
    """One method's per-item values on one task: ``values[source][set] -> array over the shared items``."""

    values: dict[str, list[np.ndarray]]
    weights: np.ndarray  # per item (tokens per window; ones for lm-eval items), shared by every cell of the task


def _score(values: np.ndarray, weights: np.ndarray, idx: np.ndarray | None = None) -> float:
    if idx is not None:
        values, weights = values[idx], weights[idx]
    return float((values * weights).sum() / weights.sum())


def windows_by_domain(
    items: Any, method: str, domains: list[str], measure: Measure = LOG_PPL
) -> dict[str, CellItems] | None:
    """Every domain's items for ``method``'s cells, aligned on item ids; None where cells disagree on them."""
    out: dict[str, CellItems] = {}
    rows = items[(items.method == method) & (items.perturbation.fillna("") == "")]
    for domain in domains:
        part = rows[rows.task == domain]
        ids = sorted(set(part.item), key=str)
        if not ids:
            return None
        by_source: dict[str, list[np.ndarray]] = {}
        tokens = None
        for (source, _set), cell in part.groupby(["source", "set_index"], sort=True):
            cell = cell.set_index("item").reindex(ids)
            if measure.column not in cell or cell[measure.column].isna().any():
                return None  # a cell scored other items: nothing to pair
            by_source.setdefault(str(source), []).append(cell[measure.column].to_numpy(dtype=np.float64))
            has_weight = measure.weight is not None and measure.weight in cell
            tokens = cell[measure.weight].to_numpy(dtype=np.float64) if has_weight else np.ones(len(ids))
        if tokens is None:
            return None
        out[domain] = CellItems(by_source, tokens)
    sources = [sorted(w.values) for w in out.values()]
    if any(s != sources[0] for s in sources) or len(sources[0]) < 2:
        return None
    return out


def by_method(items: Any, domains: list[str], measure: Measure = LOG_PPL) -> dict[str, dict[str, CellItems]]:
    """:func:`windows_by_domain` of every compressed method whose cells can be paired, by method name."""
    found = {m: windows_by_domain(items, m, domains, measure) for m in sorted(set(items.method) - {"dense"})}
    return {m: w for m, w in found.items() if w is not None}


def spreads(
    windows: dict[str, CellItems],
    set_draw: dict[str, np.ndarray] | None = None,
    window_draw: dict[str, np.ndarray] | None = None,
) -> dict[str, tuple[float, float]]:
    """``{domain or "averaged": (across-source spread, across-set spread)}`` for one (re)sample.

    The averaged entry is there when there are two domains or more.
    """
    domains = list(windows)
    sources = sorted(windows[domains[0]].values)
    cell_scores: dict[str, dict[str, np.ndarray]] = {}
    for d in domains:
        w = windows[d]
        idx = None if window_draw is None else window_draw[d]
        cell_scores[d] = {}
        for s in sources:
            sets = w.values[s]
            pick = range(len(sets)) if set_draw is None else set_draw[s]
            cell_scores[d][s] = np.array([_score(sets[i], w.weights, idx) for i in pick])
    if len(domains) > 1:
        cell_scores[AVERAGED] = {s: np.mean([cell_scores[d][s] for d in domains], axis=0) for s in sources}
    out = {}
    for d, by_source in cell_scores.items():
        means = [v.mean() for v in by_source.values()]
        within = [v.std(ddof=1) for v in by_source.values() if len(v) > 1]
        out[d] = (float(max(means) - min(means)), float(np.mean(within)) if within else float("nan"))
    return out


def bootstrap_spreads(
    methods: dict[str, dict[str, CellItems]], n_boot: int = N_BOOT, seed: int = 0
) -> dict[str, dict[str, np.ndarray]]:
    """Replicates ``{method: {domain: array [n_boot, 2]}}``; every method sees the same draws (paired)."""
    rng = np.random.default_rng(seed)
    first = next(iter(methods.values()))
    domains = list(first)
    n_windows = {d: len(first[d].weights) for d in domains}
    out: dict[str, dict[str, list[tuple[float, float]]]] = {m: {} for m in methods}
    for _ in range(n_boot):
        window_draw = {d: rng.integers(0, n, n) for d, n in n_windows.items()}
        set_seed = int(rng.integers(0, 2**31))
        for m, windows in methods.items():
            set_rng = np.random.default_rng(set_seed)  # the same set draw for every method
            set_draw = {s: set_rng.integers(0, len(v), len(v)) for s, v in sorted(windows[domains[0]].values.items())}
            for d, value in spreads(windows, set_draw, window_draw).items():
                out[m].setdefault(d, []).append(value)
    return {m: {d: np.asarray(v) for d, v in by.items()} for m, by in out.items()}


def _ci(values: np.ndarray) -> tuple[float, float]:
    if np.isnan(values).all():
        return float("nan"), float("nan")
    lo, hi = np.nanpercentile(values, [2.5, 97.5])
    return float(lo), float(hi)


def _shape(windows: dict[str, CellItems]) -> list[tuple[str, int]]:
    """Which sources a method's cells cover, and with how many sets each."""
    first = next(iter(windows.values()))
    return [(s, len(v)) for s, v in sorted(first.values.items())]


def sensitivity_tables(
    items: Any, domains: list[str] | None = None, measure: Measure = LOG_PPL, n_boot: int = N_BOOT, seed: int = 0
) -> tuple[Table, Table] | None:
    """The per-method table and the method-pair difference table, or None where the study cannot say.

    ``domains`` defaults to the perplexity tasks (two or more, with their mean); one zero-shot task with
    :data:`ACCURACY` gives its spreads alone.  Method pairs compare the averaged spreads, or the one task's.
    """
    import pandas as pd

    if domains is None:
        domains = sorted(t for t in items.task.unique() if str(t).startswith(PPL_PREFIX))
        if len(domains) < 2:
            return None
    if not domains:
        return None
    found = by_method(items, domains, measure)
    if not found:
        return None
    summary = AVERAGED if len(domains) > 1 else domains[0]
    unit = measure.unit
    boots = bootstrap_spreads(found, n_boot, seed)
    rows = []
    for m, windows in found.items():
        point = spreads(windows)
        for d in point:
            src, sets = point[d]
            src_ci, set_ci = _ci(boots[m][d][:, 0]), _ci(boots[m][d][:, 1])
            row = {
                "method": m,
                "held-out": d if d != AVERAGED else f"mean of {', '.join(domains)}",
                f"across-source spread ({unit}) [95% CI]": f"{src:.3f} [{src_ci[0]:.3f}, {src_ci[1]:.3f}]",
            }
            if measure is LOG_PPL:
                row["worst/best ppl"] = f"{np.exp(src):.3f}"
            row["sets"] = ", ".join(f"{src_name} {k}" for src_name, k in _shape(windows))
            row[f"across-set std ({unit}) [95% CI]"] = (
                "n/a (one set a source)" if np.isnan(sets) else f"{sets:.3f} [{set_ci[0]:.3f}, {set_ci[1]:.3f}]"
            )
            rows.append(row)
    pairs = []
    names = list(found)
    which = f"{unit}, averaged" if summary == AVERAGED else unit
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            if _shape(found[a]) != _shape(found[b]):
                continue  # a spread over other sources or set counts is not comparable
            diff = boots[a][summary][:, 0] - boots[b][summary][:, 0]
            gap = spreads(found[a])[summary][0] - spreads(found[b])[summary][0]
            lo, hi = _ci(diff)
            pairs.append(
                {
                    "method A": a,
                    "method B": b,
                    f"spread A - spread B ({which}) [95% CI]": f"{gap:+.3f} [{lo:+.3f}, {hi:+.3f}]",
                    "CI excludes 0": "yes" if lo > 0 or hi < 0 else "no",
                }
            )
    pair_frame = (
        pd.DataFrame(pairs) if pairs else pd.DataFrame({"method pairs": ["none cover the same sources and sets"]})
    )
    return Table(pd.DataFrame(rows)), Table(pair_frame)


def cell_scores(windows: dict[str, CellItems]) -> dict[str, dict[str, np.ndarray]]:
    """``{domain (and "averaged" over two or more): {source: score of each set}}`` for one method."""
    out = {
        d: {s: np.array([_score(x, w.weights) for x in sets]) for s, sets in w.values.items()}
        for d, w in windows.items()
    }
    domains = list(windows)
    if len(domains) > 1:
        out[AVERAGED] = {s: np.mean([out[d][s] for d in domains], axis=0) for s in out[domains[0]]}
    return out


@styled
def plot_sensitivity(found: dict[str, dict[str, CellItems]], path: Path, measure: Measure = LOG_PPL) -> Path | None:
    """One panel per held-out text (and their mean): per method, each set's distance from the method's best source."""
    scores = {m: cell_scores(w) for m, w in found.items()}
    panels = list(next(iter(scores.values())))
    methods = list(scores)
    sources = sorted({s for by in scores.values() for s in by[panels[0]]})
    size = (3.6 * len(panels), 3.6) if len(panels) > 1 else (6.4, 4.4)  # one panel: room for the titles
    fig, axes = pyplot().subplots(1, len(panels), figsize=size, sharey=True, squeeze=False)
    width = 0.8 / max(len(sources), 1)
    sign = -1.0 if measure.higher_is_better else 1.0  # plotted: how much worse than the best source
    for ax, panel in zip(axes[0], panels):
        for i, m in enumerate(methods):
            by_source = {s: sign * v for s, v in scores[m][panel].items()}
            best = min(v.mean() for v in by_source.values())
            for j, source in enumerate(sources):
                if source not in by_source:
                    continue
                x = i - 0.4 + width * (j + 0.5)
                values = by_source[source] - best
                ax.scatter(np.full(values.size, x), values, color=f"C{j}", s=12, label=source if i == 0 else None)
                ax.hlines(values.mean(), x - width / 2, x + width / 2, color=f"C{j}", linewidth=2)
        ax.set_xticks(range(len(methods)), methods, rotation=20, ha="right")
        ax.set_title(panel if panel != AVERAGED else "mean of the held-out texts")
        ax.grid(axis="y", alpha=0.3)
    direction = "below" if measure.higher_is_better else "above"
    axes[0][0].set_ylabel(f"{measure.unit} {direction} the method's best source")
    axes[0][-1].legend(fontsize=7, loc="best")
    fig.suptitle("Calibration-source spread per method (dots: sets; bars: source means)")
    return save_figure(fig, path)


def _plot(items: Any, tasks: list[str], measure: Measure, path: Path) -> list[Path]:
    drawn = plot_sensitivity(by_method(items, tasks, measure), path, measure)
    return [drawn] if drawn is not None else []


def per_model_tables(items: Any, domains: list[str], measure: Measure) -> tuple[Table, Table] | None:
    """:func:`sensitivity_tables` for each model (sources and sets are a model's own), with a model column
    in front where the study has several."""
    import pandas as pd

    models = sorted(items.model.unique())
    found = [(m, sensitivity_tables(items[items.model == m], domains, measure)) for m in models]
    tables = [(m, t) for m, t in found if t is not None]
    if len(models) == 1 or not tables:
        return tables[0][1] if tables else None
    rows = pd.concat([t[0].frame.assign(model=m) for m, t in tables], ignore_index=True)
    pairs = [t[1].frame.assign(model=m) for m, t in tables if "method pairs" not in t[1].frame]
    if not pairs:  # no model has comparable methods: say so for each
        pairs = [t[1].frame.assign(model=m) for m, t in tables]
    pair_frame = pd.concat(pairs, ignore_index=True)
    first = ["model"]
    return (
        Table(rows[first + [c for c in rows.columns if c not in first]]),
        Table(pair_frame[first + [c for c in pair_frame.columns if c not in first]]),
    )


def sections(directory: Path, frame: Any, out: Path | None) -> list[Section]:
    from calibench.report.frame import items_frame, load_samples

    if frame[frame.method != "dense"].source.nunique() < 2:
        return []
    plot_dir = Path(out) if out is not None and frame.model.nunique() == 1 else None
    found: list[Section] = []
    ppl = sorted(t for t in frame.task.unique() if str(t).startswith(PPL_PREFIX))
    if len(ppl) >= 2:
        items = items_frame(frame, load_samples(directory, ppl))
        tables = per_model_tables(items, ppl, LOG_PPL)
        if tables is not None:
            intro = (
                "Per method, how far apart the calibration sources land (best to worst, in log-perplexity) on "
                "each held-out text and on their mean, where each source's in-domain advantage is averaged with "
                "its out-of-domain cost; and how far apart the sets of one source land. CIs: hierarchical "
                f"bootstrap (sets within each source, then windows shared by all cells), {N_BOOT} replicates, "
                "paired across methods. A best-to-worst spread is biased upward by noise; compare it with the "
                "across-set std."
            )
            plots = _plot(items, ppl, LOG_PPL, plot_dir / "source_sensitivity.png") if plot_dir else []
            found.append(Section(HEADING, intro=intro, tables=[tables[0], tables[1]], plots=plots))
    for task in sorted(t for t in frame.task.unique() if not str(t).startswith(PPL_PREFIX)):
        items = items_frame(frame, load_samples(directory, [task]))
        for measure, what in ((ACCURACY, "accuracy"), (TARGET_LL, "log-likelihood of the target")):
            tables = per_model_tables(items, [task], measure)
            if tables is None:
                continue
            intro = (
                f"Per method, how far apart the calibration sources land (best to worst source mean {what}) on "
                f"{task}, and how far apart the sets of one source land (mean over sources of the across-set "
                "std). CIs: hierarchical bootstrap (sets within each source, then the items every cell shares), "
                f"{N_BOOT} replicates, paired across methods. A best-to-worst spread is biased upward by noise; "
                "compare it with the across-set std."
            )
            name = f"source_sensitivity_{task.replace(':', '_')}_{measure.column.replace('.', '_')}.png"
            plots = _plot(items, [task], measure, plot_dir / name) if plot_dir else []
            heading = f"Source sensitivity per method on {task} ({what})"
            found.append(Section(heading, intro=intro, tables=[tables[0], tables[1]], plots=plots))
    return found
