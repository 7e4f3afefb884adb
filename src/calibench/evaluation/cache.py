"""Per-process caches of evaluation's fixed costs: work every cell of a study repeats that does not depend on the cell.

A study worker evaluates one compressed model after another with the same
tasks; without these caches each evaluation re-reads the offline mirrors,
re-reads and re-tokenizes the held-out text, deep-copies the tokenizer for
lm-eval and runs lm-eval's environment probe (``collect_env``, a dozen
subprocesses) again.  Each cache is small (a few entries, least recently
used dropped), keyed by everything that determines its value, and lives in
the module that owns the work:

* :data:`HELDOUT_DOCS` and :data:`HELDOUT_IDS` (:mod:`.kinds.perplexity`):
  the documents of a ``ppl:`` text (keyed by the text's spec, the cache
  root and, for a local file, its size and mtime) and their token ids (keyed
  by the documents' fingerprint, the joiner and the tokenizer);
* :data:`MIRROR_DATA` (:mod:`.lmeval`): the offline data of an lm-eval task
  (keyed by the mirror and the assets directory).  lm-eval's ``Task`` objects
  are *not* cached: ``simple_evaluate`` mutates them (few-shot count and
  RNG, the built requests with the model's responses), and building one from
  cached data takes a tenth of a second;
* :data:`ENV_INFO` (:mod:`.lmeval`): lm-eval's environment description and
  ``git describe`` (keyed by the working directory);
* :data:`LM_TOKENIZERS` (:mod:`.backends`): the tokenizer copy HFLM gets,
  reused only while it looks exactly as a fresh copy does (HFLM sets a pad
  token on a tokenizer without one: then it is never reused).

Cached values are never handed out to be changed: arrays and dicts are
copied on the way out, datasets are read-only to lm-eval.  Every cache is
cleared by :func:`clear_caches` (tests clear them around each test; the
study test runs cells with and without them and compares every stored bit).
The tokenizer's vocabulary hash is memoised where it is computed
(:func:`calibench.data.tokenizer.vocab_hash`) and cleared here too.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, Generic, TypeVar

from calibench.data.tokenizer import clear_vocab_hash_cache

V = TypeVar("V")


class ProcessCache(Generic[V]):
    """A small least-recently-used map for one kind of value, registered so that :func:`clear_caches` finds it."""

    def __init__(self, name: str, maxsize: int) -> None:
        self.name = name
        self.maxsize = maxsize
        self._entries: OrderedDict[Hashable, V] = OrderedDict()
        self.hits = 0
        self.misses = 0
        _CACHES.append(self)

    def get_or_make(self, key: Hashable, make: Callable[[], V]) -> V:
        """The value under ``key``, made (and kept) on a miss; an unhashable key is never cached."""
        try:
            value = self._entries[key]
        except KeyError:
            pass
        except TypeError:  # a key holding an unhashable part (a tokenizer class with __eq__): no caching
            return make()
        else:
            self._entries.move_to_end(key)
            self.hits += 1
            return value
        value = make()
        self.misses += 1
        self._entries[key] = value
        while len(self._entries) > self.maxsize:
            self._entries.popitem(last=False)
        return value

    def get(self, key: Hashable) -> V | None:
        """The value under ``key``, or None (also for an unhashable key)."""
        try:
            value = self._entries[key]
        except (KeyError, TypeError):
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return value

    def put(self, key: Hashable, value: V) -> None:
        """Keep ``value`` under ``key`` (an unhashable key keeps nothing)."""
        try:
            self._entries[key] = value
        except TypeError:
            return
        self._entries.move_to_end(key)
        self.misses += 1
        while len(self._entries) > self.maxsize:
            self._entries.popitem(last=False)

    def keys(self) -> list[Hashable]:
        return list(self._entries)

    def clear(self) -> None:
        self._entries.clear()
        self.hits = self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)


_CACHES: list[ProcessCache[Any]] = []

HELDOUT_DOCS: ProcessCache[tuple[list[str], str]] = ProcessCache("heldout texts", maxsize=8)
HELDOUT_IDS: ProcessCache[Any] = ProcessCache("heldout token ids", maxsize=8)
MIRROR_DATA: ProcessCache[Any] = ProcessCache("lm-eval offline mirrors", maxsize=16)
ENV_INFO: ProcessCache[Any] = ProcessCache("lm-eval environment info", maxsize=4)
LM_TOKENIZERS: ProcessCache[Any] = ProcessCache("lm-eval tokenizer copies", maxsize=4)


def tokenizer_key(tokenizer: Any) -> tuple[Any, ...] | None:
    """The tokenizer object itself (by identity: a cache entry keeps it alive, so its id is never reused) and
    the state a change of which changes its output: size, special tokens, name; None for an object without
    a size (nothing is cached for it)."""
    try:
        size = len(tokenizer)
    except TypeError:
        return None
    specials = (getattr(tokenizer, attr, None) for attr in ("bos_token_id", "eos_token_id", "pad_token_id",
                                                            "unk_token_id"))  # fmt: skip
    return (tokenizer, size, getattr(tokenizer, "name_or_path", None), *specials)


def clear_caches() -> None:
    """Forget every per-process evaluation cache (and the tokenizer vocabulary hashes)."""
    for cache in _CACHES:
        cache.clear()
    clear_vocab_hash_cache()


def cache_sizes() -> dict[str, int]:
    """Entries per cache, by name (for tests and benchmarks)."""
    return {cache.name: len(cache) for cache in _CACHES}
