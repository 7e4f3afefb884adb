"""One progress bar over many steps whose inner work has bars of its own.

Signals and recommendations call code that shows progress (activation
capture, NLL scoring, evaluation).  Nested live displays fight over the
terminal, so while the outer bar runs the inner ones are switched off (as
``calibench study run`` does for its cells) and the bar's description says
which step is running.  The bar is :func:`calibench.core.progress.task`'s, so it
is shown only when progress is enabled (the CLI enables it), goes to stderr,
and in a pipe is held back until the command succeeds: a refused command
still prints its one error line and nothing else.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from calibench.core import progress


class _Bar:
    def __init__(self, task: Any, label: str, shown: bool):
        self._task, self._label, self._shown = task, label, shown

    def update(self, description: str) -> None:
        if self._shown:
            self._task.update(description=f"{self._label}: {description}")

    def advance(self, amount: float = 1) -> None:
        self._task.advance(amount)


@contextlib.contextmanager
def outer_bar(label: str, total: float | None) -> Iterator[_Bar]:
    """A bar labelled ``label`` over ``total`` steps, inner progress silenced while it runs."""

    shown = progress.enabled()
    with progress.task(label, total=total) as task:
        progress.set_enabled(False)
        try:
            yield _Bar(task, label, shown)
        finally:
            progress.set_enabled(shown)
