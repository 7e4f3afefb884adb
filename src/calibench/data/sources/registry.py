"""The source registry: adding a source is one ``register_source`` call.

Names map to factories (not instances) so that registering a hub source costs
nothing until it is used.  A spec that is not a registered name but a path to
a .txt/.jsonl/.parquet file becomes a local-file source.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from calibench.core.errors import UnknownNameError, did_you_mean
from calibench.data.sources.base import Source

_REGISTRY: dict[str, Callable[[], Source]] = {}
_DESCRIPTIONS: dict[str, str] = {}


def register_source(name: str, factory: Callable[[], Source], description: str = "") -> None:
    """Make ``name`` usable everywhere a source is named (API, CLI, study specs)."""
    _REGISTRY[name] = factory
    _DESCRIPTIONS[name] = description


def list_sources() -> dict[str, str]:
    """Registered names and their one-line descriptions."""
    return dict(sorted(_DESCRIPTIONS.items()))


def get_source(spec: str | Source, text_field: str = "text") -> Source:
    """Resolve a registered name or a local file path to a Source."""
    if isinstance(spec, Source):
        return spec
    if spec in _REGISTRY:
        return _REGISTRY[spec]()
    from calibench.data.sources.local import LOCAL_SUFFIXES, LocalFileSource

    path = Path(spec)
    if path.suffix.lower() in LOCAL_SUFFIXES or path.exists():
        return LocalFileSource(path, text_field=text_field)
    raise UnknownNameError(
        f"unknown source '{spec}'{did_you_mean(spec, list(_REGISTRY))}; or give a .txt/.jsonl/.parquet file"
    )
