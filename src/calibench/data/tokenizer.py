"""A tokenizer's identity: its name and a hash of what it maps text to.

Token ids are meaningless without the vocabulary that produced them, so every
calibration set records the identity of its tokenizer and refuses to be used
with another.  The name is informative only (the same tokenizer can live at
many paths); the vocabulary hash is what is compared.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import weakref
from dataclasses import dataclass
from typing import Any, Literal

from calibench.core.errors import ParameterError
from calibench.core.paths import assets_dir

BosPolicy = bool | Literal["auto"]


@dataclass(frozen=True)
class TokenizerIdentity:
    name: str
    vocab_sha256: str
    vocab_size: int

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "vocab_sha256": self.vocab_sha256, "vocab_size": self.vocab_size}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TokenizerIdentity:
        return cls(name=str(data["name"]), vocab_sha256=str(data["vocab_sha256"]), vocab_size=int(data["vocab_size"]))


# tokenizer object -> (its size and special ids when hashed, the hash): a study hashes the same tokenizer per cell
_VOCAB_HASHES: weakref.WeakKeyDictionary[Any, tuple[tuple[Any, ...], str]] = weakref.WeakKeyDictionary()


def vocab_hash(tokenizer: Any) -> str:
    """sha256 over the sorted (token, id) pairs and the special tokens.

    Special tokens are included because two tokenizers with one vocabulary but
    a different BOS/EOS produce different windows.  Memoised per tokenizer
    object while its size and special tokens are unchanged (the vocabulary of
    a loaded tokenizer changes only by adding tokens).
    """
    try:
        state = (len(tokenizer), tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id,
                 tokenizer.unk_token_id)  # fmt: skip
        memo = _VOCAB_HASHES.get(tokenizer)
    except (TypeError, AttributeError):  # not sized, not hashable or not weakly referable: hash every time
        return _vocab_hash(tokenizer)
    if memo is not None and memo[0] == state:
        return memo[1]
    digest = _vocab_hash(tokenizer)
    with contextlib.suppress(TypeError):
        _VOCAB_HASHES[tokenizer] = (state, digest)
    return digest


def clear_vocab_hash_cache() -> None:
    """Forget the memoised vocabulary hashes (tests; calibench.evaluation.cache.clear_caches calls it)."""
    _VOCAB_HASHES.clear()


def _vocab_hash(tokenizer: Any) -> str:
    vocab = sorted(tokenizer.get_vocab().items(), key=lambda kv: (kv[1], kv[0]))
    specials = {
        "bos": tokenizer.bos_token_id,
        "eos": tokenizer.eos_token_id,
        "pad": tokenizer.pad_token_id,
        "unk": tokenizer.unk_token_id,
    }
    payload = json.dumps({"vocab": vocab, "specials": specials}, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def portable_name(name_or_path: str) -> str:
    """A bundled asset is named by its asset name, not by this machine's cache path.

    Otherwise the manifest (and so the set's bytes) would depend on where
    ``$CALIBENCH_HOME`` points.
    """
    from pathlib import Path

    path = Path(name_or_path)
    if path.is_absolute() and path.parent == assets_dir():
        return path.name
    return name_or_path


def identify(tokenizer: Any) -> TokenizerIdentity:
    """The identity of a loaded Hugging Face tokenizer."""
    return TokenizerIdentity(
        name=portable_name(str(getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__)),
        vocab_sha256=vocab_hash(tokenizer),
        vocab_size=len(tokenizer),
    )


def tokenizer_adds_bos(tokenizer: Any) -> bool:
    """Whether the tokenizer puts BOS in front of plain text by itself (Gemma's does, SmolLM2's does not)."""
    bos = tokenizer.bos_token_id
    if bos is None:
        return False
    ids = tokenizer("a")["input_ids"]
    return bool(ids) and ids[0] == bos


def resolve_bos(tokenizer: Any, bos: BosPolicy) -> bool:
    """The BOS choice for windows: ``"auto"`` follows the tokenizer; ``True`` needs a BOS token."""
    if bos == "auto":
        return tokenizer_adds_bos(tokenizer)
    if bos and tokenizer.bos_token_id is None:
        raise ParameterError("bos", "cannot be 'always': this tokenizer has no BOS token (use never or auto)")
    return bool(bos)


def pad_token_id(tokenizer: Any) -> int:
    """The id written at padded positions: PAD, else EOS, else 0.

    Its value never matters to calibration (padded positions are masked and
    are not handed to the model), but it must be a valid id of the vocabulary.
    """
    for value in (tokenizer.pad_token_id, tokenizer.eos_token_id):
        if value is not None:
            return int(value)
    return 0
