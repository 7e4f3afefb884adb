"""In-memory content as a calibration source (the Python API): texts, conversations or a ``datasets`` dataset.

llm-compressor users hold their calibration data as a ``datasets.Dataset``;
here it (or an ``IterableDataset``, a list or iterable of strings, a list of
conversations) is a source like any file: the same sampling conventions, the
same determinism (a seed gives the same windows as the same texts written to a
.jsonl file), and provenance that names the content by its fingerprint, the
sha256 of the texts in order (``memory:<first 12 hex digits>``).

What a Python object is is decided by :data:`MEMORY_KINDS`, an ordered
registry (first match wins); third-party code adds a kind with one
``MEMORY_KINDS.register`` call.  Rows with a ``text`` column (or
``text_field``) are texts; rows with a ``messages`` column, or lists of
``{"role", "content"}`` dicts, are conversations rendered with the model's
chat template (:mod:`calibench.data.chat`).  Iterables without a length (an
``IterableDataset``, a generator) are read up to ``stream_docs`` items, in
order, and the manifest says how many were read and whether more were left.
"""

from __future__ import annotations

import itertools
import json
import sys
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from calibench.core.errors import ParameterError
from calibench.core.registry import Registry
from calibench.data.calibset import SourceRecord
from calibench.data.sources.base import CONCAT, Documents, ListDocuments, Sampled, TextSource
from calibench.data.sources.conversations import ConversationSource

MEMORY_PREFIX = "memory:"
STREAM_DOCS = 10000  # items read from an iterable without a length (the hub streaming default too)
MESSAGES = "messages"


@dataclass
class MemoryContent:
    """What an in-memory object holds: texts or conversations, and how they were read from it."""

    texts: list[str] | None = None
    conversations: list[list[dict[str, str]]] | None = None
    origin: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class MemoryKind:
    """One kind of in-memory object: how to recognise it and how to read it."""

    matches: Callable[[Any], bool]
    read: Callable[[Any, str, int], MemoryContent]  # (object, text_field, stream_docs) -> content


MEMORY_KINDS: Registry[MemoryKind] = Registry("in-memory data kind", ordered=True)


def _is_instance(obj: Any, module: str, name: str) -> bool:
    loaded = sys.modules.get(module)  # never import datasets just to ask
    cls = getattr(loaded, name, None) if loaded is not None else None
    return isinstance(cls, type) and isinstance(obj, cls)


def _take(items: Iterable[Any], stream_docs: int) -> tuple[list[Any], dict[str, Any]]:
    """The first ``stream_docs`` items of an iterable, and a record of the cap and whether it was reached."""
    iterator = iter(items)
    taken = list(itertools.islice(iterator, stream_docs))
    more = len(taken) == stream_docs and next(iterator, None) is not None
    if more:
        warnings.warn(
            f"read the first {stream_docs} items of the in-memory data and left the rest: pass stream_docs= to "
            "read more (the manifest records the cap)",
            stacklevel=2,
        )
    return taken, {"read_first": stream_docs, "truncated": more}


def _text(value: Any, where: str, index: int) -> str:
    if not isinstance(value, str):
        raise ParameterError("source", f"{where} {index} is {type(value).__name__}, not a string")
    return value


def _from_rows(rows: Sequence[Mapping[str, Any]], columns: Sequence[str], text_field: str, what: str) -> MemoryContent:
    """Rows of columns: the ``text_field`` column as texts, else a ``messages`` column as conversations."""
    from calibench.data.chat import ChatFormat, conversations_from_rows

    if text_field in columns:
        texts = [_text(row[text_field], f"{what} row", i) for i, row in enumerate(rows) if row[text_field] is not None]
        return MemoryContent(texts=texts, origin={"text_field": text_field})
    if MESSAGES in columns:
        convs = conversations_from_rows(rows, ChatFormat(messages_field=MESSAGES))
        return MemoryContent(conversations=convs, origin={"messages_field": MESSAGES})
    raise ParameterError(
        "text_field",
        f"'{text_field}' is not a column of the {what} (columns: {', '.join(columns) or 'none'}): "
        f"pass text_field= with the text column, or give a '{MESSAGES}' column of conversations",
    )


def _read_dataset(obj: Any, text_field: str, stream_docs: int) -> MemoryContent:
    rows = obj.select_columns([c for c in (text_field, MESSAGES) if c in obj.column_names])
    content = _from_rows(list(rows), list(obj.column_names), text_field, "dataset")
    content.origin = {"object": "datasets.Dataset", "rows": len(obj), **content.origin}
    return content


def _read_iterable_dataset(obj: Any, text_field: str, stream_docs: int) -> MemoryContent:
    rows, cap = _take(obj, stream_docs)
    columns = list(obj.column_names or (rows[0].keys() if rows else []))
    content = _from_rows(rows, columns, text_field, "iterable dataset")
    content.origin = {"object": "datasets.IterableDataset", **cap, **content.origin}
    return content


def _read_items(obj: Any, text_field: str, stream_docs: int) -> MemoryContent:
    """A list (all of it) or another iterable (its first ``stream_docs`` items) of texts, conversations or rows."""
    if isinstance(obj, Sequence):
        items, origin = list(obj), {"object": type(obj).__name__}
    else:
        items, cap = _take(obj, stream_docs)
        origin = {"object": "iterable", **cap}
    if not items:
        raise ParameterError("source", "the in-memory data has no items")
    first = items[0]
    if isinstance(first, str):
        return MemoryContent(texts=[_text(t, "item", i) for i, t in enumerate(items)], origin=origin)
    if isinstance(first, Sequence):  # conversations: lists of {"role", "content"}
        from calibench.data.chat import ChatFormat, conversations_from_rows

        convs = conversations_from_rows([{MESSAGES: c} for c in items], ChatFormat(messages_field=MESSAGES))
        content = MemoryContent(conversations=convs)
    elif isinstance(first, Mapping):
        content = _from_rows(items, list(first.keys()), text_field, "list of rows")
    else:
        raise ParameterError(
            "source",
            f"in-memory items are {type(first).__name__}: give strings, conversations (lists of role/content "
            "dicts) or rows with a text or messages column",
        )
    content.origin = {**origin, **content.origin}
    return content


MEMORY_KINDS.register("datasets.Dataset", MemoryKind(lambda o: _is_instance(o, "datasets", "Dataset"), _read_dataset))
MEMORY_KINDS.register(
    "datasets.IterableDataset",
    MemoryKind(lambda o: _is_instance(o, "datasets", "IterableDataset"), _read_iterable_dataset),
)
MEMORY_KINDS.register(
    "texts, conversations or rows",
    MemoryKind(lambda o: isinstance(o, Iterable) and not isinstance(o, (str, bytes, Mapping)), _read_items),
)


def is_in_memory(obj: Any) -> bool:
    """Whether ``obj`` is in-memory content (not a name, path or Source)."""
    return any(kind.matches(obj) for _, kind in MEMORY_KINDS.items())


def memory_source(obj: Any, text_field: str = "text", stream_docs: int = STREAM_DOCS) -> TextSource:
    """The source an in-memory object stands for; one line when it is none of the known kinds."""
    if stream_docs < 1:
        raise ParameterError("stream_docs", f"must be at least 1, got {stream_docs}")
    for _, kind in MEMORY_KINDS.items():
        if kind.matches(obj):
            content = kind.read(obj, text_field, stream_docs)
            if content.conversations is not None:
                return MemoryChatSource(content.conversations, content.origin)
            return MemorySource(content.texts or [], content.origin)
    raise ParameterError(
        "source",
        f"{type(obj).__name__} is not a source: give a name, a file, a datasets.Dataset or IterableDataset, "
        "or a list of texts or conversations",
    )


def _no_documents(origin: dict[str, Any]) -> ParameterError:
    return ParameterError("source", f"the in-memory data ({origin.get('object', 'object')}) has no documents")


class MemorySource(TextSource):
    """Texts held in memory; sampled exactly as the same texts in a file (the concat convention by default)."""

    kind = "memory"
    splits = ("all",)
    default_split = "all"
    default_mode = CONCAT

    def __init__(self, texts: Sequence[str], origin: dict[str, Any] | None = None):
        self.origin = dict(origin or {})
        if not texts:
            raise _no_documents(self.origin)
        self._docs = ListDocuments(texts)
        self.fingerprint = self._docs.fingerprint()
        self.name = MEMORY_PREFIX + self.fingerprint[:12]
        self.description = f"{len(texts)} in-memory texts"

    def spec(self) -> dict[str, Any]:
        return {"content_sha256": self.fingerprint, "documents": len(self._docs), **self.origin}

    def documents(self, split: str) -> Documents:
        return self._docs


class MemoryChatSource(ConversationSource):
    """Conversations held in memory, rendered with the chat template (one conversation per window by default)."""

    kind = "chat"

    def __init__(self, conversations: list[list[dict[str, str]]], origin: dict[str, Any] | None = None):
        from calibench.data.chat import ChatFormat

        origin = dict(origin or {})
        if not conversations:
            raise _no_documents(origin)
        docs = ListDocuments([json.dumps(c, ensure_ascii=False, sort_keys=True) for c in conversations])
        self.fingerprint = docs.fingerprint()
        super().__init__(MEMORY_PREFIX + self.fingerprint[:12], ChatFormat(messages_field=MESSAGES))
        self.name = self.data  # memory:<fingerprint>, as for texts
        self.description = f"{len(conversations)} in-memory conversations"
        self._docs, self._conversations = docs, conversations
        self._origin = {"content_sha256": self.fingerprint, "documents": len(docs), **origin}
        self.splits = ("all",)
        self.default_split = "all"

    def check_split(self, split: str | None) -> str:
        return super(ConversationSource, self).check_split(split)

    def spec(self) -> dict[str, Any]:
        return dict(self._origin)

    def documents(self, split: str) -> Documents:
        assert self._docs is not None
        return self._docs

    def sample(
        self, tokenizer: Any, split: str, count: int, length: int, mode: str, rng: np.random.Generator
    ) -> tuple[Sampled, SourceRecord]:
        from calibench.data.chat import require_chat_template, template_record

        require_chat_template(tokenizer)
        self._origin["chat_template"] = template_record(tokenizer)
        return super().sample(tokenizer, split, count, length, mode, rng)
