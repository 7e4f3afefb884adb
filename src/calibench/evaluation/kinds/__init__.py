"""Task kinds: each family of ``--tasks`` names (perplexity, lm-eval, summarization, ...) is one object.

:mod:`.base` says what a kind is and how to add one (one new module and one
entry in :data:`calibench.evaluation.tasks.TASK_KINDS`); :mod:`.perplexity`
and :mod:`.lm_eval` are evaluation's own kinds, summarization's lives in
:mod:`calibench.summarize.task`.
"""

from __future__ import annotations

from calibench.evaluation.kinds.base import EvalContext, KindOutput, TaskKind, announce

__all__ = ["EvalContext", "KindOutput", "TaskKind", "announce"]
