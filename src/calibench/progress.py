"""Progress display for long steps, on stderr so that stdout stays parseable.

Library calls are quiet unless progress is enabled; the CLI enables it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

_enabled = False


def set_enabled(value: bool) -> None:
    global _enabled
    _enabled = value


def enabled() -> bool:
    return _enabled


class _Task:
    """Handle for one progress bar; ``advance`` is a no-op when progress is off."""

    def __init__(self, progress: Any | None, task_id: Any | None):
        self._progress = progress
        self._task_id = task_id

    def advance(self, amount: float = 1) -> None:
        if self._progress is not None:
            self._progress.advance(self._task_id, amount)

    def update(self, **fields: Any) -> None:
        if self._progress is not None:
            self._progress.update(self._task_id, **fields)


@contextlib.contextmanager
def task(description: str, total: float | None = None, unit: str = "") -> Iterator[_Task]:
    """A progress bar with counts, rate and ETA for one long step."""
    if not _enabled:
        yield _Task(None, None)
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = [
        SpinnerColumn(),
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn(unit),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    ]
    with Progress(*columns, console=Console(stderr=True), transient=False) as progress:
        task_id = progress.add_task(description, total=total)
        yield _Task(progress, task_id)
