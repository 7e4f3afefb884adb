"""Evaluation: perplexity by the papers' protocol and zero-shot tasks through lm-evaluation-harness.

* :func:`evaluate` runs both for one model (a spec or an in-memory model);
* :mod:`.perplexity` is the protocol (join, tokenize once, non-overlapping
  windows, explicit BOS); :mod:`.heldout` says which text;
* :mod:`.tasks` is the registry of task names; :mod:`.lmeval` runs lm-eval's
  own tasks, online or over the offline data of :mod:`.mirrors`;
* :mod:`.results` holds the rows and records that come back.

Importing this package is cheap: torch, datasets and lm-eval load when used.
"""

from __future__ import annotations

from calibench.evaluation.api import evaluate
from calibench.evaluation.perplexity import PerplexityResult, cut_windows, perplexity
from calibench.evaluation.results import EvalResult, EvalRow, TaskRecord
from calibench.evaluation.tasks import GROUPS, ZEROSHOT_TASKS, known_task_names, parse_tasks

__all__ = [
    "evaluate",
    "perplexity",
    "cut_windows",
    "PerplexityResult",
    "EvalResult",
    "EvalRow",
    "TaskRecord",
    "parse_tasks",
    "known_task_names",
    "ZEROSHOT_TASKS",
    "GROUPS",
]
