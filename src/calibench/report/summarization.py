"""The study report's summarization part: metrics across sets, paired differences to dense, one plot.

Called by :func:`calibench.report.study.write_report` for studies with
``summ:`` tasks.  Across sets it gives each metric's mean, std, min, max and
range (like accuracy elsewhere in the report).  Against dense it pairs each
compressed cell's per-document items (the store's ``samples`` table, keyed
by ``doc_hash``) with the dense cell of the same model and task: the mean
difference with a paired bootstrap CI, for the metrics that carry the
paper's argument (quality, source overlap, novelty, consistency).  The plot
is drawn once per model (models never share a panel).

Each consistency metric carries its judge's validated AUC and on what data (read from this machine's cache
for the judge identity each cell's record holds, :mod:`calibench.summarize.claims`), and one sentence per
metric and judge says whether its differences may be read as more or less hallucination.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from calibench.report.plots import model_paths
from calibench.report.render import Section
from calibench.report.summarization_plots import overlap_consistency_plot
from calibench.report.tables import spread_table as spread
from calibench.study.store import Store
from calibench.summarize.claims import JudgeRecord, judge_kinds, records_of, table_reading
from calibench.summarize.compare import degenerate, items_by_doc, metric_value, paired_rows
from calibench.summarize.metrics import LEXICAL_METRICS
from calibench.summarize.repetition import DEGENERATE_AT
from calibench.summarize.task import SUMM_PREFIX
from calibench.summarize.validity import read_validity

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


VALIDITY_COLUMN = "judge validity"
NO_JUDGE = "no judge recorded"


def cell_judges(records: dict[str, dict[str, Any]]) -> dict[tuple[str, str], dict[str, JudgeRecord]]:
    """Each cell's summ: tasks' judges by (cell key, task), from the records the store holds."""
    out = {}
    for key, record in records.items():
        for task in (record.get("evaluation") or {}).get("tasks", []):
            if str(task.get("task", "")).startswith(SUMM_PREFIX):
                try:
                    out[(key, task["task"])] = records_of(task.get("details") or {})
                except (KeyError, TypeError, ValueError):  # a record written otherwise: no judge known
                    out[(key, task["task"])] = {}
    return out


class _Validity:
    """The validity cell of a paired row, each judge identity read from the cache once."""

    def __init__(self) -> None:
        self.here: dict[str, JudgeRecord] = {}
        self.lexical: dict[str, str] = {}

    def judge(self, dense: JudgeRecord | None, compressed: JudgeRecord | None) -> JudgeRecord | None:
        found = compressed or dense
        if found is None:
            return None
        key = json.dumps(found.identity, sort_keys=True)
        if key not in self.here:
            self.here[key] = found.here()
        return self.here[key]

    def cell(self, metric: str, dense: JudgeRecord | None, compressed: JudgeRecord | None) -> str:
        if metric in judge_kinds():
            if dense is not None and compressed is not None and dense.identity != compressed.identity:
                return "different judges in the dense and compressed cells: not comparable"
            judge = self.judge(dense, compressed)
            return judge.text() if judge is not None else NO_JUDGE
        if metric in LEXICAL_METRICS:
            if metric not in self.lexical:
                found = read_validity({"scorer": metric})
                self.lexical[metric] = found.text() if found is not None else ""
            return self.lexical[metric]
        return ""


def paired_to_dense(directory: str | Path, frame: Any, metrics: tuple[str, ...] = KEY_METRICS) -> Any:
    """Each compressed cell against its model's dense cell, per task and metric, paired per document, with the
    validity of the judge behind each consistency metric (``judge validity``)."""
    return paired_with_readings(directory, frame, metrics)[0]


@dataclass
class _Pair:
    """One compressed cell of a summ: task beside its model's dense cell: their items by document, their judges."""

    model: str
    cell: Any  # the compressed cell's row (method, source, set_index, ...)
    task: str
    dense: dict[str, dict[str, Any]]
    compressed: dict[str, dict[str, Any]]
    dense_judges: dict[str, JudgeRecord]
    judges: dict[str, JudgeRecord]


def _pairs(directory: str | Path, frame: Any) -> list[_Pair]:
    summ = summarization_frame(frame)
    if summ.empty:
        return []
    cells = summ.drop_duplicates("key")[["key", "model", "method", "source", "set_index", "n", "seq_len"]]
    store = Store(directory, read_only=True)
    try:
        samples = {k: v for k, v in store.samples().items() if k[1].startswith(SUMM_PREFIX)}
        judges = cell_judges(store.records())
    finally:
        store.close()
    out = []
    for task in sorted({t for _, t in samples}):
        for model, part in cells.groupby("model"):
            dense = part[part.method == "dense"]
            if dense.empty or (dense.key.iloc[0], task) not in samples:
                continue
            base_key = dense.key.iloc[0]
            for cell in part[part.method != "dense"].itertuples():
                other = samples.get((cell.key, task))
                if other:
                    out.append(
                        _Pair(
                            str(model),
                            cell,
                            task,
                            items_by_doc(list(samples[(base_key, task)].values())),
                            items_by_doc(list(other.values())),
                            judges.get((base_key, task), {}),
                            judges.get((cell.key, task), {}),
                        )
                    )
    return out


def _row(pair: _Pair, r: dict[str, Any], validity: _Validity) -> dict[str, Any]:
    m = r["metric"]
    return {
        "model": pair.model,
        "method": pair.cell.method,
        "source": pair.cell.source,
        "set": pair.cell.set_index,
        "task": pair.task,
        "metric": m,
        "dense": r["base"],
        "compressed": r["other"],
        "diff": r["diff"],
        "ci_low": r["low"],
        "ci_high": r["high"],
        "docs": r["n"],
        "ci excludes 0": "yes" if r["significant"] else "",
        VALIDITY_COLUMN: validity.cell(m, pair.dense_judges.get(m), pair.judges.get(m)),
    }


def paired_with_readings(
    directory: str | Path, frame: Any, metrics: tuple[str, ...] = KEY_METRICS
) -> tuple[Any, list[str]]:
    """:func:`paired_to_dense` and one sentence per consistency metric and judge
    (:func:`calibench.summarize.claims.table_reading`): whether its differences read as hallucination."""
    import pandas as pd

    validity = _Validity()
    readings: dict[tuple[str, str], list[Any]] = {}  # (metric, judge identity) -> [judge, significant, rows]
    out = []
    for pair in _pairs(directory, frame):
        for r in paired_rows(pair.dense, pair.compressed, metrics):
            m = r["metric"]
            d, c = pair.dense_judges.get(m), pair.judges.get(m)
            if m in judge_kinds():
                judge = validity.judge(d, c)
                comparable = d is None or c is None or d.identity == c.identity
                key = (m, json.dumps(judge.identity, sort_keys=True) if judge else "")
                seen = readings.setdefault(key, [judge, 0, 0])
                seen[1] += bool(r["significant"]) and comparable
                seen[2] += 1
            out.append(_row(pair, r, validity))
    notes = [table_reading(m, judge, significant, rows) for (m, _), (judge, significant, rows) in readings.items()]
    return pd.DataFrame(out), notes


def clean_documents(directory: str | Path, frame: Any, metrics: tuple[str, ...] = KEY_METRICS) -> Any:
    """Each compressed cell against dense on the documents where *neither* summary degenerated
    (:func:`calibench.summarize.compare.degenerate`: a loop, or under 3 words), with how many degenerated on each
    side, the paired difference and its bootstrap CI, a sign-flip p-value per row and Holm's adjustment over every
    row of the table (cells x metrics: one family, valid whatever the dependence between metrics).

    Why: a summary that loops over one copied phrase scores as copying a lot and as entailed by the source, so
    differences over all documents mix "the pruned model copies more" with "the pruned model degenerated".
    """
    import pandas as pd

    from calibench.core.stats import holm, sign_flip_pvalue

    validity = _Validity()
    out = []
    for pair in _pairs(directory, frame):
        common = sorted(set(pair.dense) & set(pair.compressed))
        bad_dense = {d for d in common if degenerate(pair.dense[d])}
        bad_other = {d for d in common if degenerate(pair.compressed[d])}
        clean = [d for d in common if d not in bad_dense and d not in bad_other]
        if len(clean) < 2:
            continue
        dense = {d: pair.dense[d] for d in clean}
        other = {d: pair.compressed[d] for d in clean}
        for r in paired_rows(dense, other, metrics):
            a = np.array([metric_value(dense[d], r["metric"]) for d in clean])
            b = np.array([metric_value(other[d], r["metric"]) for d in clean])
            keep = np.isfinite(a) & np.isfinite(b)
            out.append(
                {
                    **_row(pair, r, validity),
                    "degenerate dense": f"{len(bad_dense)}/{len(common)}",
                    "degenerate compressed": f"{len(bad_other)}/{len(common)}",
                    "p": sign_flip_pvalue(b[keep], a[keep]) if keep.sum() > 1 else float("nan"),
                }
            )
    table = pd.DataFrame(out)
    if len(table):
        table["p (Holm)"] = holm(table["p"].tolist())
        # the counts after the cell's labels, the judge's validity last
        labels = ["model", "method", "source", "set", "task", "degenerate dense", "degenerate compressed"]
        rest = [c for c in table.columns if c not in labels and c != VALIDITY_COLUMN]
        table = table[labels + rest + [VALIDITY_COLUMN]]
    return table


def scatter(directory: str | Path, frame: Any, out: Path, validity: dict[str, str] | None = None) -> list[Path]:
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
        overlap_consistency_plot(sorted(groups[model].items()), path, title=model, validity=validity)
        for model, path in paths.items()
    ]
    return [p for p in drawn if p is not None]


SPREAD_HEADING = "Summarization metrics across sets (mean, std, min, max, range)"
PAIRED_HEADING = "Summarization: compressed minus dense, paired per document (95% paired bootstrap CI)"
CLEAN_HEADING = "Summarization on the documents where neither summary degenerated (paired, Holm over the table)"
CLEAN_NOTE = (
    f"A summary degenerates when more than {DEGENERATE_AT:.0%} of its word 3-grams occurred earlier in it "
    "(repeat_3), or it has under 3 words: a loop of one "
    "copied phrase reads as heavy copying and as entailed, so these rows leave every such document out on both "
    "sides; `degenerate` columns count them.  p: two-sided sign-flip permutation test of the paired difference; "
    "p (Holm): adjusted over every row of this table."
)


def sections(directory: str | Path, frame: Any, out: Path | None) -> list[Any]:
    """The report's summarization sections (:class:`calibench.report.render.Section`); none without a summ: task."""

    if summarization_frame(frame).empty:
        return []
    paired, readings = paired_with_readings(directory, frame)
    texts = judge_texts(directory)
    shown = set(summarization_frame(frame).metric)
    texts.update({m: NO_JUDGE for m in judge_kinds() if m in shown and m not in texts})
    spread_notes = [f"{m} judge validity: {t}" for m, t in texts.items() if m in shown]
    found = [Section(SPREAD_HEADING, tables=[spread_table(frame)], notes=spread_notes)]
    if len(paired):
        found.append(Section(PAIRED_HEADING, tables=[paired], notes=readings))
        clean = clean_documents(directory, frame)
        if len(clean):
            found.append(Section(CLEAN_HEADING, tables=[clean], notes=[CLEAN_NOTE]))
    if out is not None:
        found[-1].plots.extend(scatter(directory, frame, out, validity={m: t for m, t in texts.items()}))
    return found


def judge_texts(directory: str | Path) -> dict[str, str]:
    """Each consistency metric's judge validity, read here for every judge the study's cells recorded (several
    judges, such as one HaRiM+ judge per model: each named, joined by `` | ``)."""
    store = Store(directory, read_only=True)
    try:
        judges = cell_judges(store.records())
    finally:
        store.close()
    found: dict[str, dict[str, JudgeRecord]] = {}
    for per_task in judges.values():
        for metric, judge in per_task.items():
            found.setdefault(metric, {}).setdefault(json.dumps(judge.identity, sort_keys=True), judge)
    out = {}
    for metric, by_identity in found.items():
        here = [j.here() for j in by_identity.values()]
        out[metric] = here[0].text() if len(here) == 1 else " | ".join(f"{j.shown_model}: {j.text()}" for j in here)
    return out
