"""The source registry: adding a source is one ``register_source`` call.

Names map to factories (not instances) so that registering a hub source costs
nothing until it is used.  A spec that is not a registered name but a path to
a .txt/.jsonl/.parquet file becomes a local-file source; in-memory content (a
``datasets.Dataset``, a list of texts, ...) becomes a memory source.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from calibench.core.errors import CalibenchError, UnknownNameError
from calibench.core.registry import Registry
from calibench.data.sources.base import Source, TextSource
from calibench.data.sources.local import LOCAL_SUFFIXES, LocalFileSource


@dataclass(frozen=True)
class SourceEntry:
    """A registered source: how to make it, and its one-line description for listings."""

    factory: Callable[[], Source]
    description: str = ""


SOURCES: Registry[SourceEntry] = Registry("source")


def register_source(name: str, factory: Callable[[], Source], description: str = "") -> None:
    """Make ``name`` usable everywhere a source is named (API, CLI, study specs)."""
    SOURCES.register(name, SourceEntry(factory, description))


def list_sources() -> dict[str, str]:
    """Registered names and their one-line descriptions."""
    return {name: entry.description for name, entry in SOURCES.items()}


def get_source(spec: Any, text_field: str = "text") -> Source:
    """Resolve a registered name, a local file path or in-memory content (:mod:`.memory`) to a Source."""
    if isinstance(spec, Source):
        return spec
    if not isinstance(spec, (str, os.PathLike)):
        from calibench.data.sources.memory import memory_source

        return memory_source(spec, text_field=text_field)
    if isinstance(spec, str) and spec in SOURCES:
        return SOURCES.get(spec).factory()
    path = Path(spec)
    if path.suffix.lower() in LOCAL_SUFFIXES or path.exists():
        return LocalFileSource(path, text_field=text_field)
    raise UnknownNameError(f"{SOURCES.unknown_message(spec)}; or give a .txt/.jsonl/.parquet file")


def get_text_source(spec: Any, text_field: str = "text") -> TextSource:
    """:func:`get_source` for callers that read documents: a source that draws token ids directly is refused."""
    source = get_source(spec, text_field)
    if not isinstance(source, TextSource):
        raise CalibenchError(f"source '{source.name}' has no documents (it draws token windows): pick a text source")
    return source
