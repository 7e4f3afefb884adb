"""The versions of the libraries a result was made with, for the records that travel with it."""

from __future__ import annotations

from collections.abc import Iterable


def package_version(name: str) -> str | None:
    """The installed version of distribution ``name`` (its package metadata), or ``None`` when not installed."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


def library_versions(packages: Iterable[str], *, absent: str | None = None) -> dict[str, str]:
    """``{package: version}`` in the order given; one not installed is left out, or recorded as ``absent``."""
    out: dict[str, str] = {}
    for name in packages:
        found = package_version(name)
        if found is not None:
            out[name] = found
        elif absent is not None:
            out[name] = absent
    return out
