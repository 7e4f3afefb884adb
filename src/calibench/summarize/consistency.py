"""A SummaC-ZS-style factual-consistency score (Laban et al. 2022), over any NLI backend.

Sentence granularity: for each summary sentence, the highest support any
single source sentence gives it, then the mean over summary sentences.  A
summary sentence that no source sentence supports pulls the score down, which
is the point: that is a hallucination candidate.

The original SummaC-ZS scores a pair by P(entail) - P(contradict) of a
3-class model; a 2-class model has no contradiction class, so the score here
is P(supported) in [0, 1], with any backend (:mod:`.nli`).  NaN for an empty
summary.  All pairs of a batch of summaries go to the NLI model in one call,
each distinct pair once: a degenerate summary repeats one sentence many
times, and scoring its copies again would multiply the cost for nothing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from calibench.summarize.nli import Nli
from calibench.summarize.text import sentences


def sentence_matrix(nli: Nli, source_sentences: Sequence[str], summary_sentences: Sequence[str]) -> np.ndarray:
    """Support of every (source sentence, summary sentence) pair: shape [source, summary]."""
    prem = [s for s in source_sentences for _ in summary_sentences]
    hyp = [h for _ in source_sentences for h in summary_sentences]
    return nli(prem, hyp).reshape(len(source_sentences), len(summary_sentences))


def aggregate(matrix: np.ndarray) -> float:
    """SummaC-ZS: max over source sentences (rows), mean over summary sentences (columns)."""
    if matrix.size == 0:
        return math.nan
    return float(matrix.max(axis=0).mean())


def summac_zs(nli: Nli, sources: Sequence[str], summaries: Sequence[str]) -> list[float]:
    """One score per (source, summary), scoring every pair of every document in one NLI call."""
    src = [sentences(s) or [s] for s in sources]
    summ = [sentences(s) for s in summaries]
    prem: list[str] = []
    hyp: list[str] = []
    spans: list[tuple[int, int, int, int]] = []
    for a, b in zip(src, summ):
        start = len(prem)
        prem.extend(x for x in a for _ in b)
        hyp.extend(y for _ in a for y in b)
        spans.append((start, len(prem), len(a), len(b)))
    probs = _unique_pairs(nli, prem, hyp)
    return [aggregate(probs[s:e].reshape(n_a, n_b)) if n_b else math.nan for s, e, n_a, n_b in spans]


def _unique_pairs(nli: Nli, premises: Sequence[str], hypotheses: Sequence[str]) -> np.ndarray:
    """``nli(premises, hypotheses)``, calling the model on each distinct pair only once."""
    if not premises:
        return np.zeros(0)
    index: dict[tuple[str, str], int] = {}
    where = np.array([index.setdefault(pair, len(index)) for pair in zip(premises, hypotheses)], dtype=np.int64)
    distinct = list(index)
    probs = np.asarray(nli([p for p, _ in distinct], [h for _, h in distinct]), dtype=np.float64)
    return probs[where]
