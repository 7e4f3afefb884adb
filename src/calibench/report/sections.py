"""The registry of report section providers, in report order: each turns a study into zero or more sections.

A provider is ``provider(directory, frame, out) -> list[Section]``:
``directory`` is the study (for per-item samples), ``frame`` the grid's
results (noise-floor reruns left out), ``out`` the folder its PNGs go to
(``None``: tables only).  A provider returns nothing where its part does not
apply (no accuracy task, a single source, no ``summ:`` task ...).

:data:`PROVIDERS` names each provider by a callable or by a lazy
``"module:function"`` entry that is imported only when the report is
written, so a part with heavy imports (summarization) costs nothing to
studies without it.  Add a part with :func:`register` (or a line in the list).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from calibench.core.errors import UnknownNameError
from calibench.core.registry import Registry
from calibench.report import plots, tables
from calibench.report.frame import load_frame, load_samples
from calibench.report.render import MARK, Section, Table

ProviderFunction = Callable[[Path, Any, "Path | None"], Any]

AVERAGE_HEADING = "Average accuracy across sets (mean, std, min, max, range)"
PER_TASK_HEADING = "Per-task accuracy across sets"
GAP_HEADING = "Across sources: best minus worst (mean average accuracy)"
PERPLEXITY_HEADING = "Perplexity across sets"
INCREASE_HEADING = "Perplexity increase over dense, per calibration source and held-out text (%)"
SAMPLE_SIZE_HEADING = "Sample-size curves"
NOISE_HEADING = "Noise floor: the largest change under harmless perturbations, against the spread across sets"
DENSE_HEADING = (
    "Compressed against dense, item by item (compressed minus dense over shared items; paired bootstrap "
    "95% CI, McNemar or sign-flip p, Holm across each model x task)"
)
PAIRED_HEADING = (
    "Differences between sources (source A minus source B over shared items; sets and items random where "
    "each source has 2+ sets, 95% CI, Holm across the pairs of each model x method x task)"
)
SOURCE_CI_HEADING = "Source means with a hierarchical bootstrap 95% CI (sets, then items)"
ACTIVATION_HEADING = "Activation statistics of each source's sets, on the dense model (act:outliers)"
SPREAD_HEADING = "Perplexity spread across calibration sets, per model and method"

SIGNIFICANCE_LEGEND = (
    f"Significance: a {MARK} after p (Holm) marks a Holm-adjusted p < {tables.ALPHA} within the "
    "table's family. Column test: the set-aware t test where scope is sources; otherwise McNemar's "
    "exact test where both sides are single cells' 0/1 accuracies, the sign-flip permutation test "
    "otherwise (window NLLs, accuracies averaged over sets). For perplexity the difference is in "
    "log-perplexity; ppl ratio is its exp."
)
PAIRED_INTRO = (
    "A statement about sources must count which sets happened to be drawn, not only which items were scored. "
    "Where both sources have 2 or more sets (scope: sources) the decision is the set-aware t test: the "
    "difference of the sources' means with the set-to-set variance of each source and the item-to-item "
    "variance of the paired differences, Welch degrees of freedom (df); with three sets per source the t "
    "quantile is wide, as it should be. p (these sets) is the items-only paired test (sign-flip or McNemar "
    "on the set-averaged item scores): it holds the drawn sets fixed and answers whether A beat B for these "
    "sets; it is the decision only where a source has a single set (scope: these sets). "
    "items needed: items a paired test would need for 80% power at the observed difference; "
    "sets needed: sets per source the set-to-set variance alone calls for."
)
DENSE_INTRO = (
    "Each method x source against the model's uncompressed cell on the same items: where compressing "
    "with this calibration data measurably changed the task, and by how much. The compressed score is "
    "averaged over the source's sets and the test resamples items only: a statement for these sets."
)
SOURCE_CI_INTRO = (
    "Each source's mean with a CI that counts both the set-to-set and the item-to-item variance: "
    "resample the sets, then the items (one item draw shared by every set, as they share items). "
    "The naive half-width from the std across sets alone misses the item noise."
)


def _plots(out: Path | None, frame: Any, stem: str, draw: Callable[[Any, Path], Path | None]) -> list[Path]:
    return [] if out is None else plots.per_model(frame, out, stem, draw)


def accuracy_sections(directory: Path, frame: Any, out: Path | None) -> list[Section]:
    acc = tables.accuracy_table(frame)
    if not len(acc):
        return []
    return [
        Section(
            AVERAGE_HEADING,
            tables=[acc[acc.task == tables.AVERAGE].drop(columns=["task"])],
            plots=_plots(out, frame, "accuracy_by_source", plots.plot_average_by_source),
        ),
        Section(
            PER_TASK_HEADING,
            tables=[acc[acc.task != tables.AVERAGE]],
            plots=_plots(out, frame, "task_spread", plots.plot_task_spread),
        ),
    ]


def gap_sections(directory: Path, frame: Any, out: Path | None) -> list[Section]:
    gaps = tables.gap_table(tables.accuracy_table(frame))
    return [Section(GAP_HEADING, tables=[gaps])] if len(gaps) else []


def perplexity_sections(directory: Path, frame: Any, out: Path | None) -> list[Section]:
    ppl = tables.perplexity_table(frame)
    found = []
    if len(ppl):
        found.append(
            Section(
                PERPLEXITY_HEADING,
                tables=[ppl],
                plots=_plots(out, frame, "perplexity_by_source", plots.plot_perplexity_by_source),
            )
        )
    increase = tables.perplexity_increase_table(frame)
    if len(increase) and increase.task.nunique() > 1:
        found.append(
            Section(
                INCREASE_HEADING,
                tables=[increase],
                plots=_plots(out, increase, "perplexity_matrix", plots.plot_perplexity_matrix),
            )
        )
    return found


def sample_size_sections(directory: Path, frame: Any, out: Path | None) -> list[Section]:
    drawn = _plots(out, frame, "sample_size", plots.plot_sample_size)
    return (
        [
            Section(
                SAMPLE_SIZE_HEADING,
                intro="Mean ± std across sets against the number of calibration samples.",
                plots=drawn,
            )
        ]
        if drawn
        else []
    )


def noise_floor_sections(directory: Path, frame: Any, out: Path | None) -> list[Section]:
    """The reruns are not in the grid's frame: the full frame is read again from the store."""

    if "perturbation" not in frame.columns:
        return []
    everything = load_frame(directory)[0]
    noise = tables.noise_floor_table(everything, tables.accuracy_table(frame), tables.perplexity_table(frame))
    if not len(noise):
        return []
    return [Section(NOISE_HEADING, tables=[noise], plots=_plots(out, noise, "noise_floor", plots.plot_noise_floor))]


def _paired_tasks(frame: Any) -> list[str]:
    """Tasks with a per-item score: accuracy tasks and perplexity."""
    scored = frame[frame.metric.isin([tables.ACCURACY_METRIC, tables.PERPLEXITY_METRIC])]
    return sorted(scored.task.unique())


def _marked(frame: Any) -> Table:
    return Table(frame, mark=("p (Holm)", "significant"), legend=SIGNIFICANCE_LEGEND)


def dense_sections(directory: Path, frame: Any, out: Path | None) -> list[Section]:

    if not (frame.method == "dense").any() or not (frame.method != "dense").any():
        return []
    matrices = tables.dense_matrices(frame, load_samples(directory, _paired_tasks(frame)))
    if not matrices:
        return []
    return [Section(DENSE_HEADING, intro=DENSE_INTRO, tables=[_marked(tables.dense_table(matrices))])]


def _source_pairs(directory: Path, frame: Any) -> tuple[Any, Any] | None:
    """The source-pair and per-source tables, or None below two sources (a note says so) or without samples."""
    compressed = frame[(frame.method != "dense") & (frame.source != "-")]
    if compressed.empty or compressed.source.nunique() < 2:
        return None
    matrices = tables.source_matrices(frame, load_samples(directory, _paired_tasks(compressed)))
    return tables.paired_tables(matrices) if matrices else None


def paired_sections(directory: Path, frame: Any, out: Path | None) -> list[Section]:
    """Source pairs and per-source CIs."""
    found = _source_pairs(directory, frame)
    if found is None:
        return []
    pairs, sources = found
    forest = _plots(out, pairs, "paired_differences", plots.plot_forest)
    return [
        Section(PAIRED_HEADING, intro=PAIRED_INTRO, tables=[_marked(pairs)], plots=forest),
        Section(SOURCE_CI_HEADING, intro=SOURCE_CI_INTRO, tables=[sources]),
    ]


RESOLVED_HEADING = "What this study resolved: source pairs with Holm p < 0.05"
RESOLVED_INTRO = (
    "Pairs of calibration sources whose difference is significant after Holm within each model x method x task "
    "(details, and every other pair, in the table of differences between sources below). Scope sources: the "
    "set-aware test (sets and items random), a statement about the sources; scope these sets: items only, "
    "about the drawn sets."
)
RESOLVED_COLUMNS = ["model", "method", "task", "better", "worse", "difference", "CI low", "CI high",
                    "ppl ratio", "p (Holm)", "scope", "sets"]  # fmt: skip


def resolved_table(pairs: Any) -> Any:
    """The significant rows of the source-pair table, each as "better than worse by difference [CI]"."""
    import pandas as pd

    rows = []
    for _, row in pairs[pairs["significant"]].iterrows():
        a_better = row["better"] == row["source A"]
        sign = 1.0 if a_better else -1.0  # the difference of the better source minus the worse
        low, high = sorted((sign * row["CI low"], sign * row["CI high"]))
        rows.append(
            {
                "model": row["model"],
                "method": row["method"],
                "task": row["task"],
                "better": row["better"],
                "worse": row["source B"] if a_better else row["source A"],
                "difference": sign * row["difference (A-B)"],
                "CI low": low,
                "CI high": high,
                "ppl ratio": row["ppl ratio (A/B)"] ** sign,
                "p (Holm)": row["p (Holm)"],
                "scope": row["scope"],
                "sets": f"{row['sets A']}+{row['sets B']}",
            }
        )
    return pd.DataFrame(rows, columns=RESOLVED_COLUMNS)


def resolved_sections(directory: Path, frame: Any, out: Path | None) -> list[Section]:
    """The headline: which source pairs the study resolved (nothing where nothing was, or nothing compares)."""
    found = _source_pairs(directory, frame)
    if found is None:
        return []
    pairs = found[0]
    resolved = resolved_table(pairs)
    if resolved.empty:
        intro = (
            f"None of the {len(pairs)} source pairs is significant after Holm: at these sizes the study cannot "
            "tell the sources apart (see items needed and sets needed in the table of differences below)."
        )
        return [Section(RESOLVED_HEADING, intro=intro)]
    return [Section(RESOLVED_HEADING, intro=RESOLVED_INTRO, tables=[resolved])]


def resolved_lines(section: Section) -> list[str]:
    """The headline as one line per resolved pair, for the console."""
    if not section.tables:
        return [section.intro or ""]
    lines = []
    for _, row in section.tables[0].frame.iterrows():
        ratio = "" if row["ppl ratio"] != row["ppl ratio"] else f", ppl ratio {row['ppl ratio']:.3f}"
        quantity = tables.quantity(row["task"])
        lines.append(
            f"{row['method']} {row['task']}: {row['better']} better than {row['worse']}, {quantity} "
            f"{row['difference']:+.4f} [{row['CI low']:+.4f}, {row['CI high']:+.4f}]{ratio}, Holm p "
            f"{row['p (Holm)']:.2g} ({row['scope']})"
        )
    return lines


def activation_sections(directory: Path, frame: Any, out: Path | None) -> list[Section]:
    activations, spread = tables.activation_table(frame), tables.perplexity_spread_table(frame)
    found = []
    if len(activations):
        drawn = (
            []
            if out is None
            else [
                p
                for p in (plots.plot_activation_vs_perplexity(frame, Path(out) / "activation_vs_perplexity.png"),)
                if p is not None
            ]
        )  # a panel per model
        found.append(Section(ACTIVATION_HEADING, tables=[activations], plots=drawn))
    if len(spread) and (frame.model.nunique() > 1 or len(activations)):
        found.append(Section(SPREAD_HEADING, tables=[spread]))
    return found


#: Every provider, by name, in report order.
PROVIDERS: Registry[ProviderFunction] = Registry("report section provider", ordered=True)


def register(name: str, target: ProviderFunction | str, *, before: str | None = None) -> None:
    """Add (or replace) a provider, at the end or before the one named ``before``; ``target`` is a callable or
    a ``"module:function"`` string imported when the report is written."""
    if before is not None and before not in PROVIDERS:
        raise UnknownNameError(PROVIDERS.unknown_message(before))
    PROVIDERS.unregister(name)
    if isinstance(target, str):
        PROVIDERS.register_lazy(name, target)
    else:
        PROVIDERS.register(name, target)
    if before is not None:
        PROVIDERS.move_before(name, before)


register("resolved", resolved_sections)
register("accuracy", accuracy_sections)
register("gap", gap_sections)
register("perplexity", perplexity_sections)
register("sample size", sample_size_sections)
register("noise floor", noise_floor_sections)
register("against dense", dense_sections)
register("source pairs", paired_sections)
register("sensitivity", "calibench.report.sensitivity:sections")
register("adaptive", "calibench.report.adaptive:sections")
register("activations", activation_sections)
register("predictors", "calibench.predict.report:sections")
register("summarization", "calibench.report.summarization:sections")


def as_sections(result: Any) -> list[Section]:
    """A provider's answer as a list of sections (``None`` or an empty answer: none)."""
    found = list(result or [])
    if not all(isinstance(s, Section) for s in found):
        raise TypeError("a report section provider returns a list of Section objects")
    return found


def build_sections(directory: str | Path, frame: Any, out: str | Path | None) -> list[Section]:
    """Every registered provider's sections, in report order."""
    directory, out = Path(directory), (Path(out) if out is not None else None)
    return [s for name in PROVIDERS.names() for s in as_sections(PROVIDERS.get(name)(directory, frame, out))]
