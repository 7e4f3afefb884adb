"""Token-distribution statistics of a set, beyond :mod:`calibench.data.stats.text` (pure numpy).

Every function takes windows: a list of 1-D integer arrays (the unmasked
tokens of each window, :func:`calibench.data.stats.text.windows_of`).

* **token entropy**: the Shannon entropy, in bits, of the set's pooled
  unigram distribution ``p(t) = count(t) / tokens``;
* **distinct share**: distinct token ids / token occurrences (a type-token
  ratio: 1 when no token repeats);
* **unigram Jensen-Shannon divergence** between two sets' pooled unigram
  distributions, in bits (0 for identical distributions, 1 for disjoint
  vocabularies): ``JS = H(m) - (H(p) + H(q)) / 2`` with ``m = (p + q) / 2``.
  A set whose tokens are distributed like the evaluation text's scores low.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def _pooled(windows: Sequence[np.ndarray]) -> np.ndarray:
    arrays = [np.asarray(w, dtype=np.int64).ravel() for w in windows]
    return np.concatenate(arrays) if arrays else np.zeros(0, dtype=np.int64)


def unigram(windows: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(distinct token ids, their probabilities) of the pooled windows."""
    ids, counts = np.unique(_pooled(windows), return_counts=True)
    return ids, counts / max(int(counts.sum()), 1)


def _entropy_bits(p: np.ndarray) -> float:
    p = p[p > 0]
    return float(-(p * np.log2(p)).sum())


def token_entropy(windows: Sequence[np.ndarray]) -> float:
    """Shannon entropy (bits) of the pooled unigram distribution; NaN for no tokens."""
    ids, p = unigram(windows)
    return _entropy_bits(p) if ids.size else math.nan


def distinct_share(windows: Sequence[np.ndarray]) -> float:
    """Distinct token ids divided by token occurrences; NaN for no tokens."""
    pooled = _pooled(windows)
    return np.unique(pooled).size / pooled.size if pooled.size else math.nan


def unigram_js(windows_a: Sequence[np.ndarray], windows_b: Sequence[np.ndarray]) -> float:
    """Jensen-Shannon divergence (bits) between the pooled unigram distributions of two sets of windows."""
    ids_a, p_a = unigram(windows_a)
    ids_b, p_b = unigram(windows_b)
    if not ids_a.size or not ids_b.size:
        return math.nan
    vocab = np.union1d(ids_a, ids_b)
    p = np.zeros(vocab.size)
    q = np.zeros(vocab.size)
    p[np.searchsorted(vocab, ids_a)] = p_a
    q[np.searchsorted(vocab, ids_b)] = p_b
    return max(0.0, _entropy_bits((p + q) / 2) - (_entropy_bits(p) + _entropy_bits(q)) / 2)
