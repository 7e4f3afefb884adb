"""Where the windows go: the pure math of GPTQ-style window sampling.

Two conventions from the GPTQ/SparseGPT/Wanda code:

* **document** (the c4 convention): pick a random document with at least
  ``length`` tokens and a random window inside it.  Each document is used at
  most once, so windows from different sets never share a document.
* **concat** (the wikitext convention): random windows over the concatenated
  corpus.  The reference code draws starts independently (windows may
  overlap); here all windows of all sets are placed together, uniformly at
  random among the placements in which no two overlap, so that k sets drawn
  at once are guaranteed disjoint down to the token position.

Everything here takes a ``numpy.random.Generator`` and returns plain arrays.
"""

from __future__ import annotations

import numpy as np


def max_disjoint_windows(stream_len: int, length: int) -> int:
    """How many non-overlapping windows of ``length`` fit in a stream."""
    return stream_len // length if length > 0 else 0


def place_disjoint_windows(stream_len: int, count: int, length: int, rng: np.random.Generator) -> np.ndarray:
    """Starts of ``count`` non-overlapping windows, uniform over all such placements, sorted.

    Stars and bars: the ``slack = stream_len - count * length`` unused tokens
    are split into ``count + 1`` gaps.  Choosing ``count`` distinct values
    ``u_0 < ... < u_{count-1}`` from ``range(slack + count)`` and setting
    gap prefix ``g_i = u_i - i`` enumerates every placement exactly once.
    """
    slack = stream_len - count * length
    if count <= 0 or length <= 0 or slack < 0:
        raise ValueError(f"cannot place {count} windows of {length} in a stream of {stream_len}")
    picks = np.sort(rng.choice(slack + count, size=count, replace=False))
    offsets = np.arange(count, dtype=np.int64)
    return picks - offsets + offsets * length


def deal_into_sets(count: int, set_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Randomly deal ``count`` window indices into ``count // set_size`` sets."""
    order = rng.permutation(count)
    return [order[i : i + set_size] for i in range(0, count - count % set_size, set_size)]


def window_start_in_document(doc_len: int, length: int, rng: np.random.Generator) -> int:
    """A uniformly random start for a window of ``length`` inside a document."""
    return int(rng.integers(0, doc_len - length + 1))


def intervals_overlap(intervals: list[tuple[int, int, int]]) -> bool:
    """Whether any two (document, start, length) intervals share a token position."""
    by_doc: dict[int, list[tuple[int, int]]] = {}
    for doc, start, length in intervals:
        by_doc.setdefault(doc, []).append((start, start + length))
    for spans in by_doc.values():
        spans.sort()
        for (_, end), (next_start, _) in zip(spans, spans[1:]):
            if next_start < end:
                return True
    return False
