"""A SummaC-ZS-style factual-consistency score (Laban et al. 2022), over any NLI backend.

For each summary sentence, the highest support any premise of the source gives
it, then the mean over summary sentences.  A summary sentence that no premise
supports pulls the score down, which is the point: that is a hallucination
candidate.

Premises are *windows* of consecutive source sentences (SummaC's chunk
granularity): for each summary sentence, the source's sentences are packed in
order into windows that fit the NLI model's input together with that sentence
(160 tokens for aegis), so a fact spread over two sentences can be seen at
once and nothing is cut.  A source sentence that alone is too long is a window
of its own (cut at the end).  A backend that does not say its token budget
(``max_tokens`` and ``token_count``) gets one sentence per premise, as does
``premises="sentences"`` (the older granularity, kept for comparison).

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


PREMISES = ("windows", "sentences")
#: tokens kept free in a window for what joining sentences may add over their separate counts
WINDOW_SLACK = 4


def windows(source: Sequence[str], counts: Sequence[int], room: int) -> list[str]:
    """Consecutive sentences packed greedily, in order, into windows of at most ``room`` tokens (``counts``:
    each sentence's tokens); a sentence longer than ``room`` is a window of its own."""
    out: list[str] = []
    current: list[str] = []
    used = 0
    for sentence, n in zip(source, counts):
        if current and used + n > room:
            out.append(" ".join(current))
            current, used = [], 0
        current.append(sentence)
        used += n
    if current:
        out.append(" ".join(current))
    return out


def premises_for(nli: Nli, source: Sequence[str], hypotheses: Sequence[str], how: str = "windows") -> list[list[str]]:
    """The premises each hypothesis (summary sentence) is checked against: windows or single sentences."""
    max_tokens = getattr(nli, "max_tokens", None)
    count = getattr(nli, "token_count", None)
    if how == "sentences" or max_tokens is None or count is None:
        return [list(source) for _ in hypotheses]
    sent_counts = count(source)
    hyp_counts = count(hypotheses)
    specials = 3  # [CLS] premise [SEP] hypothesis [SEP]
    return [windows(source, sent_counts, max(1, max_tokens - specials - h - WINDOW_SLACK)) for h in hyp_counts]


def summac_zs(nli: Nli, sources: Sequence[str], summaries: Sequence[str], premises: str = "windows") -> list[float]:
    """One score per (source, summary), scoring every pair of every document in one NLI call."""
    if premises not in PREMISES:
        raise ValueError(f"premises must be one of {', '.join(PREMISES)}, got '{premises}'")
    src = [sentences(s) or [s] for s in sources]
    summ = [sentences(s) for s in summaries]
    prem: list[str] = []
    hyp: list[str] = []
    spans: list[list[tuple[int, int]]] = []
    for a, b in zip(src, summ):
        cols = []
        for h, chunks in zip(b, premises_for(nli, a, b, premises) if b else []):
            start = len(prem)
            prem.extend(chunks)
            hyp.extend([h] * len(chunks))
            cols.append((start, len(prem)))
        spans.append(cols)
    probs = _unique_pairs(nli, prem, hyp)
    return [float(np.mean([probs[s:e].max() for s, e in cols])) if cols else math.nan for cols in spans]


def _unique_pairs(nli: Nli, premises: Sequence[str], hypotheses: Sequence[str]) -> np.ndarray:
    """``nli(premises, hypotheses)``, calling the model on each distinct pair only once."""
    if not premises:
        return np.zeros(0)
    index: dict[tuple[str, str], int] = {}
    where = np.array([index.setdefault(pair, len(index)) for pair in zip(premises, hypotheses)], dtype=np.int64)
    distinct = list(index)
    probs = np.asarray(nli([p for p, _ in distinct], [h for _, h in distinct]), dtype=np.float64)
    return probs[where]
