"""Atomic writes: nothing half-written is ever left at the destination."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from calibench.errors import CalibenchError


def check_new_output(dest: str | Path) -> None:
    """Refuse to write over something that exists (an empty directory is fine).

    Called before long work starts, so that a user learns about a taken --out
    in a second rather than after the build.
    """
    dest = Path(dest)
    if dest.exists() and not (dest.is_dir() and not any(dest.iterdir())):
        raise CalibenchError(f"{dest} already exists: choose another --out or remove it first")


@contextlib.contextmanager
def atomic_dir(dest: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling directory that is renamed to ``dest`` on success.

    On any exception the temporary directory is removed and ``dest`` is left as
    it was, so an interrupted or failed build never leaves a partial artifact.
    """
    dest = Path(dest)
    if not overwrite:
        check_new_output(dest)
        if dest.is_dir():
            dest.rmdir()  # empty, by the check above
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.tmp-", dir=dest.parent))
    try:
        yield tmp
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def atomic_write_bytes(dest: str | Path, data: bytes) -> None:
    """Write a file through a temporary name and rename it into place."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.tmp-", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
