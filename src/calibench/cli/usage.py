"""Usage errors (unknown option or command, missing or ill-typed value) as one line.

typer has shipped on two clicks: the separate ``click`` package, and, since
0.2x, its own vendored copy (``typer._click``) whose exceptions are unrelated
classes.  Catching one click's types lets the other's tracebacks through (a
fresh install once did exactly that), so the types are collected from every
click that is importable, and from typer itself, by name.
"""

from __future__ import annotations

import difflib
import importlib
import re
from types import ModuleType
from typing import Any

_MODULES = ("typer._click.exceptions", "click.exceptions", "typer.exceptions", "typer")


def _modules() -> list[ModuleType]:
    found = []
    for name in _MODULES:
        try:
            found.append(importlib.import_module(name))
        except ImportError:
            continue
    return found


def exception_types(*names: str) -> tuple[type[BaseException], ...]:
    """Every class called one of ``names`` in any importable click or in typer."""
    types: list[type[BaseException]] = []
    for module in _modules():
        for name in names:
            cls = getattr(module, name, None)
            if isinstance(cls, type) and issubclass(cls, BaseException) and cls not in types:
                types.append(cls)
    return tuple(types)


NO_ARGS_IS_HELP = exception_types("NoArgsIsHelpError")
USAGE_ERRORS = exception_types("UsageError", "ClickException")
EXIT = exception_types("Exit")
ABORT = exception_types("Abort")

_NO_SUCH_COMMAND = re.compile(r"No such command '(?P<name>[^']*)'")


def _closest(name: str, known: list[str]) -> str | None:
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.5)
    return close[0] if close else None


def usage_line(exc: BaseException) -> str:
    """What is wrong, the closest valid option or command, and where the help is."""
    ctx: Any = getattr(exc, "ctx", None)
    possibilities = getattr(exc, "possibilities", None)
    option = getattr(exc, "option_name", None)
    # format_message() names the parameter; for an unknown option it appends every option, so keep the bare message
    message = exc.message if option and possibilities else exc.format_message()  # type: ignore[attr-defined]
    # typer checks a Literal choice with a validator whose message pydantic-style starts "Value error, "
    message = " ".join(str(message).split()).rstrip(".").replace(": Value error, ", ": ")
    suggestion = None
    if option and possibilities:
        suggestion = _closest(option, sorted(possibilities))
    match = _NO_SUCH_COMMAND.search(message)
    if match and ctx is not None and hasattr(ctx.command, "list_commands"):
        suggestion = _closest(match.group("name"), list(ctx.command.list_commands(ctx)))
    line = message
    if suggestion and "did you mean" not in message.lower():
        line += f" (did you mean '{suggestion}'?)"
    if ctx is not None:
        line += f"; see '{ctx.command_path} --help'"
    return line
