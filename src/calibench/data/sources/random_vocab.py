"""Random vocabulary tokens: the no-information baseline of the self-calibration paper."""

from __future__ import annotations

from typing import Any

import numpy as np

from calibench.data.sources.base import RANDOM, Sampled, Source


def special_token_ids(tokenizer: Any) -> set[int]:
    """Every id the tokenizer treats as special (BOS/EOS/PAD/UNK and added special tokens)."""
    ids = {int(i) for i in tokenizer.all_special_ids}
    for token_id, added in getattr(tokenizer, "added_tokens_decoder", {}).items():
        if getattr(added, "special", False):
            ids.add(int(token_id))
    return ids


def ordinary_token_ids(tokenizer: Any) -> np.ndarray:
    """Sorted ids of all non-special tokens: what the baseline draws from uniformly."""
    specials = special_token_ids(tokenizer)
    return np.asarray([i for i in range(len(tokenizer)) if i not in specials], dtype=np.int32)


class RandomVocabSource(Source):
    name = "random-vocab"
    kind = "random"
    description = "tokens drawn uniformly from the vocabulary, special tokens excluded"
    splits = ("none",)
    default_split = "none"
    modes = (RANDOM,)
    default_mode = RANDOM

    def sample(self, tokenizer: Any, split: str, count: int, length: int, mode: str, rng: np.random.Generator):
        allowed = ordinary_token_ids(tokenizer)
        tokens = allowed[rng.integers(0, len(allowed), size=(count, length))]
        record = self.record(split, fingerprint=f"uniform:{len(allowed)}")
        # Random windows have no place in any corpus, so no provenance is recorded.
        return Sampled(tokens.astype(np.int32), []), record
