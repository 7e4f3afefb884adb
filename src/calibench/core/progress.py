"""Progress display for long steps, on stderr so that stdout stays parseable.

Library calls are quiet unless progress is enabled; the CLI enables it.  On a
terminal the bars are live.  In a pipe or a log, rich draws each bar once, when
it ends; those final frames are held back until the command has succeeded
(:func:`flush_deferred`), so that a command refused after a step (a corpus too
short for the windows asked, found once it is tokenized) prints its one error
line and nothing else.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator
from typing import Any

_enabled = False
_deferred: list[str] = []


def set_enabled(value: bool) -> None:
    global _enabled
    _enabled = value


def enabled() -> bool:
    return _enabled


def flush_deferred() -> None:
    """Write the bars held back in a pipe (the command succeeded)."""
    import sys

    while _deferred:
        sys.stderr.write(_deferred.pop(0))
    sys.stderr.flush()


def note(message: str) -> None:
    """A one-line ``note:`` about the run, shown with the held-back output when the command succeeds."""
    _deferred.append(f"note: {message}\n")


def discard_deferred() -> None:
    """Drop the bars held back (the command failed: its one error line stands alone)."""
    _deferred.clear()


#: in a pipe or a log, a step still running after this many seconds prints a plain line, and again each period
HEARTBEAT_SECONDS = 60.0


class _Task:
    """Handle for one progress bar; ``advance`` is a no-op when progress is off.  In a pipe or a log (the bar is
    held back until the command succeeds) a long step prints ``description: done/total unit, elapsed`` once a
    :data:`HEARTBEAT_SECONDS`, so a run of minutes is never silent; a refusal comes before any long step."""

    def __init__(self, progress: Any | None, task_id: Any | None, heartbeat: bool = False, unit: str = ""):
        import time

        self._progress = progress
        self._task_id = task_id
        self._heartbeat = heartbeat
        self._unit = unit
        self._started = self._beat = time.monotonic()

    def advance(self, amount: float = 1) -> None:
        if self._progress is not None:
            self._progress.advance(self._task_id, amount)
            if self._heartbeat:
                self._maybe_beat(self._progress)

    def _maybe_beat(self, progress: Any) -> None:
        import sys
        import time

        now = time.monotonic()
        if now - self._beat < HEARTBEAT_SECONDS:
            return
        self._beat = now
        bar = next(t for t in progress.tasks if t.id == self._task_id)
        total = f"/{bar.total:.0f}" if bar.total else ""
        unit = f" {self._unit}" if self._unit else ""
        sys.stderr.write(f"{bar.description}: {bar.completed:.0f}{total}{unit}, {now - self._started:.0f}s\n")
        sys.stderr.flush()

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
    console = Console(stderr=True)
    held = None if console.is_terminal else io.StringIO()
    if held is not None:
        console = Console(file=held, width=console.width)
    with Progress(*columns, console=console, transient=False) as progress:
        task_id = progress.add_task(description, total=total)
        handle = _Task(progress, task_id, heartbeat=held is not None, unit=unit)
        try:
            yield handle
        except BaseException:
            progress.live.transient = True  # a failed step's bar is erased from the terminal
            raise
    if held is not None:
        _deferred.append(held.getvalue())
