"""The study report's summarization part: metrics across sets, paired differences to dense, one plot.

Called by :func:`calibench.report.study.write_report` for studies with
``summ:`` tasks.  Across sets it gives each metric's mean, std, min, max and
range (like accuracy elsewhere in the report).  Against dense it pairs each
compressed cell's per-document items (the store's ``samples`` table, keyed
by ``doc_hash``) with the dense cell of the same model and task: the mean
difference with a paired bootstrap CI, for the metrics that carry the
paper's argument (quality, source overlap, novelty, consistency).  The plot
is drawn once per model (models never share a panel).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from calibench.report.plots import model_paths
from calibench.report.render import Section
from calibench.report.summarization_plots import overlap_consistency_plot
from calibench.report.tables import spread_table as spread
from calibench.study.store import Store
from calibench.summarize.compare import paired_rows
from calibench.summarize.task import SUMM_PREFIX

KEY_METRICS = (
    "rouge1",
    "rougeL",
    "src_rouge2",
    "coverage",
    "density",
    "novel_2",
    "repeat_3",
    "summac_zs",
    "harim_plus",
)
SPREAD_KEYS = ["model", "method", "source", "n", "seq_len", "task", "metric"]


def summarization_frame(frame: Any) -> Any:
    return frame[frame.task.str.startswith(SUMM_PREFIX)]


def spread_table(frame: Any) -> Any:
    """Per (model, method, source, n, seq_len, task, metric): spread of the cell means across sets."""

    return spread(summarization_frame(frame), SPREAD_KEYS)


def paired_to_dense(directory: str | Path, frame: Any, metrics: tuple[str, ...] = KEY_METRICS) -> Any:
    """Each compressed cell against its model's dense cell, per task and metric, paired per document."""
    import pandas as pd

    summ = summarization_frame(frame)
    if summ.empty:
        return pd.DataFrame()
    cells = summ.drop_duplicates("key")[["key", "model", "method", "source", "set_index", "n", "seq_len"]]
    store = Store(directory, read_only=True)
    try:
        samples = {k: v for k, v in store.samples().items() if k[1].startswith(SUMM_PREFIX)}
    finally:
        store.close()
    out = []
    for task in sorted({t for _, t in samples}):
        for model, part in cells.groupby("model"):
            dense = part[part.method == "dense"]
            if dense.empty or (dense.key.iloc[0], task) not in samples:
                continue
            base = samples[(dense.key.iloc[0], task)]
            for cell in part[part.method != "dense"].itertuples():
                other = samples.get((cell.key, task))
                if not other:
                    continue
                for r in paired_rows(base, other, metrics):
                    out.append(
                        {
                            "model": model,
                            "method": cell.method,
                            "source": cell.source,
                            "set": cell.set_index,
                            "task": task,
                            "metric": r["metric"],
                            "dense": r["base"],
                            "compressed": r["other"],
                            "diff": r["diff"],
                            "ci_low": r["low"],
                            "ci_high": r["high"],
                            "docs": r["n"],
                            "ci excludes 0": "yes" if r["significant"] else "",
                        }
                    )
    return pd.DataFrame(out)


def scatter(directory: str | Path, frame: Any, out: Path) -> list[Path]:
    """Per model, overlap against consistency for every summary of every cell, coloured by method and source."""

    summ = summarization_frame(frame)
    if summ.empty:
        return []
    cells = summ.drop_duplicates("key").set_index("key")
    store = Store(directory, read_only=True)
    try:
        samples = {k: v for k, v in store.samples().items() if k[1].startswith(SUMM_PREFIX)}
    finally:
        store.close()
    groups: dict[str, dict[str, list[dict[str, Any]]]] = {}  # model -> label -> items
    for (key, _task), items in sorted(samples.items()):
        if key not in cells.index:
            continue
        c = cells.loc[key]
        label = "dense" if c.method == "dense" else f"{c.method} / {c.source}"
        groups.setdefault(c.model, {}).setdefault(label, []).extend(items.values())
    paths = model_paths(sorted(groups), Path(out), "summarization_overlap_consistency")
    drawn = [
        overlap_consistency_plot(sorted(groups[model].items()), path, title=model) for model, path in paths.items()
    ]
    return [p for p in drawn if p is not None]


SPREAD_HEADING = "Summarization metrics across sets (mean, std, min, max, range)"
PAIRED_HEADING = "Summarization: compressed minus dense, paired per document (95% paired bootstrap CI)"


def sections(directory: str | Path, frame: Any, out: Path | None) -> list[Any]:
    """The report's summarization sections (:class:`calibench.report.render.Section`); none without a summ: task."""

    if summarization_frame(frame).empty:
        return []
    found = [Section(SPREAD_HEADING, tables=[spread_table(frame)])]
    paired = paired_to_dense(directory, frame)
    if len(paired):
        found.append(Section(PAIRED_HEADING, tables=[paired]))
    if out is not None:
        found[-1].plots.extend(scatter(directory, frame, out))
    return found
