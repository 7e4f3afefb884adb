"""Token statistics of a calibration set, as pure functions over token-id windows.

Every function takes ``windows``: a list of 1-D integer arrays, the unmasked
tokens of each window (see :func:`windows_of`).  The definitions, exactly:

* **vocabulary coverage**: distinct token ids occurring in the set divided by
  the vocabulary size (``len(tokenizer)``; special tokens count like others).
* **n-gram diversity**: for n = 1..4, the number of distinct n-grams divided
  by the number of n-gram occurrences, n-grams taken inside each window
  (never across two windows) and pooled over the whole set; the diversity is
  the mean of the four ratios.  An n with no n-gram (all windows shorter than
  n) is left out of the mean.
* **Zipf coefficient**: with c_r the count of the r-th most frequent token
  (r = 1..D over the D distinct tokens, ties in any order), the ordinary
  least-squares fit of ``ln c_r = a - s * ln r`` over all r; the coefficient
  is s (natural text: about 1; uniformly random tokens: near 0).
* **repetition rate**: the share of 4-gram occurrences that repeat a 4-gram
  seen earlier *in the same window*:
  ``sum_w (occurrences_w - distinct_w) / sum_w occurrences_w``.  It measures
  degenerate loops inside a sample; cross-sample overlap shows in the pooled
  n-gram diversity instead.
* **mean document length**: the windows are cut at separator tokens (start,
  stop and other special tokens; see :func:`calibench.data.stats.separator_ids`);
  a document is a maximal non-empty run of non-separator tokens, runs cut by
  the window edges included as they are; the statistic is the mean run length
  in tokens.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

NGRAM_ORDERS = (1, 2, 3, 4)
REPETITION_ORDER = 4


def windows_of(input_ids: np.ndarray, attention_mask: np.ndarray | None = None) -> list[np.ndarray]:
    """The unmasked tokens of each row, as int64 arrays."""
    ids = np.asarray(input_ids, dtype=np.int64)
    if attention_mask is None:
        return [row for row in ids]
    mask = np.asarray(attention_mask).astype(bool)
    return [row[m] for row, m in zip(ids, mask)]


def _ngram_keys(window: np.ndarray, n: int) -> np.ndarray:
    """The n-grams of a window, one row each (a strided view; np.unique(axis=0) compares whole rows)."""
    if len(window) < n:
        return np.zeros((0, n), dtype=np.int64)
    return np.lib.stride_tricks.sliding_window_view(window, n)


def _distinct_rows(rows: np.ndarray) -> int:
    if rows.shape[0] == 0:
        return 0
    return int(np.unique(rows, axis=0).shape[0])


def ngram_ratios(windows: Sequence[np.ndarray], orders: Iterable[int] = NGRAM_ORDERS) -> dict[int, float]:
    """Distinct / total n-grams for each n, pooled over windows, never across window edges."""
    ratios: dict[int, float] = {}
    for n in orders:
        grams = [_ngram_keys(w, n) for w in windows]
        grams = [g for g in grams if g.shape[0]]
        if not grams:
            continue
        pooled = np.concatenate(grams, axis=0)
        ratios[n] = _distinct_rows(pooled) / pooled.shape[0]
    return ratios


def ngram_diversity(windows: Sequence[np.ndarray], orders: Iterable[int] = NGRAM_ORDERS) -> float:
    """Mean over n of distinct / total n-grams (see the module docstring)."""
    ratios = ngram_ratios(windows, orders)
    return float(np.mean(list(ratios.values()))) if ratios else float("nan")


def repetition_rate(windows: Sequence[np.ndarray], n: int = REPETITION_ORDER) -> float:
    """Share of n-gram occurrences that repeat an n-gram seen earlier in the same window."""
    total = repeats = 0
    for window in windows:
        grams = _ngram_keys(window, n)
        total += grams.shape[0]
        repeats += grams.shape[0] - _distinct_rows(grams)
    return repeats / total if total else float("nan")


def token_counts(windows: Sequence[np.ndarray]) -> np.ndarray:
    """Occurrence count of each distinct token (order unspecified)."""
    if not windows:
        return np.zeros(0, dtype=np.int64)
    _, counts = np.unique(np.concatenate(windows), return_counts=True)
    return counts


def vocabulary_coverage(windows: Sequence[np.ndarray], vocab_size: int) -> float:
    """Distinct token ids in the set / vocabulary size."""
    return len(token_counts(windows)) / vocab_size


def zipf_fit(windows: Sequence[np.ndarray]) -> tuple[float, float]:
    """(s, a) of the least-squares fit ln c_r = a - s ln r over all ranks r (see the module docstring)."""
    counts = np.sort(token_counts(windows))[::-1].astype(np.float64)
    if counts.size < 2:
        return float("nan"), float("nan")
    log_rank = np.log(np.arange(1, counts.size + 1, dtype=np.float64))
    slope, intercept = np.polyfit(log_rank, np.log(counts), 1)
    return float(-slope), float(intercept)


def zipf_coefficient(windows: Sequence[np.ndarray]) -> float:
    return zipf_fit(windows)[0]


def document_lengths(windows: Sequence[np.ndarray], separators: Iterable[int]) -> list[int]:
    """Lengths of the maximal non-empty runs of non-separator tokens in each window."""
    seps = np.asarray(sorted(set(int(s) for s in separators)), dtype=np.int64)
    lengths: list[int] = []
    for window in windows:
        is_sep = np.isin(window, seps)
        # boundaries of runs of non-separators
        edges = np.flatnonzero(np.diff(np.concatenate([[1], is_sep.astype(np.int8), [1]])))
        starts, ends = edges[0::2], edges[1::2]
        lengths.extend(int(e - s) for s, e in zip(starts, ends) if e > s)
    return lengths


def mean_document_length(windows: Sequence[np.ndarray], separators: Iterable[int]) -> float:
    lengths = document_lengths(windows, separators)
    return float(np.mean(lengths)) if lengths else float("nan")


def text_statistics(windows: Sequence[np.ndarray], vocab_size: int, separators: Iterable[int]) -> dict[str, Any]:
    """All token statistics of a set at once."""
    ratios = ngram_ratios(windows)
    s, a = zipf_fit(windows)
    counts = token_counts(windows)
    docs = document_lengths(windows, separators)
    return {
        "windows": len(windows),
        "tokens": int(sum(len(w) for w in windows)),
        "distinct_tokens": int(len(counts)),
        "vocab_coverage": len(counts) / vocab_size,
        "ngram_diversity": float(np.mean(list(ratios.values()))) if ratios else float("nan"),
        "ngram_ratios": {str(n): r for n, r in ratios.items()},
        "zipf_coefficient": s,
        "zipf_intercept": a,
        "repetition_rate": repetition_rate(windows),
        "documents": len(docs),
        "mean_document_length": float(np.mean(docs)) if docs else float("nan"),
    }
