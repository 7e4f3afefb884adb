"""Hallucination in abstractive summarization: generate, score faithfulness and overlap, compare.

The stages, one module each: :mod:`.data` (datasets), :mod:`.prompts`,
:mod:`.generate` (greedy batched KV-cache generation), the metrics
(:mod:`.rouge`, :mod:`.fragments`, :mod:`.novel_ngrams`, :mod:`.consistency`
over :mod:`.nli`, :mod:`.harim`), :mod:`.validate` (Factual-Summary-Pairs),
:mod:`.judges` (the judges' names, checked before any work, and :func:`validate_judge`, the step that
``calibench summ validate`` runs once per machine), :mod:`.task` (the ``summ:`` task of ``calibench eval``
and studies, which reads the judges' cached validation and never computes it),
:mod:`.score` (a user's own pairs scored by every judge, and the per-judge table of
:mod:`.judge_stats`), :mod:`.compare` (paired bootstrap across runs), :mod:`.plot` and
:mod:`.report` (the study report's summarization sections).
"""

from __future__ import annotations

from calibench.summarize.judges import JUDGES, validate_judge
from calibench.summarize.metrics import ALL_METRICS, lexical_metrics
from calibench.summarize.score import read_pairs, read_scores, score_pairs, score_table
from calibench.summarize.task import SUMM_PREFIX, parse_summ_task

__all__ = [
    "ALL_METRICS",
    "JUDGES",
    "SUMM_PREFIX",
    "lexical_metrics",
    "parse_summ_task",
    "read_pairs",
    "read_scores",
    "score_pairs",
    "score_table",
    "validate_judge",
]
