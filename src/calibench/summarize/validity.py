"""What a judge's scores are worth: its validated ROC-AUC (with CI) on labelled held-out pairs, per dataset.

A validation is the table ``calibench summ validate`` computes for one judge identity (the scorer and its model,
as :meth:`calibench.summarize.judges.JudgeKind.identity` gives it; ``{"scorer": "density"}`` for a lexical
score) over each labelled dataset it was run on.  It is cached under ``$CALIBENCH_HOME/summarize/`` as
``auc-<hash>.json``, so reports and ``calibench compare`` can print, next to every consistency number, the
judge's AUC and on what data, and refuse to read a difference as "less hallucination" when the judge has not
been shown to separate consistent from inconsistent summaries (:meth:`JudgeValidity.supports_claims`).

Pure data and file I/O; the scoring lives in :mod:`.judges` and the statistics in :mod:`.judge_stats`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from calibench.core.fsutil import atomic_write_bytes
from calibench.summarize.validate import cache_dir

CHANCE = 0.5


@dataclass(frozen=True)
class DatasetValidity:
    """One judge on one labelled dataset: ROC-AUC and split-half balanced accuracy with bootstrap 95% CIs."""

    dataset: str  # a registered pairs dataset ("fsp", ...) or a user's file name
    rows: int
    auc: float
    auc_low: float
    auc_high: float
    balanced_accuracy: float
    ba_low: float
    ba_high: float

    def text(self) -> str:
        return f"AUC {self.auc:.2f} [{self.auc_low:.2f}, {self.auc_high:.2f}] on {self.dataset} ({self.rows} rows)"


@dataclass(frozen=True)
class JudgeValidity:
    """A judge identity's validation over every dataset it was run on."""

    identity: dict[str, Any]
    datasets: tuple[DatasetValidity, ...]

    def worst_low(self) -> float:
        """The lowest AUC lower bound over the datasets: the judge is only as good as its worst held-out data."""
        return min((d.auc_low for d in self.datasets), default=float("nan"))

    def supports_claims(self) -> bool:
        """True when every dataset's AUC lower bound is above chance (0.5): only then may a consistency
        difference be read as more or less hallucination."""
        return bool(self.datasets) and self.worst_low() > CHANCE

    def text(self) -> str:
        """``AUC 0.71 [0.67, 0.75] on fsp (742 rows); AUC 0.55 [0.49, 0.61] on xsum-swap (600 rows)``."""
        return "; ".join(d.text() for d in self.datasets) if self.datasets else "not validated"

    def to_json(self) -> dict[str, Any]:
        return {"identity": self.identity, "datasets": [asdict(d) for d in self.datasets]}


def validity_path(identity: dict[str, Any]) -> Path:
    key = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]
    return cache_dir() / f"auc-{key}.json"


def read_validity(identity: dict[str, Any]) -> JudgeValidity | None:
    """The cached validation of a judge identity, or None when it was never validated on this machine."""
    try:
        found = json.loads(validity_path(identity).read_text(encoding="utf-8"))
        rows = tuple(DatasetValidity(**d) for d in found["datasets"])
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError):
        return None
    return JudgeValidity(identity, rows) if rows else None


def write_validity(identity: dict[str, Any], datasets: list[DatasetValidity]) -> JudgeValidity:
    """Merge ``datasets`` into the identity's cached validation (a dataset validated again is replaced)."""
    old = read_validity(identity)
    merged = {d.dataset: d for d in (old.datasets if old else ())}
    merged.update({d.dataset: d for d in datasets})
    result = JudgeValidity(identity, tuple(merged[k] for k in sorted(merged)))
    path = validity_path(identity)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, (json.dumps(result.to_json(), indent=2, sort_keys=True) + "\n").encode())
    return result
