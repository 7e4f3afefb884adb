"""The study report's summarization part: metrics across sets, paired differences to dense, one plot.

Called by :func:`calibench.study.report.write_report` for studies with
``summ:`` tasks.  Across sets it gives each metric's mean, std, min, max and
range (like accuracy elsewhere in the report).  Against dense it pairs each
compressed cell's per-document items (the store's ``samples`` table, keyed
by ``doc_hash``) with the dense cell of the same model and task: the mean
difference with a paired bootstrap CI, for the metrics that carry the
paper's argument (quality, source overlap, novelty, consistency).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from calibench.summarize.task import SUMM_PREFIX

KEY_METRICS = ("rouge1", "rougeL", "src_rouge2", "coverage", "density", "novel_2", "summac_zs", "harim_plus")
SPREAD_KEYS = ["model", "method", "source", "n", "seq_len", "task", "metric"]


def summarization_frame(frame: Any) -> Any:
    return frame[frame.task.str.startswith(SUMM_PREFIX)]


def spread_table(frame: Any) -> Any:
    """Per (model, method, source, n, seq_len, task, metric): spread of the cell means across sets."""
    import pandas as pd

    from calibench.study.report import _spread

    summ = summarization_frame(frame)
    out = [{**dict(zip(SPREAD_KEYS, group)), **_spread(part["value"])}
           for group, part in summ.groupby(SPREAD_KEYS, sort=True)]
    return pd.DataFrame(out)


def paired_to_dense(directory: str | Path, frame: Any, metrics: tuple[str, ...] = KEY_METRICS) -> Any:
    """Each compressed cell against its model's dense cell, per task and metric, paired per document."""
    import pandas as pd

    from calibench.study.store import Store
    from calibench.summarize.compare import paired_rows

    summ = summarization_frame(frame)
    if summ.empty:
        return pd.DataFrame()
    cells = summ.drop_duplicates("key")[["key", "model", "method", "source", "set_index", "n", "seq_len"]]
    store = Store(directory)
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
                    out.append({"model": model, "method": cell.method, "source": cell.source, "set": cell.set_index,
                                "task": task, "metric": r["metric"], "dense": r["base"], "compressed": r["other"],
                                "diff": r["diff"], "ci_low": r["low"], "ci_high": r["high"], "docs": r["n"],
                                "ci excludes 0": "yes" if r["significant"] else ""})
    return pd.DataFrame(out)


def scatter(directory: str | Path, frame: Any, path: Path) -> Path | None:
    """Overlap against consistency for every summary of every cell, coloured by method and source."""
    from calibench.study.store import Store
    from calibench.summarize.plot import overlap_consistency_plot

    summ = summarization_frame(frame)
    if summ.empty:
        return None
    cells = summ.drop_duplicates("key").set_index("key")
    store = Store(directory)
    try:
        samples = {k: v for k, v in store.samples().items() if k[1].startswith(SUMM_PREFIX)}
    finally:
        store.close()
    groups: dict[str, list[dict[str, Any]]] = {}
    for (key, _task), items in sorted(samples.items()):
        if key not in cells.index:
            continue
        c = cells.loc[key]
        label = "dense" if c.method == "dense" else f"{c.method} / {c.source}"
        groups.setdefault(label, []).extend(items.values())
    return overlap_consistency_plot(sorted(groups.items()), path)


def sections(directory: str | Path, frame: Any, out: Path) -> tuple[list[tuple[str, Any]], list[Path]]:
    """(headings with tables, plots) for the report; empty when the study has no summ: task."""
    if summarization_frame(frame).empty:
        return [], []
    found = [("Summarization metrics across sets (mean, std, min, max, range)", spread_table(frame))]
    paired = paired_to_dense(directory, frame)
    if len(paired):
        found.append(("Summarization: compressed minus dense, paired per document (95% paired bootstrap CI)", paired))
    plot = scatter(directory, frame, out / "summarization_overlap_consistency.png")
    return found, [plot] if plot else []
