"""What an evaluation returns: one row per (task, metric), plus how each task was run.

Rows are what tables, stores and reports consume; :class:`TaskRecord` keeps
everything needed to judge whether two numbers are comparable (lm-eval task
version, number of shots, split actually scored, online task or offline
mirror, limit).  A limited run is marked as such on every row: its numbers
are not comparable with a full run.

With ``log_samples``, :attr:`EvalResult.samples` holds per-item results
(task -> one dict per document or perplexity window, see :mod:`.samples`).

Format history: ``calibench.eval/1`` had no ``samples`` and called lm-eval
tasks ``zeroshot``; ``calibench.eval/1.1`` adds ``samples`` and the kind
``lm_eval``.  Both load.
"""

from __future__ import annotations

import json
import math
from typing import Any, Literal

from pydantic import BaseModel, Field, PrivateAttr, computed_field

from calibench.core.errors import CorruptArtifactError
from calibench.core.jsonutil import finite

RESULT_FORMAT = "calibench.eval/1.1"
FORMAT_FAMILY = "calibench.eval/1"  # every 1.x loads

Status = Literal["ok", "skipped"]


class EvalRow(BaseModel):
    """One number: ``value`` of ``metric`` on ``task`` over ``n`` items (windows for perplexity)."""

    task: str
    metric: str
    value: float
    stderr: float | None = None
    n: int
    limit: int | None = None  # the cap that was applied, None for a full run

    @property
    def limited(self) -> bool:
        return self.limit is not None


class TaskRecord(BaseModel):
    """How one requested task was run (or why it was skipped)."""

    task: str
    # the name of its task kind (calibench.evaluation.tasks.TASK_KINDS): perplexity, lm_eval, summarization or
    # any other registered kind; zeroshot: lm-eval tasks in format 1 files
    kind: str
    status: Status = "ok"
    reason: str = ""  # why skipped, or why the offline mirror was used
    mode: Literal["online", "offline", ""] = ""
    data: str = ""  # where the items came from (hub dataset or pack path)
    split: str = ""  # split actually scored
    reference_split: str = ""  # split the reference protocol (lm-eval's task) scores
    version: str | None = None  # lm-eval task version
    num_fewshot: int | None = None
    n_total: int | None = None  # items (or windows) available
    n_evaluated: int | None = None
    limit: int | None = None
    details: dict[str, Any] = Field(default_factory=dict)
    notes: list[str] = Field(default_factory=list)
    seconds: float = 0.0

    @computed_field  # type: ignore[prop-decorator]  # mypy rejects decorators over @property; pydantic's documented form
    @property
    def comparable(self) -> bool:
        """Scored in full on the split the reference protocol uses (written to JSON too)."""
        return (
            self.status == "ok"
            and self.limit is None
            and (not self.reference_split or self.split == self.reference_split)
        )


class EvalResult(BaseModel):
    """Everything one ``evaluate`` call measured, serialisable to JSON."""

    format: str = RESULT_FORMAT
    model: str
    rows: list[EvalRow] = Field(default_factory=list)
    tasks: list[TaskRecord] = Field(default_factory=list)
    settings: dict[str, Any] = Field(default_factory=dict)
    versions: dict[str, str] = Field(default_factory=dict)
    seconds: float = 0.0
    samples: dict[str, list[dict[str, Any]]] = Field(default_factory=dict)  # per-item results (log_samples)

    # lm-eval's raw simple_evaluate outputs of this run (for its own output layout); not serialised
    _lm_eval_outputs: list[dict[str, Any]] = PrivateAttr(default_factory=list)
    _lm_eval_meta: dict[str, Any] = PrivateAttr(default_factory=dict)  # chat template, backend

    # -- access -----------------------------------------------------------------
    def value(self, task: str, metric: str | None = None) -> float:
        """The value of ``metric`` (default: the task's first row) on ``task``."""
        for row in self.rows:
            if row.task == task and (metric is None or row.metric == metric):
                return row.value
        raise KeyError(f"no result for task '{task}'" + (f" metric '{metric}'" if metric else ""))

    def record(self, task: str) -> TaskRecord:
        for rec in self.tasks:
            if rec.task == task:
                return rec
        raise KeyError(f"task '{task}' was not requested")

    @property
    def skipped(self) -> list[TaskRecord]:
        return [rec for rec in self.tasks if rec.status == "skipped"]

    # -- serialisation ----------------------------------------------------------
    def to_json(self) -> str:
        return json.dumps(finite(self.model_dump(mode="json")), indent=2, sort_keys=False) + "\n"

    @classmethod
    def from_json(cls, text: str) -> EvalResult:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise CorruptArtifactError(f"not an evaluation result (invalid JSON: {exc.msg})") from None
        if not isinstance(data, dict) or not _known_format(data.get("format")):
            raise CorruptArtifactError(f"not an evaluation result (expected format '{RESULT_FORMAT}')")
        return cls.model_validate({**data, "format": RESULT_FORMAT})  # a 1.0 file is a 1.1 result without samples

    # -- display ----------------------------------------------------------------
    def table_rows(self) -> list[tuple[str, str, str, str, str, str]]:
        """(task, metric, value, stderr, n, limit) as display strings, skipped tasks included."""
        out = []
        for row in self.rows:
            out.append(
                (
                    row.task,
                    row.metric,
                    _fmt(row.value),
                    "-" if row.stderr is None else _fmt(row.stderr),
                    str(row.n),
                    "-" if row.limit is None else str(row.limit),
                )
            )
        for rec in self.skipped:
            out.append((rec.task, "skipped", "-", "-", "0", "-"))
        return out


def _known_format(value: Any) -> bool:
    return isinstance(value, str) and (value == FORMAT_FAMILY or value.startswith(FORMAT_FAMILY + "."))


def _fmt(value: float) -> str:
    if value is None or not math.isfinite(value):
        return str(value)
    return f"{value:.4f}" if abs(value) < 1000 else f"{value:.1f}"
