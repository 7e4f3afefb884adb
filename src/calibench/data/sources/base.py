"""What a calibration source is.

A source turns a request (how many windows, how long, which split, which
sampling mode, a random generator) into token windows plus their provenance.
Text sources share one implementation of the two GPTQ conventions; sources
that are not text (random vocabulary now, self-generated text later) supply
their own ``sample``.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from calibench.core.errors import CalibenchError, CorpusTooShortError, ParameterError
from calibench.core.progress import task
from calibench.data.calibset import SourceRecord
from calibench.data.sampling import max_disjoint_windows, place_disjoint_windows, window_start_in_document
from calibench.data.token_stream import tokenized_stream
from calibench.data.tokenizer import pad_token_id

DOCUMENT = "document"  # a random window inside a document at least as long (the c4 convention)
CONCAT = "concat"  # windows of the concatenated, packed stream (the wikitext convention)
SAMPLE = "sample"  # one document per window from its start, truncated or padded (masked)
RANDOM = "random"

Indices = Sequence[int] | np.ndarray  # document indices: a list, a range or an integer array


@dataclass
class Sampled:
    """Windows of exactly ``length`` tokens each, in row order, with provenance."""

    tokens: np.ndarray  # (count, length) int32
    windows: list[tuple[int, int, int]]  # (document or -1, start, length)
    mask: np.ndarray | None = None  # (count, length) uint8; None: every position is real


class Documents(ABC):
    """A random-access collection of texts that need not all be in memory."""

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def batch(self, indices: Indices) -> list[str]: ...

    @abstractmethod
    def fingerprint(self) -> str:
        """A stable id of the exact text, used to key the token cache."""


class ListDocuments(Documents):
    def __init__(self, texts: Sequence[str]):
        self.texts = list(texts)
        self._fingerprint: str | None = None

    def __len__(self) -> int:
        return len(self.texts)

    def batch(self, indices: Indices) -> list[str]:
        return [self.texts[int(i)] for i in indices]

    def fingerprint(self) -> str:
        if self._fingerprint is None:
            digest = hashlib.sha256()
            for text in self.texts:
                encoded = text.encode("utf-8")
                digest.update(len(encoded).to_bytes(8, "little"))
                digest.update(encoded)
            self._fingerprint = digest.hexdigest()
        return self._fingerprint


class DatasetDocuments(Documents):
    """One text column of an HF ``datasets.Dataset``, fetched lazily by index."""

    def __init__(self, dataset: Any, text_field: str):
        if text_field not in dataset.column_names:
            raise ParameterError(
                "text_field",
                f"'{text_field}' is not a column of the dataset (columns: {', '.join(dataset.column_names)})",
            )
        self.dataset = dataset
        self.text_field = text_field

    def __len__(self) -> int:
        return len(self.dataset)

    def batch(self, indices: Indices) -> list[str]:
        rows = self.dataset.select([int(i) for i in indices])
        return [text or "" for text in rows[self.text_field]]

    def fingerprint(self) -> str:
        return f"{self.dataset._fingerprint}:{self.text_field}"


class Source(ABC):
    """A named supplier of calibration windows."""

    name: str
    kind: str
    description: str = ""
    splits: tuple[str, ...] = ("train",)
    default_split: str = "train"
    heldout_split: str | None = None
    modes: tuple[str, ...] = (DOCUMENT, CONCAT, SAMPLE)
    default_mode: str = DOCUMENT

    def check_split(self, split: str | None) -> str:
        split = split or self.default_split
        if split not in self.splits:
            raise CalibenchError(f"source '{self.name}' has no split '{split}' (splits: {', '.join(self.splits)})")
        return split

    def check_mode(self, mode: str | None) -> str:
        mode = mode or self.default_mode
        if mode not in self.modes:
            raise CalibenchError(
                f"source '{self.name}' does not support sampling mode '{mode}' (modes: {', '.join(self.modes)})"
            )
        return mode

    def spec(self) -> dict[str, Any]:
        """Whatever identifies the source beyond its name (repo, files, paths)."""
        return {}

    def preflight(self) -> None:
        """Refuse at once what cannot work before any tokenizer or model loads (e.g. a hub source offline)."""
        return None

    def record(self, split: str, fingerprint: str = "") -> SourceRecord:
        return SourceRecord(name=self.name, kind=self.kind, split=split, spec=self.spec(), fingerprint=fingerprint)

    @abstractmethod
    def sample(
        self, tokenizer: Any, split: str, count: int, length: int, mode: str, rng: np.random.Generator
    ) -> tuple[Sampled, SourceRecord]:
        """``count`` windows of ``length`` tokens, pairwise disjoint in the source."""


class TextSource(Source):
    """A source backed by documents of text; implements both GPTQ conventions."""

    @abstractmethod
    def documents(self, split: str) -> Documents: ...

    def sample(
        self, tokenizer: Any, split: str, count: int, length: int, mode: str, rng: np.random.Generator
    ) -> tuple[Sampled, SourceRecord]:
        docs = self.documents(split)
        if len(docs) == 0:
            raise CorpusTooShortError(f"source '{self.name}' split '{split}' has no documents")
        record = self.record(split, docs.fingerprint())
        if mode == CONCAT:
            return self._sample_concat(docs, tokenizer, count, length, rng), record
        if mode == SAMPLE:
            return self._sample_per_document(docs, tokenizer, count, length, rng), record
        return self._sample_documents(docs, tokenizer, count, length, rng), record

    def _sample_concat(
        self, docs: Documents, tokenizer: Any, count: int, length: int, rng: np.random.Generator
    ) -> Sampled:

        stream = tokenized_stream(docs, tokenizer, label=self.name)
        possible = max_disjoint_windows(len(stream), length)
        if possible < count:
            raise CorpusTooShortError(
                f"source '{self.name}' has {len(stream):,} tokens: room for {possible} disjoint windows of "
                f"{length} tokens, but {count} were asked for; lower --n, --seq-len or --sets"
            )
        starts = place_disjoint_windows(len(stream), count, length, rng)
        tokens = np.stack([stream[s : s + length] for s in starts]).astype(np.int32)
        return Sampled(tokens, [(-1, int(s), length) for s in starts])

    def _sample_documents(
        self, docs: Documents, tokenizer: Any, count: int, length: int, rng: np.random.Generator
    ) -> Sampled:

        order = rng.permutation(len(docs))
        rows: list[np.ndarray] = []
        windows: list[tuple[int, int, int]] = []
        with task(f"sampling {self.name} documents", total=count, unit="windows") as bar:
            for doc_index, ids in self._encoded(docs, order, tokenizer):
                if len(ids) < length:
                    continue
                start = window_start_in_document(len(ids), length, rng)
                rows.append(np.asarray(ids[start : start + length], dtype=np.int32))
                windows.append((doc_index, start, length))
                bar.advance()
                if len(rows) == count:
                    return Sampled(np.stack(rows), windows)
        raise CorpusTooShortError(
            f"source '{self.name}' has only {len(rows)} documents with at least {length} tokens, but {count} "
            "windows were asked for; lower --n, --seq-len or --sets, or use --mode concat"
        )

    def _sample_per_document(
        self, docs: Documents, tokenizer: Any, count: int, length: int, rng: np.random.Generator
    ) -> Sampled:
        """One document per window: its first ``length`` tokens, right-padded and masked when shorter.

        This is how chat and SFT data are usually calibrated on (a conversation
        is a unit; packing would glue unrelated turns together).  Padding never
        reaches the model: :meth:`CalibrationSet.to_hf_dataset` hands each row
        over at its own length.
        """

        pad = pad_token_id(tokenizer)
        order = rng.permutation(len(docs))
        tokens = np.full((count, length), pad, dtype=np.int32)
        mask = np.zeros((count, length), dtype=np.uint8)
        windows: list[tuple[int, int, int]] = []
        with task(f"sampling {self.name} documents", total=count, unit="windows") as bar:
            for doc_index, ids in self._encoded(docs, order, tokenizer):
                if not ids:
                    continue
                kept = ids[:length]
                row = len(windows)
                tokens[row, : len(kept)] = kept
                mask[row, : len(kept)] = 1
                windows.append((doc_index, 0, len(kept)))
                bar.advance()
                if len(windows) == count:
                    return Sampled(tokens, windows, mask)
        raise CorpusTooShortError(
            f"source '{self.name}' has only {len(windows)} non-empty documents, but {count} windows were asked "
            "for; lower --n or --sets"
        )

    def _encoded(
        self, docs: Documents, order: np.ndarray, tokenizer: Any, chunk: int = 64
    ) -> Iterator[tuple[int, list[int]]]:
        """``(document index, token ids)`` in ``order`` (a permutation), encoded ``chunk`` documents at a time."""
        for begin in range(0, len(order), chunk):
            indices = order[begin : begin + chunk]
            for doc_index, ids in zip(indices, self.encode(docs, indices, tokenizer)):
                yield int(doc_index), ids

    def encode(self, docs: Documents, indices: Indices, tokenizer: Any) -> list[list[int]]:
        """Token ids of some documents (no special tokens added: BOS is the builder's choice)."""
        return tokenizer(docs.batch(indices), add_special_tokens=False)["input_ids"]
