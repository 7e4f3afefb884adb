"""Contamination: which evaluation items share a long word n-gram with a calibration set.

A calibration set that contains benchmark items makes the compressed model's
score on that benchmark partly a memory test: the compression was fitted on
the very text it is then scored on.  The check follows the GPT-3 convention
(Brown et al. 2020, appendix C): text is reduced to lower-cased words
(punctuation and spacing dropped), and a benchmark item counts as overlapping
when any of its n-grams (13 words by default) also occurs in the set.

The set is indexed once (a sorted array of 64-bit n-gram hashes, with the
window each came from) and the benchmark items are streamed against it, so
memory follows the set's size, not the benchmarks'.  Words are numbered by
the set's own vocabulary: an item n-gram holding a word the set never uses
cannot match and is not hashed at all.  Each string field of an item is a
segment of its own (n-grams never straddle two fields); an item whose
segments are all shorter than n words cannot be checked and is counted apart
(``checkable``), so the shares are honest about what was looked at.  Hash
collisions are possible in principle (64-bit hashes; about 1e-7 expected
false matches for a 10^6-n-gram set against 10^7 benchmark n-grams).

Everything here is a pure function of texts; reading the benchmarks is
:mod:`calibench.card.benchmarks`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

DEFAULT_N = 13
DEFAULT_TOP = 5
_WORD = re.compile(r"\w+")
_SEP = -1  # an id no word has: n-grams holding it are not hashed (marks, words the set never uses)
_HASH_SEED = 20_250_113


def normalize(text: str) -> list[str]:
    """The text as lower-cased words (runs of letters, digits and underscores); everything else dropped."""
    return _WORD.findall(text.lower())


def _coefficients(n: int) -> np.ndarray:
    """Odd 64-bit multipliers, one per n-gram position (fixed seed: the same n-gram hashes alike everywhere)."""
    rng = np.random.default_rng(_HASH_SEED + n)
    return rng.integers(0, 2**63, size=n, dtype=np.uint64) * np.uint64(2) + np.uint64(1)


def _mix(ids: np.ndarray) -> np.ndarray:
    """A bijective 64-bit mix of word ids (splitmix64's finaliser), so that the position sum below is not linear in
    ids."""
    with np.errstate(over="ignore"):
        x = ids.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def ngram_hashes(ids: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Hashes of the n-grams of ``ids`` that hold no separator, and their start positions."""
    ids = np.asarray(ids, dtype=np.int64)
    if len(ids) < n:
        return np.zeros(0, dtype=np.uint64), np.zeros(0, dtype=np.int64)
    view = np.lib.stride_tricks.sliding_window_view(ids, n)
    starts = np.flatnonzero(view.min(axis=1) >= 0)
    if starts.size == 0:
        return np.zeros(0, dtype=np.uint64), starts
    mixed = _mix(ids)
    grams = np.lib.stride_tricks.sliding_window_view(mixed, n)[starts]
    with np.errstate(over="ignore"):
        hashes = (grams * _coefficients(n)).sum(axis=1, dtype=np.uint64)
    return hashes, starts


def _window_ids(words: list[str], vocab: dict[str, int]) -> np.ndarray:
    """Word ids of a window, numbering new words as they come (the set's vocabulary)."""
    return np.fromiter((vocab.setdefault(w, len(vocab)) for w in words), dtype=np.int64, count=len(words))


@dataclass
class SetIndex:
    """The n-grams of a set's windows: sorted hashes and, aligned, the window each occurs in."""

    n: int
    vocab: dict[str, int]
    hashes: np.ndarray  # uint64, sorted
    windows: np.ndarray  # int64, the window of each hash
    num_windows: int

    def lookup(self, hashes: np.ndarray) -> np.ndarray:
        """Which of ``hashes`` occur in the set."""
        if self.hashes.size == 0 or hashes.size == 0:
            return np.zeros(hashes.shape, dtype=bool)
        pos = np.searchsorted(self.hashes, hashes)
        pos = np.minimum(pos, self.hashes.size - 1)
        return self.hashes[pos] == hashes

    def windows_of(self, hashes: np.ndarray) -> np.ndarray:
        """The distinct windows holding any of ``hashes``."""
        if hashes.size == 0 or self.hashes.size == 0:
            return np.zeros(0, dtype=np.int64)
        return np.unique(self.windows[np.isin(self.hashes, np.unique(hashes))])


def index_windows(texts: Sequence[str], n: int = DEFAULT_N) -> SetIndex:
    """Index the n-grams of each window text (n-grams never cross two windows)."""
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    vocab: dict[str, int] = {}
    all_hashes, all_windows = [], []
    for w, text in enumerate(texts):
        hashes, _ = ngram_hashes(_window_ids(normalize(text), vocab), n)
        all_hashes.append(hashes)
        all_windows.append(np.full(hashes.size, w, dtype=np.int64))
    hashes = np.concatenate(all_hashes) if all_hashes else np.zeros(0, dtype=np.uint64)
    windows = np.concatenate(all_windows) if all_windows else np.zeros(0, dtype=np.int64)
    order = np.argsort(hashes, kind="stable")
    return SetIndex(n, vocab, hashes[order], windows[order], len(texts))


@dataclass(frozen=True)
class ItemHit:
    """One benchmark item that shares n-grams with the set."""

    item: int  # position in the benchmark's item list
    label: str  # how a reader finds it (``test[170]``), or the position
    shared: int  # how many of its n-grams occur in the set
    windows: tuple[int, ...]  # the set windows holding them
    example: str  # the first shared n-gram, as normalized words


@dataclass
class BenchmarkOverlap:
    """The overlap of one benchmark (or held-out text) with the set."""

    benchmark: str
    kind: str  # "task" (an evaluation task's items) or "heldout" (perplexity text, one item per document)
    n: int
    items: int
    checkable: int  # items with at least one segment of n words or more
    items_hit: int
    windows: int
    windows_hit: int
    top: list[ItemHit] = field(default_factory=list)
    origin: str = ""

    @property
    def item_share(self) -> float:
        """Share of checkable items that overlap (0 when none is checkable)."""
        return self.items_hit / self.checkable if self.checkable else 0.0

    @property
    def window_share(self) -> float:
        return self.windows_hit / self.windows if self.windows else 0.0

    def to_dict(self) -> dict:
        return {
            "benchmark": self.benchmark,
            "kind": self.kind,
            "n": self.n,
            "origin": self.origin,
            "items": self.items,
            "checkable_items": self.checkable,
            "items_overlapping": self.items_hit,
            "item_share": self.item_share,
            "windows": self.windows,
            "windows_overlapping": self.windows_hit,
            "window_share": self.window_share,
            "top": [
                {
                    "item": h.item,
                    "label": h.label,
                    "shared_ngrams": h.shared,
                    "windows": list(h.windows),
                    "example": h.example,
                }
                for h in self.top
            ],
        }


_SEGMENT_MARK, _ITEM_MARK = "\x00", "\x01"  # never inside a word, so never in a set's vocabulary
_MARKS = re.compile(r"\w+|[\x00\x01]")
_SEGMENT_ID, _ITEM_ID, _UNKNOWN_ID = -1, -2, -3


def _benchmark_tokens(items: Sequence[Sequence[str]]) -> list[str]:
    """Every item's normalized words in one list: segments split by a segment mark, items by an item mark.

    One regex pass and one dictionary pass over a whole benchmark instead of
    one per segment: a benchmark has up to 10^4 items and 10^6 words.
    """
    # a stray item mark inside a text would shift every later item: blank it (a stray segment mark only splits)
    text = _ITEM_MARK.join(_SEGMENT_MARK.join(s.replace(_ITEM_MARK, " ") for s in segments) for segments in items)
    return _MARKS.findall(text.lower())


def benchmark_overlap(
    index: SetIndex,
    name: str,
    items: Sequence[Sequence[str]],
    *,
    kind: str = "task",
    top: int = DEFAULT_TOP,
    origin: str = "",
    labels: Sequence[str] | None = None,
) -> BenchmarkOverlap:
    """Overlap of ``items`` (each a list of text segments, ``labels`` naming them) with the indexed set."""
    from itertools import repeat

    n, count = index.n, len(items)
    tokens = _benchmark_tokens(items)
    lookup = {**index.vocab, _SEGMENT_MARK: _SEGMENT_ID, _ITEM_MARK: _ITEM_ID}
    ids = np.fromiter(map(lookup.get, tokens, repeat(_UNKNOWN_ID)), dtype=np.int64, count=len(tokens))
    is_item_mark = ids == _ITEM_ID
    is_mark = is_item_mark | (ids == _SEGMENT_ID)
    owner = np.cumsum(is_item_mark)  # the item of every position
    # checkable: some run of words between marks (known to the set or not) is n long
    run = np.cumsum(is_mark)
    run_length = np.bincount(run[~is_mark], minlength=int(run[-1]) + 1) if run.size else np.zeros(0, dtype=np.int64)
    long_runs = np.flatnonzero(run_length >= n)
    first_of_run = np.searchsorted(run, long_runs)  # a run's first position (run ids rise by one per mark)
    checkable = int(np.unique(owner[first_of_run]).size) if long_runs.size else 0
    hashes, starts = ngram_hashes(np.where(ids >= 0, ids, _SEP), n)
    found = index.lookup(hashes)
    hit_owner = owner[starts[found]]
    shared = np.bincount(hit_owner, minlength=count)
    windows_hit = index.windows_of(hashes[found])
    ranked = sorted((int(i) for i in np.flatnonzero(shared)), key=lambda i: (-int(shared[i]), i))[:top]
    hits = []
    for i in ranked:
        mine = found & (owner[starts] == i)
        first = int(starts[np.flatnonzero(mine)[0]])
        windows = tuple(int(w) for w in index.windows_of(hashes[mine]))
        hits.append(
            ItemHit(i, labels[i] if labels else str(i), int(shared[i]), windows, " ".join(tokens[first : first + n]))
        )
    return BenchmarkOverlap(
        name,
        kind,
        n,
        count,
        checkable,
        int(np.count_nonzero(shared)),
        index.num_windows,
        int(windows_hit.size),
        hits,
        origin,
    )
