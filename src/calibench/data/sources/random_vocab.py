"""Random tokens: the no-information baselines.

``random-vocab`` draws uniformly from every ordinary token (the
self-calibration paper's baseline); ``random-punct`` only from tokens that are
punctuation and spacing, the nonsensical baseline of Paglieri et al. (2024),
whose random punctuation strings were the worst-case calibration set for
activation outliers.  Drawing token ids (rather than generating punctuation
text and tokenizing it) keeps every window exactly ``seq_len`` long and the
set byte-identical for a seed.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from calibench.core.errors import CalibenchError
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


def punctuation_token_ids(tokenizer: Any) -> np.ndarray:
    """Sorted ids of ordinary tokens whose text is punctuation (and spacing) only, at least one mark."""
    import unicodedata

    out = []
    for token_id in ordinary_token_ids(tokenizer):
        text = tokenizer.decode([int(token_id)])
        marks = [ch for ch in text if not ch.isspace()]
        if marks and all(unicodedata.category(ch).startswith("P") for ch in marks):
            out.append(int(token_id))
    return np.asarray(out, dtype=np.int32)


class _RandomTokensSource(Source):
    """Windows of tokens drawn uniformly (with replacement) from an allowed id set."""

    kind = "random"
    splits = ("none",)
    default_split = "none"
    modes = (RANDOM,)
    default_mode = RANDOM

    def allowed(self, tokenizer: Any) -> np.ndarray:
        raise NotImplementedError

    def sample(self, tokenizer: Any, split: str, count: int, length: int, mode: str, rng: np.random.Generator):
        allowed = self.allowed(tokenizer)
        if len(allowed) == 0:
            raise CalibenchError(f"{self.name}: this tokenizer has no tokens to draw from; choose another source")
        tokens = allowed[rng.integers(0, len(allowed), size=(count, length))]
        record = self.record(split, fingerprint=f"uniform:{len(allowed)}")
        # Random windows have no place in any corpus, so no provenance is recorded.
        return Sampled(tokens.astype(np.int32), []), record


class RandomVocabSource(_RandomTokensSource):
    name = "random-vocab"
    description = "tokens drawn uniformly from the vocabulary, special tokens excluded"

    def allowed(self, tokenizer: Any) -> np.ndarray:
        return ordinary_token_ids(tokenizer)


class RandomPunctSource(_RandomTokensSource):
    name = "random-punct"
    description = "tokens drawn uniformly from the vocabulary's punctuation tokens (nonsense baseline)"

    def allowed(self, tokenizer: Any) -> np.ndarray:
        return punctuation_token_ids(tokenizer)
