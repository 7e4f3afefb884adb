"""Evaluation: perplexity by the papers' protocol and tasks through lm-evaluation-harness.

* :func:`evaluate` runs every requested task for one model (a spec or an
  in-memory model), every kind of task (perplexity, lm-eval, summarization,
  ...) through the same steps: each kind is a :class:`~.kinds.base.TaskKind` in
  :data:`.tasks.TASK_KINDS`, so **a new kind of task is one new module and
  one registry entry** (how: :mod:`.kinds.base`);
* :mod:`.perplexity` is the protocol (join, tokenize once, non-overlapping
  windows, explicit BOS); :mod:`.heldout` says which text;
* :mod:`.tasks` is the registry of task names and kinds (any other lm-eval
  name is resolved through :mod:`.lmeval_index`); :mod:`.kinds.perplexity`
  and :mod:`.kinds.lm_eval` are evaluation's own kinds; :mod:`.lmeval` runs
  lm-eval's own tasks, online or over the offline data of :mod:`.mirrors`, with lm-eval's
  few-shot (:mod:`.fewshot`), chat-template and generation options, on the
  backend of :mod:`.backends`;
* :mod:`.results` holds the rows and records that come back, :mod:`.samples`
  the per-item results, :mod:`.lmeval_output` writes lm-eval's own layout;
* :mod:`.cache` keeps what every evaluation in a process would redo (held-out
  token ids, offline mirrors, lm-eval's environment probe), cleared by
  ``clear_caches()`` (docs/performance.md).

Importing this package is cheap: torch, datasets and lm-eval load when used.
"""

from __future__ import annotations

from calibench.evaluation.api import evaluate
from calibench.evaluation.lmeval_output import write_lm_eval_output
from calibench.evaluation.perplexity import PerplexityResult, cut_windows, perplexity
from calibench.evaluation.results import EvalResult, EvalRow, TaskRecord
from calibench.evaluation.tasks import GROUPS, LM_EVAL_TASKS, ZEROSHOT_TASKS, known_task_names, parse_tasks

__all__ = [
    "evaluate",
    "write_lm_eval_output",
    "perplexity",
    "cut_windows",
    "PerplexityResult",
    "EvalResult",
    "EvalRow",
    "TaskRecord",
    "parse_tasks",
    "known_task_names",
    "LM_EVAL_TASKS",
    "ZEROSHOT_TASKS",
    "GROUPS",
]
