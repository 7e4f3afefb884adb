"""A corpus as one token stream, tokenized once per tokenizer and cached.

The concat convention needs the whole corpus as a single sequence of ids.
Documents are tokenized without special tokens and joined with the tokens of
``"\\n\\n"``, the separator the GPTQ code puts between wikitext lines.
Tokenizing a few MB of text takes seconds, so the result is cached under
``$CALIBENCH_HOME/tokens`` keyed by the corpus fingerprint and the tokenizer's
vocabulary hash; a changed corpus or tokenizer gets a new key.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from calibench.core.fsutil import atomic_dir
from calibench.core.paths import token_cache_dir
from calibench.core.progress import task
from calibench.data.tokenizer import vocab_hash

SEPARATOR = "\n\n"
_CHUNK = 256


def _cache_key(fingerprint: str, tokenizer: Any) -> str:
    payload = f"v1|{fingerprint}|{vocab_hash(tokenizer)}|{SEPARATOR!r}"
    return hashlib.sha256(payload.encode()).hexdigest()[:24]


def tokenize_stream(docs: Any, tokenizer: Any, label: str = "corpus") -> np.ndarray:
    """Tokenize every document and join them with the separator's tokens."""
    separator = np.asarray(tokenizer(SEPARATOR, add_special_tokens=False)["input_ids"], dtype=np.int32)
    pieces: list[np.ndarray] = []
    total = len(docs)
    with task(f"tokenizing {label}", total=total, unit="docs") as bar:
        for begin in range(0, total, _CHUNK):
            batch = docs.batch(range(begin, min(begin + _CHUNK, total)))
            for ids in tokenizer(batch, add_special_tokens=False)["input_ids"]:
                if pieces:
                    pieces.append(separator)
                pieces.append(np.asarray(ids, dtype=np.int32))
            bar.advance(len(batch))
    return np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.int32)


def tokenized_stream(docs: Any, tokenizer: Any, label: str = "corpus", use_cache: bool = True) -> np.ndarray:
    """The cached token stream of ``docs`` under ``tokenizer``."""
    if not use_cache:
        return tokenize_stream(docs, tokenizer, label)
    path = token_cache_dir() / _cache_key(docs.fingerprint(), tokenizer)
    stream_file = path / "stream.npy"
    if stream_file.is_file():
        try:
            return np.load(stream_file, allow_pickle=False)
        except (OSError, ValueError):
            pass  # a damaged cache entry is rebuilt below
    stream = tokenize_stream(docs, tokenizer, label)
    with atomic_dir(path, overwrite=True) as tmp:
        np.save(tmp / "stream.npy", stream, allow_pickle=False)
    return stream
