"""The CalibrationSet artifact: token windows plus a manifest with full provenance.

A set on disk is a directory with three files::

    manifest.json        what made the set (source, seed, sampling, tokenizer, hashes)
    input_ids.npy        int32, n x seq_len
    attention_mask.npy   uint8, n x seq_len

Nothing in it depends on the time or the machine, so the same inputs and seed
give a byte-identical directory.  ``tokens_sha256`` covers the shape, the ids
and the mask; the ``set_id`` is derived from that hash *and* from everything
the manifest claims the set is (n, seq_len, seed, tokenizer, source, sampling,
generator, parents), so loading re-derives both and refuses a set whose tokens
or whose identity were edited, token ids outside the recorded vocabulary, and
a tokenizer whose vocabulary hash differs from the recorded one.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from calibench import __version__
from calibench.core import failpoints
from calibench.core.errors import CalibenchError, CorruptArtifactError, TokenizerMismatchError
from calibench.core.fsutil import atomic_dir, atomic_write_bytes
from calibench.data.tokenizer import TokenizerIdentity, identify

# 2: the set id covers the manifest's identity fields (1: tokens and tokenizer only)
FORMAT_VERSION = 2
MANIFEST = "manifest.json"
IDS_FILE = "input_ids.npy"
MASK_FILE = "attention_mask.npy"


class SourceRecord(BaseModel):
    """Where the text came from, precisely enough to rebuild the set."""

    model_config = ConfigDict(extra="forbid")
    name: str
    kind: str
    split: str
    spec: dict[str, Any] = Field(default_factory=dict)
    fingerprint: str = ""


class SamplingRecord(BaseModel):
    """How windows were cut from the source."""

    model_config = ConfigDict(extra="forbid")
    mode: str
    bos: bool
    set_index: int = 0
    num_sets: int = 1
    # One entry per window, in row order: (document index, start token, body
    # length) for document sampling, (-1, start, length) in the concatenated
    # stream for concat sampling.  This is what proves that sets are disjoint.
    windows: list[tuple[int, int, int]] = Field(default_factory=list)


class Manifest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    format_version: int = FORMAT_VERSION
    calibench_version: str = __version__
    set_id: str
    tokens_sha256: str
    n: int
    seq_len: int
    seed: int | None
    tokenizer: dict[str, Any]
    source: SourceRecord
    sampling: SamplingRecord
    generator: dict[str, Any] | None = None
    parents: list[str] = Field(default_factory=list)


def tokens_sha256(input_ids: np.ndarray, attention_mask: np.ndarray) -> str:
    """Content hash of a set: shape, ids (int32 little-endian) and mask (uint8)."""
    ids = np.ascontiguousarray(input_ids, dtype="<i4")
    mask = np.ascontiguousarray(attention_mask, dtype="u1")
    digest = hashlib.sha256()
    digest.update(b"calibench-tokens-v1")
    digest.update(np.asarray(ids.shape, dtype="<i8").tobytes())
    digest.update(ids.tobytes())
    digest.update(mask.tobytes())
    return digest.hexdigest()


def make_set_id(tokens_hash: str, tokenizer_hash: str) -> str:
    """The format-1 id: tokens and tokenizer only (kept to verify sets written by calibench 0.1 format 1)."""
    return hashlib.sha256(f"{tokens_hash}:{tokenizer_hash}".encode()).hexdigest()[:16]


# Manifest fields that are not part of what the set is: the id itself and the writer's versions.
_NOT_IDENTITY = {"set_id", "calibench_version", "format_version"}


def identity_set_id(manifest: Manifest) -> str:
    """Short id naming the set: a hash of its tokens and of every field saying what it is.

    The same tokens under another tokenizer, seed or source record are another
    set, and an edit to any of those fields no longer matches the id.
    """
    if manifest.format_version < 2:
        return make_set_id(manifest.tokens_sha256, str(manifest.tokenizer.get("vocab_sha256", "")))
    identity = manifest.model_dump(mode="json", exclude=_NOT_IDENTITY)
    payload = json.dumps(identity, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(b"calibench-set-v2:" + payload.encode("utf-8")).hexdigest()[:16]


def check_vocabulary(ids: np.ndarray, vocab_size: Any, what: str) -> None:
    """Refuse token ids outside [0, vocab_size): they would index past the embedding."""
    if ids.size == 0:
        return
    low, high = int(ids.min()), int(ids.max())
    if low < 0 or (isinstance(vocab_size, int) and high >= vocab_size):
        bad = low if low < 0 else high
        raise CorruptArtifactError(
            f"{what} holds token id {bad}, outside its tokenizer's vocabulary of {vocab_size}: rebuild it"
        )


def check_content(ids: np.ndarray, mask: np.ndarray, what: str) -> None:
    """What consistent hashes cannot vouch for: at least one window of at least two positions, a 0/1 mask,
    and at least one real token in every window."""
    n, seq_len = ids.shape if ids.ndim == 2 else (0, 0)
    if n < 1:
        raise CorruptArtifactError(f"{what} is corrupt: it has no windows (n={n}): rebuild it")
    if seq_len < 2:
        raise CorruptArtifactError(
            f"{what} is corrupt: its windows have {seq_len} position(s), and a window needs at least 2 "
            "(one token to predict from, one to predict): rebuild it"
        )
    if mask.size and (int(mask.min()) < 0 or int(mask.max()) > 1):
        bad = int(mask.max()) if int(mask.max()) > 1 else int(mask.min())
        raise CorruptArtifactError(f"{what} is corrupt: its attention mask holds {bad}, not only 0 and 1: rebuild it")
    empty = np.flatnonzero(mask.sum(axis=1) == 0)
    if empty.size:
        which = "every window" if empty.size == n else f"window {int(empty[0])}"
        raise CorruptArtifactError(f"{what} is corrupt: {which} has an all-zero attention mask (no tokens): rebuild it")


class CalibrationSet:
    """n token windows of seq_len tokens, their masks, and the manifest that explains them."""

    def __init__(self, input_ids: np.ndarray, attention_mask: np.ndarray, manifest: Manifest):
        self.input_ids = input_ids
        self.attention_mask = attention_mask
        self.manifest = manifest

    # ------------------------------------------------------------ construction
    @classmethod
    def create(
        cls,
        input_ids: np.ndarray,
        tokenizer: Any,
        *,
        source: SourceRecord,
        sampling: SamplingRecord,
        seed: int | None,
        attention_mask: np.ndarray | None = None,
        generator: dict[str, Any] | None = None,
        parents: list[str] | None = None,
    ) -> CalibrationSet:
        """Wrap freshly sampled windows, computing hashes and ids."""
        ids = np.ascontiguousarray(input_ids, dtype=np.int32)
        if ids.ndim != 2 or ids.shape[0] == 0 or ids.shape[1] == 0:
            raise ValueError(f"input_ids must be a non-empty 2-D array, got shape {ids.shape}")
        mask = (
            np.ones_like(ids, dtype=np.uint8)
            if attention_mask is None
            else np.ascontiguousarray(attention_mask, dtype=np.uint8)
        )
        if mask.shape != ids.shape:
            raise ValueError(f"attention_mask shape {mask.shape} differs from input_ids {ids.shape}")
        ident = identify(tokenizer)
        digest = tokens_sha256(ids, mask)
        manifest = Manifest(
            set_id="",
            tokens_sha256=digest,
            n=int(ids.shape[0]),
            seq_len=int(ids.shape[1]),
            seed=seed,
            tokenizer=ident.to_dict(),
            source=source,
            sampling=sampling,
            generator=generator,
            parents=list(parents or []),
        )
        manifest.set_id = identity_set_id(manifest)
        check_vocabulary(ids, manifest.tokenizer.get("vocab_size"), "the new set")
        return cls(ids, mask, manifest)

    # ------------------------------------------------------------ properties
    @property
    def set_id(self) -> str:
        return self.manifest.set_id

    @property
    def sha256(self) -> str:
        return self.manifest.tokens_sha256

    @property
    def n(self) -> int:
        return self.manifest.n

    @property
    def seq_len(self) -> int:
        return self.manifest.seq_len

    @property
    def num_tokens(self) -> int:
        return int(self.attention_mask.sum())

    @property
    def tokenizer_identity(self) -> TokenizerIdentity:
        return TokenizerIdentity.from_dict(self.manifest.tokenizer)

    def __len__(self) -> int:
        return self.n

    def __repr__(self) -> str:
        src = self.manifest.source
        return f"CalibrationSet(id={self.set_id}, source={src.name}:{src.split}, n={self.n}, seq_len={self.seq_len})"

    # ------------------------------------------------------------ checks
    def check_tokenizer(self, tokenizer: Any) -> None:
        """Refuse a tokenizer other than the one the set was made for."""
        expected = self.tokenizer_identity
        actual = identify(tokenizer)
        if actual.vocab_sha256 != expected.vocab_sha256:
            raise TokenizerMismatchError(
                f"calibration set {self.set_id} was made with tokenizer '{expected.name}' "
                f"(vocab {expected.vocab_sha256[:12]}, {expected.vocab_size} tokens) but the given one is "
                f"'{actual.name}' (vocab {actual.vocab_sha256[:12]}, {actual.vocab_size} tokens): "
                "rebuild the set for this model with `calibench data build ... --model <model>`"
            )
        size = len(tokenizer)
        high = int(self.input_ids.max()) if self.input_ids.size else -1
        if high >= size or expected.vocab_size != size:
            raise CorruptArtifactError(
                f"calibration set {self.set_id} is corrupt: it records a vocabulary of {expected.vocab_size} and "
                f"holds token ids up to {high}, but its tokenizer has {size} tokens: rebuild it"
            )

    # ------------------------------------------------------------ disk I/O
    def save(self, directory: str | Path, overwrite: bool = False) -> Path:
        """Write the set atomically; a failure leaves nothing at ``directory``."""
        with atomic_dir(directory, overwrite=overwrite) as tmp:
            self.write_into(tmp)
        return Path(directory)

    def write_into(self, directory: Path) -> None:
        """Write the three files into an existing directory (used by multi-set builds)."""
        directory.mkdir(parents=True, exist_ok=True)
        np.save(directory / IDS_FILE, self.input_ids, allow_pickle=False)
        failpoints.reach("artifact.writing")  # one file of three on disk
        np.save(directory / MASK_FILE, self.attention_mask, allow_pickle=False)
        text = json.dumps(self.manifest.model_dump(mode="json"), indent=2, sort_keys=True, ensure_ascii=False)
        (directory / MANIFEST).write_text(text + "\n", encoding="utf-8")

    @classmethod
    def load(cls, directory: str | Path, tokenizer: Any | None = None) -> CalibrationSet:
        """Read a set, verify its content hash and, given a tokenizer, that it matches."""
        directory = Path(directory)
        if not directory.is_dir():
            raise CalibenchError(f"{directory} is not a directory: give the --out directory of `calibench data build`")
        manifest_path = directory / MANIFEST
        if not manifest_path.is_file():
            raise CorruptArtifactError(
                f"{directory} has no {MANIFEST}: it is not a calibration set (or was not fully written)"
            )
        try:
            manifest = Manifest.model_validate_json(manifest_path.read_text(encoding="utf-8"))
        except (ValidationError, ValueError) as exc:
            first = str(exc).splitlines()[0]
            raise CorruptArtifactError(f"{manifest_path} is corrupt ({first}): rebuild the set") from None
        if manifest.format_version > FORMAT_VERSION:
            raise CalibenchError(
                f"{directory} uses set format {manifest.format_version}, newer than this calibench "
                f"({__version__}) reads: upgrade calibench"
            )
        try:
            ids = np.load(directory / IDS_FILE, allow_pickle=False)
            mask = np.load(directory / MASK_FILE, allow_pickle=False)
        except (OSError, ValueError, EOFError) as exc:
            raise CorruptArtifactError(f"calibration set {directory} is corrupt ({exc}): rebuild it") from None
        if ids.dtype.kind not in "iu" or mask.dtype.kind not in "iub":
            raise CorruptArtifactError(
                f"calibration set {directory} is corrupt: token ids are {ids.dtype} and the mask {mask.dtype}, "
                "not integers: rebuild it"
            )
        if ids.shape != (manifest.n, manifest.seq_len) or mask.shape != ids.shape:
            raise CorruptArtifactError(
                f"calibration set {directory} is corrupt: arrays have shape {ids.shape}, manifest says "
                f"{(manifest.n, manifest.seq_len)}: rebuild it"
            )
        actual = tokens_sha256(ids, mask)
        if actual != manifest.tokens_sha256:
            raise CorruptArtifactError(
                f"calibration set {directory} is corrupt: token hash {actual[:12]} does not match the "
                f"manifest's {manifest.tokens_sha256[:12]}: rebuild it"
            )
        expected_id = identity_set_id(manifest)
        if manifest.set_id != expected_id:
            raise CorruptArtifactError(
                f"calibration set {directory} is corrupt: its manifest was edited (set id {manifest.set_id} does not "
                f"match {expected_id}, derived from its tokens, n, seq_len, seed, tokenizer and source): rebuild it"
            )
        check_vocabulary(ids, manifest.tokenizer.get("vocab_size"), f"calibration set {directory}")
        check_content(ids, mask, f"calibration set {directory}")
        calib = cls(ids.astype(np.int32, copy=False), mask.astype(np.uint8, copy=False), manifest)
        if tokenizer is not None:
            calib.check_tokenizer(tokenizer)
        return calib

    # ------------------------------------------------------------ exports
    def to_hf_dataset(self) -> Any:
        """An HF ``Dataset`` with ``input_ids`` and ``attention_mask`` columns, one row per window at its own length.

        This is the pre-tokenized form that llm-compressor's ``oneshot(dataset=...)``
        and GPTQModel's ``quantize(...)`` consume without re-tokenizing.  Masked
        (padded) positions are dropped rather than handed over: llm-compressor
        accumulates GPTQ/SparseGPT Hessians and Wanda/AWQ statistics over every
        position of a module's input, padding included (its
        ``apply_pad_mask_to_batch`` only rewrites padded ids to 0, and is not
        called by the calibration pipelines), so a padded position would count
        as calibration data.  Rows of one window each, at batch size 1, are
        exactly the real tokens.  The columns are built as Arrow arrays from the
        numpy buffers (no Python list per token), so memory stays near the
        set's own size even at 8,192 windows.
        """
        import pyarrow as pa
        from datasets import Dataset
        from datasets.table import InMemoryTable

        keep = self.attention_mask.astype(bool)
        lengths = keep.sum(axis=1)
        offsets = pa.array(np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32))
        ids = pa.ListArray.from_arrays(offsets, pa.array(self.input_ids[keep].astype(np.int64)))
        ones = pa.ListArray.from_arrays(offsets, pa.array(np.ones(int(lengths.sum()), dtype=np.int8)))
        return Dataset(InMemoryTable(pa.Table.from_arrays([ids, ones], names=["input_ids", "attention_mask"])))

    def to_torch(self) -> tuple[Any, Any]:
        """(input_ids, attention_mask) as int64 torch tensors, for hooks and direct forward passes."""
        import torch

        return torch.from_numpy(self.input_ids.astype(np.int64)), torch.from_numpy(self.attention_mask.astype(np.int64))

    def texts(self, tokenizer: Any, skip_special_tokens: bool = False) -> list[str]:
        """Decode every window (special tokens kept by default: they are part of what the model sees)."""
        self.check_tokenizer(tokenizer)
        return [
            tokenizer.decode(row[mask.astype(bool)].tolist(), skip_special_tokens=skip_special_tokens)
            for row, mask in zip(self.input_ids, self.attention_mask)
        ]

    def export_jsonl(self, path: str | Path, tokenizer: Any) -> Path:
        """One JSON object per window: its text, token count and provenance, for people to read."""

        windows = self.manifest.sampling.windows
        lines = []
        for i, text in enumerate(self.texts(tokenizer)):
            record: dict[str, Any] = {
                "index": i,
                "set_id": self.set_id,
                "num_tokens": int(self.attention_mask[i].sum()),
            }
            if i < len(windows):
                doc, start, length = windows[i]
                record["provenance"] = {"document": doc, "start": start, "length": length}
            record["text"] = text
            lines.append(json.dumps(record, ensure_ascii=False))
        atomic_write_bytes(path, ("\n".join(lines) + "\n").encode("utf-8"))
        return Path(path)
