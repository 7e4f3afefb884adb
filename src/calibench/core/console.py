"""One place to make rich consoles for the CLI.

Rich falls back to 80 columns when stdout is not a terminal (CI logs, pipes,
``| tee``), which folds wide tables into unreadable columns; use 120 there.
"""

from __future__ import annotations

from rich.console import Console

PIPE_WIDTH = 120


def console(stderr: bool = False) -> Console:
    probe = Console(stderr=stderr)
    return probe if probe.is_terminal else Console(stderr=stderr, width=PIPE_WIDTH)
