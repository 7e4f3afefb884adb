"""Dense against compressed, paired per document: mean differences with paired bootstrap CIs.

Two runs of the same ``summ:`` task (``calibench eval ... --log-samples
--out X.json``, or two cells of a study) are paired on each document's
``doc_hash``; only documents both runs summarized count (one run may have
skipped a document the other kept).  The difference is other minus base, so
with the dense model as base a positive ``coverage`` difference means the
compressed model copies more.

A consistency metric (``summac_zs``, ``harim_plus``) is shown with its judge's validated AUC and on what data,
read from this machine's cache (:mod:`.claims`); :func:`check_judges` refuses runs whose judge is not validated
here, that record no judge, or that were scored by different judges, and a difference is read as more or less
hallucination only under a judge whose AUC lower bound is above chance (:func:`.claims.reading`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from calibench.core.errors import CalibenchError
from calibench.core.text import markdown_table_lines
from calibench.evaluation.results import EvalResult
from calibench.summarize.claims import JudgeRecord, judge_kinds, reading, records_of
from calibench.summarize.metrics import ALL_METRICS, CONSISTENCY_METRIC, LEXICAL_METRICS
from calibench.summarize.repetition import DEGENERATE_AT, repeated_share
from calibench.summarize.stats import paired_bootstrap
from calibench.summarize.task import SUMM_PREFIX
from calibench.summarize.validity import read_validity

Items = dict[str, dict[str, Any]]  # doc_hash -> item


@dataclass
class Run:
    label: str
    task: str
    items: Items
    scorer_accuracy: dict[str, float]
    judges: dict[str, JudgeRecord] = field(default_factory=dict)  # as the result file recorded them
    source: str = ""  # the result file


def items_by_doc(items: Sequence[dict[str, Any]]) -> Items:
    """Items by document hash; ``repeat_3`` is filled in from the summary for runs written before it existed."""
    out = {}
    for it in items:
        metrics = it.setdefault("metrics", {})
        if "repeat_3" not in metrics and isinstance(it.get("response"), str):
            metrics["repeat_3"] = repeated_share(it["response"])
        out[str(it["doc_hash"])] = it
    return out


def degenerate(item: dict[str, Any]) -> bool:
    """A looping summary (:data:`~calibench.summarize.repetition.DEGENERATE_AT`) or one under 3 words."""
    share = metric_value(item, "repeat_3")
    return not share <= DEGENERATE_AT  # NaN (too short) counts as degenerate


def degeneration_lines(base: Run, others: Sequence[Run], judges: dict[str, JudgeRecord] | None = None) -> list[str]:
    """How many summaries loop, and the consistency difference on the documents neither run degenerated on.

    Why: NLI consistency scores a loop of one copied phrase as supported, so a
    model that degenerates looks *more* faithful; the restricted comparison
    shows whether the difference survives without the loops.
    """
    lines = []
    for other in others:
        common = sorted(set(base.items) & set(other.items))
        bad_base = sum(degenerate(base.items[d]) for d in common)
        bad_other = sum(degenerate(other.items[d]) for d in common)
        line = (
            f"Degenerate summaries (repeat_3 > {DEGENERATE_AT} or under 3 words): "
            f"{base.label} {bad_base}/{len(common)}, {other.label} {bad_other}/{len(common)}"
        )
        clean = [d for d in common if not degenerate(base.items[d]) and not degenerate(other.items[d])]
        restricted = (
            paired_rows({d: base.items[d] for d in clean}, {d: other.items[d] for d in clean}, (CONSISTENCY_METRIC,))
            if clean
            else []
        )
        if restricted:
            r = restricted[0]
            line += (
                f"; {CONSISTENCY_METRIC} on the {r['n']} documents where neither degenerated:"
                f" {r['diff']:+.4f} [{r['low']:+.4f}, {r['high']:+.4f}]"
            )
            if judges is not None and CONSISTENCY_METRIC in judges:
                line += f" (judge: {judges[CONSISTENCY_METRIC].text()})"
        lines.append(line + ".")
    return lines


def load_run(path: str | Path, task: str | None = None, label: str | None = None) -> Run:
    """A summarization run from an ``EvalResult`` JSON written with ``--log-samples``."""

    p = Path(path)
    if not p.is_file():
        raise CalibenchError(f"no such result file: {p}")
    result = EvalResult.from_json(p.read_text(encoding="utf-8"))
    tasks = [t for t in result.samples if t.startswith(SUMM_PREFIX)]
    if task is not None:
        tasks = [t for t in tasks if t == task]
    if len(tasks) != 1:
        found = ", ".join(t for t in result.samples if t.startswith(SUMM_PREFIX)) or "none"
        raise CalibenchError(
            f"{p}: expected one summarization task with per-item samples{f' named {task}' if task else ''}"
            f" (found: {found}); evaluate with --log-samples, or pass --task"
        )
    acc = {
        r.metric.removesuffix(".fsp_acc"): r.value
        for r in result.rows
        if r.task == tasks[0] and r.metric.endswith(".fsp_acc")
    }
    try:
        judges = records_of(result.record(tasks[0]).details)
    except KeyError:  # samples without a task record: no judge recorded
        judges = {}
    except (TypeError, ValueError) as exc:  # a hand-edited record
        raise CalibenchError(f"{p}: its judge_validity record is malformed ({exc}): re-evaluate it") from None
    return Run(label or p.stem, tasks[0], items_by_doc(result.samples[tasks[0]]), acc, judges, str(p))


def judged_metrics(runs: Sequence[Run]) -> list[str]:
    """The consistency metrics (scored by a judge) that some run has a value of, in row order."""
    kinds = judge_kinds()
    return [
        m
        for m in ALL_METRICS
        if m in kinds and any(np.isfinite(metric_value(it, m)) for r in runs for it in r.items.values())
    ]


def check_judges(runs: Sequence[Run], allow_unvalidated: bool = False) -> dict[str, JudgeRecord]:
    """Each consistency metric's judge with the validity this machine holds, or one line refusing the comparison.

    Refused always: two runs scored one metric with different judges (their difference would be the judges').
    Refused unless ``allow_unvalidated``: a run that records no judge for a metric it has (written before judges
    were recorded), or a judge not validated on this machine; allowed, such a metric shows "not validated".
    """
    out: dict[str, JudgeRecord] = {}
    for metric in judged_metrics(runs):
        kind = judge_kinds()[metric]
        recorded = [(r, r.judges.get(metric)) for r in runs]
        known = [(r, j) for r, j in recorded if j is not None]
        for r, j in known[1:]:
            first_run, first = known[0]
            if j.identity != first.identity:
                raise CalibenchError(
                    f"{metric} was scored by different judges: {first_run.label} by {_show(first.identity)}, "
                    f"{r.label} by {_show(j.identity)}; compare runs evaluated with the same {kind} judge"
                )
        missing = [r for r, j in recorded if j is None]
        if missing and not allow_unvalidated:
            raise CalibenchError(
                f"{missing[0].source or missing[0].label} records no judge validity for {metric} (evaluated by an "
                f"older calibench): evaluate it again, or pass --allow-unvalidated"
            )
        if not known:
            continue
        here = known[0][1].here()
        if here.validity is None and not allow_unvalidated:
            raise CalibenchError(
                f"judge {kind} ({here.shown_model}) of {metric} is not validated on this machine: "
                f"run `{here.command}`, or pass --allow-unvalidated to show its rows marked not validated"
            )
        out[metric] = here
    return out


def _show(identity: dict[str, Any]) -> str:
    return json.dumps(identity, sort_keys=True)


def paired_rows(base: Items, other: Items, metrics: Sequence[str] = ALL_METRICS) -> list[dict[str, Any]]:
    """Per metric: base mean, other mean, difference (other - base) with its paired 95% CI, documents paired."""
    common = sorted(set(base) & set(other))
    if not common:
        raise CalibenchError("the two runs share no document (different datasets?): nothing to pair")
    out = []
    for metric in metrics:
        a = np.array([metric_value(base[d], metric) for d in common], dtype=np.float64)
        b = np.array([metric_value(other[d], metric) for d in common], dtype=np.float64)
        if not (np.isfinite(a) & np.isfinite(b)).any():
            continue
        ci = paired_bootstrap(a, b)
        keep = np.isfinite(a) & np.isfinite(b)
        out.append(
            {
                "metric": metric,
                "base": float(a[keep].mean()),
                "other": float(b[keep].mean()),
                "diff": ci.mean,
                "low": ci.low,
                "high": ci.high,
                "n": ci.n,
                "significant": bool(ci.low > 0 or ci.high < 0),
            }
        )
    return out


def metric_value(item: dict[str, Any], metric: str) -> float:
    v = item.get("metrics", {}).get(metric)
    return float("nan") if v is None else float(v)


def compare_table(runs: Sequence[Run], metrics: Sequence[str] = ALL_METRICS, allow_unvalidated: bool = False) -> str:
    """A Markdown table: each metric's base mean, then each other run's difference [95% CI] to the base, then
    the validity of the judge behind the metric (:func:`check_judges`, which may refuse the comparison)."""
    base, others = runs[0], runs[1:]
    judges = check_judges(runs, allow_unvalidated)
    per = [{r["metric"]: r for r in paired_rows(base.items, o.items, metrics)} for o in others]
    head = ["metric", f"{base.label}"] + [f"{o.label} - {base.label} [95% CI]" for o in others]
    head.append("judge validity (ROC-AUC [95% CI] on held-out data)")
    rows = []
    for metric in metrics:
        if not any(metric in p for p in per):
            continue
        first = next(p[metric] for p in per if metric in p)
        cells = [metric, f"{first['base']:.4f}"]
        for p in per:
            r = p.get(metric)
            cells.append(
                "-"
                if r is None
                else f"{r['diff']:+.4f} [{r['low']:+.4f}, {r['high']:+.4f}]" + (" *" if r["significant"] else "")
            )
        cells.append(metric_validity(metric, judges))
        rows.append(cells)
    lines = markdown_table_lines(head, rows)
    n = min(len(set(base.items) & set(o.items)) for o in others)
    lines.append("")
    lines.append(f"Paired over {n} documents (doc_hash); * the 95% paired bootstrap CI excludes 0.")
    lines.extend(degeneration_lines(base, others, judges))
    for metric, judge in judges.items():
        for o, p in zip(others, per):
            r = p.get(metric)
            said = reading(metric, r["diff"], r["low"], r["high"], base.label, o.label, judge) if r else None
            if said:
                lines.append(said)
    accs = {k: v for r in runs for k, v in r.scorer_accuracy.items()}
    if accs:
        lines.append(
            "Scorer accuracy on Factual-Summary-Pairs (faithful > unfaithful): "
            + ", ".join(f"{k} {v:.3f}" for k, v in accs.items())
            + "."
        )
    return "\n".join(lines) + "\n"


def metric_validity(metric: str, judges: dict[str, JudgeRecord]) -> str:
    """The validity cell of a metric: its judge's (a consistency metric), a lexical score's own when it was
    validated here (``{"scorer": "coverage"}``), else empty."""
    if metric in judges:
        return judges[metric].text()
    if metric in judge_kinds():
        return "no judge recorded"  # allowed through --allow-unvalidated
    if metric in LEXICAL_METRICS:
        found = read_validity({"scorer": metric})
        return found.text() if found is not None else ""
    return ""
