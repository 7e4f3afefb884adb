"""Calibration sources: hub corpora, offline domains, local files, in-memory data, random vocabulary.

Importing this package registers the built-in sources; third-party code adds
its own with :func:`register_source`.
"""

from __future__ import annotations

import functools

from calibench.data.sources.base import CONCAT, DOCUMENT, RANDOM, Documents, ListDocuments, Sampled, Source, TextSource
from calibench.data.sources.hub import HUB_CORPORA, HubSource
from calibench.data.sources.local import LocalFileSource
from calibench.data.sources.memory import MEMORY_KINDS, MemoryChatSource, MemoryKind, MemorySource, memory_source
from calibench.data.sources.multilingual import MANPAGE_SETS, ManPageSource, source_name
from calibench.data.sources.offline import OFFLINE_DOMAINS, OfflineSource
from calibench.data.sources.random_vocab import RandomPunctSource, RandomVocabSource
from calibench.data.sources.registry import SOURCES, get_source, get_text_source, list_sources, register_source

for _corpus in HUB_CORPORA:
    register_source(_corpus.name, functools.partial(HubSource, _corpus), f"[hub] {_corpus.description}")
for _domain in OFFLINE_DOMAINS:
    register_source(_domain.name, functools.partial(OfflineSource, _domain), f"[offline] {_domain.description}")
for _set in MANPAGE_SETS:
    register_source(
        source_name(_set.language),
        functools.partial(ManPageSource, _set.language),
        f"[manpages] {_set.name} manual pages ({_set.package.name}; asset manpages-l10n)",
    )
register_source("random-vocab", RandomVocabSource, f"[baseline] {RandomVocabSource.description}")
register_source("random-punct", RandomPunctSource, f"[baseline] {RandomPunctSource.description}")

__all__ = [
    "CONCAT",
    "DOCUMENT",
    "RANDOM",
    "SOURCES",
    "Documents",
    "ListDocuments",
    "LocalFileSource",
    "MEMORY_KINDS",
    "MemoryChatSource",
    "MemoryKind",
    "MemorySource",
    "Sampled",
    "Source",
    "TextSource",
    "get_source",
    "get_text_source",
    "list_sources",
    "memory_source",
    "register_source",
]
