"""The vocabulary file: which token ids to keep, why, and for which tokenizer.

Token ids mean nothing without the tokenizer that produced them, so the file
carries the tokenizer's identity (:mod:`calibench.data.tokenizer`) and is
refused for any other tokenizer.  It also keeps the counts and the reason each
always-kept id is there, so a user can see what a keep set is made of.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from calibench.core.errors import CalibenchError, CorruptArtifactError, TokenizerMismatchError
from calibench.core.fsutil import atomic_write_bytes
from calibench.data.tokenizer import identify

FORMAT = "calibench-vocab"
FORMAT_VERSION = 1


def ids_sha256(ids: list[int]) -> str:
    return hashlib.sha256(json.dumps(list(ids), separators=(",", ":")).encode()).hexdigest()


class Coverage(BaseModel):
    """The share of a held-out text's tokens that the keep set holds."""

    heldout: str
    tokens: int
    kept_tokens: int
    distinct: int  # distinct ids in the held-out text
    distinct_kept: int

    @property
    def share(self) -> float:
        return self.kept_tokens / self.tokens if self.tokens else 1.0


class Vocabulary(BaseModel):
    """A keep set: sorted token ids, the tokenizer they belong to, and where they came from."""

    format: str = FORMAT
    format_version: int = FORMAT_VERSION
    tokenizer: dict[str, Any]  # TokenizerIdentity.to_dict()
    kept: list[int]
    kept_sha256: str = ""
    counted_ids: list[int] = Field(default_factory=list)  # every id seen in the inputs ...
    counts: list[int] = Field(default_factory=list)  # ... and how often
    always: dict[str, list[int]] = Field(default_factory=dict)  # rule name -> ids it kept
    inputs: list[dict[str, Any]] = Field(default_factory=list)
    min_count: int = 1
    top_k: int | None = None
    coverage: list[Coverage] = Field(default_factory=list)

    def model_post_init(self, _context: Any) -> None:
        if not self.kept_sha256:
            self.kept_sha256 = ids_sha256(self.kept)

    # ------------------------------------------------------------ facts
    @property
    def vocab_size(self) -> int:
        return int(self.tokenizer["vocab_size"])

    @property
    def share(self) -> float:
        """The share of the tokenizer's vocabulary kept."""
        return len(self.kept) / self.vocab_size if self.vocab_size else 0.0

    @property
    def total_tokens(self) -> int:
        return int(sum(self.counts))

    def check_tokenizer(self, tokenizer: Any, what: str = "the model") -> None:
        """Refuse a tokenizer other than the one the ids were counted with."""
        actual = identify(tokenizer)
        expected = self.tokenizer
        if actual.vocab_sha256 != expected["vocab_sha256"]:
            raise TokenizerMismatchError(
                f"the vocabulary file was made for tokenizer '{expected['name']}' (vocab "
                f"{str(expected['vocab_sha256'])[:12]}, {expected['vocab_size']} tokens), not for the tokenizer of "
                f"{what} ('{actual.name}', vocab {actual.vocab_sha256[:12]}, {actual.vocab_size} tokens): "
                f"collect it again with `calibench vocab collect --model <model>`"
            )

    # ------------------------------------------------------------ disk
    def save(self, path: str | Path) -> Path:

        text = json.dumps(self.model_dump(mode="json"), indent=1, sort_keys=True)
        atomic_write_bytes(path, (text + "\n").encode("utf-8"))
        return Path(path)

    @classmethod
    def load(cls, path: str | Path, tokenizer: Any | None = None, what: str = "the model") -> Vocabulary:
        path = Path(path)
        if path.is_dir():
            raise CalibenchError(f"{path} is a directory: give the JSON file written by `calibench vocab collect`")
        if not path.is_file():
            raise CalibenchError(f"no such vocabulary file: {path} (write one with `calibench vocab collect`)")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise CorruptArtifactError(f"{path} is not a vocabulary file ({str(exc).splitlines()[0]}): "
                                       "write one with `calibench vocab collect`") from None  # fmt: skip
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise CorruptArtifactError(f"{path} is not a vocabulary file (no \"format\": \"{FORMAT}\"): "
                                       "write one with `calibench vocab collect`")  # fmt: skip
        try:
            vocab = cls.model_validate(data)
        except ValidationError as exc:
            first = str(exc).splitlines()[0]
            raise CorruptArtifactError(f"{path} is corrupt ({first}): collect it again") from None
        if vocab.kept_sha256 != ids_sha256(vocab.kept):
            raise CorruptArtifactError(f"{path} was edited (its kept ids do not match kept_sha256): collect it again")
        check_ids(vocab.kept, vocab.vocab_size, str(path))
        if tokenizer is not None:
            vocab.check_tokenizer(tokenizer, what)
        return vocab


def check_ids(ids: list[int], vocab_size: int, what: str) -> None:
    """A keep set is non-empty, sorted, unique and inside the vocabulary."""
    if not ids:
        raise CalibenchError(f"{what}: the keep set is empty: nothing to prune to (count some text first)")
    if any(b <= a for a, b in zip(ids, ids[1:])):
        raise CorruptArtifactError(f"{what}: kept ids are not sorted and unique: collect it again")
    if ids[0] < 0 or ids[-1] >= vocab_size:
        bad = ids[0] if ids[0] < 0 else ids[-1]
        raise CalibenchError(f"{what}: token id {bad} is outside the vocabulary of {vocab_size}")
