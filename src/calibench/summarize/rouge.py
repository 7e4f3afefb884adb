"""ROUGE-1/2/L F1 with Google's ``rouge-score`` (the implementation the papers report).

Scored twice per summary: against the reference (quality) and against the
source document (how much the summary copies: Chrysostomou et al. read
higher source overlap as the reason pruned models hallucinate less).  Porter
stemming on, as in most summarization papers; ``rougeL`` is sentence-level LCS.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")


@lru_cache(maxsize=2)
def _scorer(use_stemmer: bool) -> Any:
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=use_stemmer)


def rouge_f1(prediction: str, target: str, use_stemmer: bool = True) -> dict[str, float]:
    """``{"rouge1": F1, "rouge2": F1, "rougeL": F1}`` of ``prediction`` against ``target``."""
    scores = _scorer(use_stemmer).score(target, prediction)
    return {name: float(scores[name].fmeasure) for name in ROUGE_TYPES}
