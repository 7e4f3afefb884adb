"""Consistency numbers shown with their judge's validity, and the one rule for reading a difference as hallucination.

A consistency score (``summac_zs``, ``harim_plus``: the metric of a registered judge kind,
:data:`calibench.summarize.judges.JUDGES`) is only as good as the judge that produced it.  Every place that
shows one (a ``summ:`` task's result, the study report, ``calibench compare``) shows beside it the judge's
validated ROC-AUC and on what data (:class:`~calibench.summarize.validity.JudgeValidity`), or that the judge
is not validated and the command that validates it.

A difference in such a score may be read as more or less hallucination only when the judge separates
consistent from inconsistent summaries above chance on every dataset it was validated on
(:meth:`~calibench.summarize.validity.JudgeValidity.supports_claims`); otherwise :func:`reading` says the
difference is not interpretable as hallucination, and why (the AUC lower bound, or no validation at all).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePath
from typing import Any

from calibench.models import bundled_models
from calibench.summarize.judges import JUDGES, Plan, canonical_model
from calibench.summarize.validity import CHANCE, DatasetValidity, JudgeValidity, read_validity

DETAILS_KEY = "judge_validity"  # in a summ: task record's details: metric -> JudgeRecord.to_json()


def judge_kinds() -> dict[str, str]:
    """Each consistency metric and the judge kind that scores it (``{"summac_zs": "nli", ...}``)."""
    return {JUDGES.get(name).metric: name for name in JUDGES.names()}


@dataclass(frozen=True)
class JudgeRecord:
    """The judge of one consistency metric in one run: its identity, the command that validates it, its validity."""

    metric: str
    kind: str  # a registered judge kind ("nli", "harim")
    model: str
    identity: dict[str, Any]
    command: str  # the ``calibench summ validate`` line for this identity
    validity: JudgeValidity | None  # None: not validated (or not looked up)
    looked_up: bool = True  # False: the task ran with validate=no

    @classmethod
    def from_plan(cls, metric: str, plan: Plan, look: bool = True) -> JudgeRecord:
        """The record of a task's judge, its validity read from this machine's cache (``look=False``: not read)."""
        return cls(metric, plan.kind, canonical_model(plan.model), dict(plan.identity), plan.command,
                   read_validity(plan.identity) if look else None, look)  # fmt: skip

    @property
    def shown_model(self) -> str:
        """The judge model as a reader on any machine knows it: a bundled model that a record names by its path
        under some machine's assets directory shows as its name."""
        path = PurePath(self.model)
        return path.name if path.parent.name == "assets" and path.name in bundled_models() else self.model

    def here(self) -> JudgeRecord:
        """The same judge with the validity this machine holds now (a result file may be older than it)."""
        return JudgeRecord(
            self.metric, self.kind, self.model, self.identity, self.command, read_validity(self.identity)
        )

    def text(self) -> str:
        return validity_text(self.validity, self.command) if self.looked_up else "not looked up (validate=no)"

    def to_json(self) -> dict[str, Any]:
        return {
            "judge": self.kind,
            "model": self.model,
            "identity": self.identity,
            "validate_with": self.command,
            "validity": self.validity.to_json() if self.validity else None,
            "looked_up": self.looked_up,
            "text": self.text(),
        }

    @classmethod
    def from_json(cls, metric: str, data: dict[str, Any]) -> JudgeRecord:
        found = data.get("validity")
        validity = None
        if found:
            validity = JudgeValidity(found["identity"], tuple(DatasetValidity(**d) for d in found["datasets"]))
        return cls(metric, data["judge"], data["model"], data["identity"], data["validate_with"], validity,
                   bool(data.get("looked_up", True)))  # fmt: skip


def validity_text(validity: JudgeValidity | None, command: str) -> str:
    """What is printed beside a consistency number: ``AUC 0.71 [0.67, 0.75] on fsp (742 rows)`` or
    ``not validated (run `calibench summ validate --judge nli`)``."""
    return validity.text() if validity is not None else f"not validated (run `{command}`)"


def records_of(details: dict[str, Any]) -> dict[str, JudgeRecord]:
    """The judge records a ``summ:`` task's details hold, by metric (empty for a result written before them)."""
    found = details.get(DETAILS_KEY) or {}
    return {metric: JudgeRecord.from_json(metric, data) for metric, data in found.items()}


def reading(
    metric: str, diff: float, low: float, high: float, base: str, other: str, judge: JudgeRecord | None
) -> str | None:
    """The sentence that reads a consistency difference (other minus base), or None when its CI includes 0.

    Higher scores mean more consistent for every judge.  Only a judge whose validated AUC lower bound is above
    0.5 on every dataset lets the sentence say "hallucinates less (more)"; any other says it is not
    interpretable as hallucination and gives the number.
    """
    if not (low > 0 or high < 0):
        return None
    shown = f"{metric} {other} - {base} = {diff:+.4f} [{low:+.4f}, {high:+.4f}]"
    validity = judge.validity if judge is not None else None
    if validity is not None and validity.supports_claims():
        more = "less" if diff > 0 else "more"
        return f"{shown}: {other} hallucinates {more} than {base} by this judge, {_because(validity)}."
    return f"{shown}: not interpretable as hallucination, since {_why_not(judge)}."


def table_reading(metric: str, judge: JudgeRecord | None, significant: int, rows: int) -> str:
    """One sentence for a table of many differences in one consistency metric under one judge."""
    who = f"{metric} (judge {judge.kind} {judge.shown_model})" if judge is not None else f"{metric} (no judge recorded)"
    head = f"{who}: {significant} of {rows} differences have a 95% CI excluding 0"
    validity = judge.validity if judge is not None else None
    if validity is not None and validity.supports_claims():
        return f"{head}; a positive one reads as less hallucination, a negative one as more, {_because(validity)}."
    return f"{head}; none is interpretable as hallucination, since {_why_not(judge)}."


def _because(validity: JudgeValidity) -> str:
    return (
        f"since the judge's validated AUC lower bound {validity.worst_low():.2f} is above {CHANCE} ({validity.text()})"
    )


def _why_not(judge: JudgeRecord | None) -> str:
    if judge is None:
        return "no judge is recorded for it"
    if judge.validity is None:
        return f"its judge is not validated (run `{judge.command}`)"
    return (
        f"its judge's validated AUC lower bound is {judge.validity.worst_low():.2f}, at or below {CHANCE} "
        f"({judge.validity.text()})"
    )
