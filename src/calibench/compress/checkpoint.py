"""The file record of every checkpoint calibench writes, and its verification by every reader.

A checkpoint directory calibench writes (a compressed model, a
vocabulary-pruned one, a restored original) ends with
``calibench-checkpoint.json``: the sha256 and size of every other file in it,
the identity of the tokenizer saved beside the weights (name, vocabulary
hash, size; :mod:`calibench.data.tokenizer`), the config's vocabulary size
and the input embedding's name and shape as written.  It is written last,
inside the same atomic directory as the files it describes.

:func:`verify` (called by :func:`calibench.models.verify_checkpoint` before
any config, tokenizer or weight of a local directory is read) re-hashes the
files and then checks what a hash cannot: the config's vocabulary size
against the record and the embedding's shape (read from the safetensors
header, no weights loaded), the tokenizer's size against the embedding, and
each kind's own record (``CONTENT_CHECKS``: the vocabulary package checks
``vocab.json``'s kept ids, mode and dropped rows).  Every failure is one
:class:`CorruptArtifactError` line.  A directory without the record that
holds none of calibench's own files was written by another tool: it is read
as it is (:func:`verify` returns a note saying so).  One that holds
``calibench.json`` or ``vocab.json`` but no record was damaged, or written
by a calibench without records, and is refused.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from calibench.core.errors import CorruptArtifactError
from calibench.core.fsutil import file_sha256
from calibench.core.registry import Registry

CHECKPOINT_FILE = "calibench-checkpoint.json"
FORMAT = "calibench-checkpoint"
FORMAT_VERSION = 1
#: files only calibench writes: a directory holding one of them and no record was damaged
CALIBENCH_FILES = ("calibench.json", "vocab.json")
# file names no record needs to list (notes a user may add beside a checkpoint)
_IGNORED = ("README.md", ".gitattributes")

#: Per-kind content checks, called as check(directory, record) after the hashes matched (lazy: higher layers).
CONTENT_CHECKS: Registry[Callable[[Path, CheckpointRecord], None]] = Registry("checkpoint kind")


class FileEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sha256: str
    size: int


class EmbeddingEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tensor: str
    shape: list[int]


class CheckpointRecord(BaseModel):
    """What ``calibench-checkpoint.json`` holds."""

    model_config = ConfigDict(extra="forbid")
    format: str = FORMAT
    format_version: int = FORMAT_VERSION
    kind: str
    files: dict[str, FileEntry]
    tokenizer: dict[str, Any] | None = None
    vocab_size: int | None = None
    embedding: EmbeddingEntry | None = None
    # how a compressed checkpoint's calibration ran (batch size, all-experts MoE calibration, onload device);
    # left out of the file when absent, so records written before it read the same
    calibration: dict[str, Any] | None = None


def _listed_files(directory: Path) -> list[Path]:
    return sorted(
        p for p in directory.rglob("*")
        if p.is_file() and p.name != CHECKPOINT_FILE and p.name not in _IGNORED and not p.name.startswith(".")
    )  # fmt: skip


def safetensors_shapes(path: Path) -> dict[str, list[int]]:
    """Tensor name -> shape from a safetensors file's header (no tensor is read)."""
    with path.open("rb") as fh:
        head = fh.read(8)
        if len(head) != 8:
            raise ValueError("shorter than a safetensors header")
        (size,) = struct.unpack("<Q", head)
        if size > path.stat().st_size - 8 or size > 100_000_000:
            raise ValueError(f"header size {size} exceeds the file")
        header = json.loads(fh.read(size))
    tensors = {k: v for k, v in header.items() if k != "__metadata__"}
    end = max((int(v["data_offsets"][1]) for v in tensors.values()), default=0)
    if 8 + size + end != path.stat().st_size:
        raise ValueError(f"its header describes {8 + size + end} bytes, the file has {path.stat().st_size}")
    return {k: list(v["shape"]) for k, v in tensors.items()}


def _weight_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.glob("*.safetensors") if not p.name.startswith("vocab-"))


def _embedding(directory: Path) -> EmbeddingEntry | None:
    """The input embedding as written: the first 2-D tensor whose name has ``embed`` in it."""
    found: list[tuple[str, list[int]]] = []
    for file in _weight_files(directory):
        try:
            shapes = safetensors_shapes(file)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise CorruptArtifactError(f"{file} is not a readable safetensors file ({exc})") from None
        found += [(name, shape) for name, shape in shapes.items() if "embed" in name and len(shape) == 2]
    if not found:
        return None
    name, shape = min(found)
    return EmbeddingEntry(tensor=name, shape=shape)


def config_vocab_size(directory: Path) -> int | None:
    """``vocab_size`` of the (text) config in ``config.json``; None when it has none."""
    data = json.loads((directory / "config.json").read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError("config.json is not a JSON object")
    text = data["text_config"] if isinstance(data.get("text_config"), dict) else data
    value = text.get("vocab_size")
    return value if isinstance(value, int) else None


def write_record(
    directory: str | Path, kind: str, tokenizer: Any | None = None, calibration: dict[str, Any] | None = None
) -> CheckpointRecord:
    """Hash every file of a just-written checkpoint and write the record (call it last, inside the atomic dir)."""
    from calibench.data.tokenizer import identify

    directory = Path(directory)
    files = {
        p.relative_to(directory).as_posix(): FileEntry(sha256=file_sha256(p), size=p.stat().st_size)
        for p in _listed_files(directory)
    }
    record = CheckpointRecord(
        kind=kind,
        files=files,
        tokenizer=identify(tokenizer).to_dict() if tokenizer is not None else None,
        vocab_size=config_vocab_size(directory) if (directory / "config.json").is_file() else None,
        embedding=_embedding(directory),
        calibration=calibration,
    )
    body = record.model_dump(mode="json", exclude={"calibration"} if calibration is None else set())
    text = json.dumps(body, indent=1, sort_keys=True) + "\n"
    (directory / CHECKPOINT_FILE).write_text(text, encoding="utf-8")
    return record


def read_record(directory: Path) -> CheckpointRecord:
    path = directory / CHECKPOINT_FILE
    try:
        record = CheckpointRecord.model_validate_json(path.read_text(encoding="utf-8"))
    except (ValidationError, ValueError, OSError) as exc:
        first = str(exc).splitlines()[0]
        raise CorruptArtifactError(
            f"{path} is corrupt ({first}): the checkpoint was edited after it was written; write it again"
        ) from None
    if record.format != FORMAT or record.format_version > FORMAT_VERSION:
        raise CorruptArtifactError(
            f"{path} is format {record.format} {record.format_version}, which this calibench does not read: "
            "upgrade calibench or write the checkpoint again"
        )
    return record


def verify(directory: str | Path) -> str | None:
    """Refuse a damaged calibench checkpoint in one line; a note (not an error) for another tool's checkpoint.

    Returns None for a verified checkpoint, the note for a directory with no record.
    """
    directory = Path(directory)
    if not (directory / CHECKPOINT_FILE).is_file():
        ours = [name for name in CALIBENCH_FILES if (directory / name).is_file()]
        if ours:
            raise CorruptArtifactError(
                f"{directory} has {ours[0]} but no {CHECKPOINT_FILE} (the file record of every checkpoint "
                "calibench writes): it was damaged or written by an older calibench; write it again"
            )
        return f"{directory} was not written by calibench (no {CHECKPOINT_FILE}): read as it is, unverified"
    record = read_record(directory)
    _check_files(directory, record)
    _check_content(directory, record)
    if record.kind in CONTENT_CHECKS:
        CONTENT_CHECKS.get(record.kind)(directory, record)
    return None


def _check_files(directory: Path, record: CheckpointRecord) -> None:
    for name, entry in sorted(record.files.items()):
        path = directory / name
        if not path.is_file():
            raise CorruptArtifactError(
                f"{directory} is missing {name}, which its {CHECKPOINT_FILE} lists: the checkpoint is incomplete; "
                "write it again"
            )
        size = path.stat().st_size
        if size != entry.size or file_sha256(path) != entry.sha256:
            what = f"{size} bytes, recorded {entry.size}" if size != entry.size else "sha256 differs"
            raise CorruptArtifactError(
                f"{path} does not match the checkpoint's record ({what}): the file was edited or replaced after "
                "it was written; write the checkpoint again"
            )
    extra = [p.relative_to(directory).as_posix() for p in _listed_files(directory)]
    extra = [name for name in extra if name not in record.files]
    if extra:
        raise CorruptArtifactError(
            f"{directory} holds {extra[0]}, which its {CHECKPOINT_FILE} does not list: a file was added after the "
            "checkpoint was written; remove it or write the checkpoint again"
        )


def _check_content(directory: Path, record: CheckpointRecord) -> None:
    """What the hashes cannot vouch for: the record against the config, the weights and the tokenizer."""
    where = f"{directory}/{CHECKPOINT_FILE}"
    if (directory / "config.json").is_file():
        try:
            vocab = config_vocab_size(directory)
        except (ValueError, OSError, KeyError) as exc:
            raise CorruptArtifactError(f"{directory}/config.json is not readable ({exc}): write it again") from None
        if vocab != record.vocab_size:
            raise CorruptArtifactError(
                f"{directory}/config.json has vocab_size {vocab} but {where} records {record.vocab_size}: "
                "write the checkpoint again"
            )
    embedding = _embedding(directory)
    if embedding != record.embedding:
        got = f"{embedding.tensor} {embedding.shape}" if embedding else "none"
        want = f"{record.embedding.tensor} {record.embedding.shape}" if record.embedding else "none"
        raise CorruptArtifactError(
            f"{directory}: the weights' input embedding is {got} but {where} records {want}: write the checkpoint again"
        )
    if embedding is not None and record.vocab_size is not None and embedding.shape[0] != record.vocab_size:
        raise CorruptArtifactError(
            f"{directory}: the input embedding has {embedding.shape[0]} rows but the config's vocab_size is "
            f"{record.vocab_size}: the checkpoint is inconsistent; write it again"
        )
    if (directory / "calibench.json").is_file():
        try:
            body = json.loads((directory / "calibench.json").read_text(encoding="utf-8"))
        except (ValueError, OSError) as exc:
            raise CorruptArtifactError(f"{directory}/calibench.json is not JSON ({exc}): write it again") from None
        if not isinstance(body, dict):
            raise CorruptArtifactError(f"{directory}/calibench.json is not a JSON object: write it again")
    tokenizer = record.tokenizer
    if tokenizer is not None:
        size = tokenizer.get("vocab_size")
        if not isinstance(size, int) or not isinstance(tokenizer.get("vocab_sha256"), str) or size < 1:
            raise CorruptArtifactError(f"{where} has no valid tokenizer identity: write the checkpoint again")
        rows = embedding.shape[0] if embedding is not None and record.kind != "vocab-pruned" else None
        if rows is not None and size > rows:
            raise CorruptArtifactError(
                f"{directory}: its tokenizer has {size} tokens but the embedding only {rows} rows: the tokenizer "
                "belongs to another model; write the checkpoint again"
            )


def tokenizer_identity(directory: str | Path) -> dict[str, Any] | None:
    """The tokenizer identity a verified checkpoint records (None when it saved no tokenizer or has no record)."""
    path = Path(directory) / CHECKPOINT_FILE
    if not path.is_file():
        return None
    return read_record(Path(directory)).tokenizer


CONTENT_CHECKS.register_lazy("vocab-pruned", "calibench.vocab.checkpoint:check_content")
