"""Text helpers every layer writes with: an error as one line, and a Markdown table."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any


def one_line(value: BaseException | str, limit: int | None = None, *, typed: bool = False) -> str:
    """``value`` as one line: runs of whitespace (newlines included) become one space.

    An exception without a message reads as its type's name (a string stays as
    it is, empty or not); ``typed`` puts the type's name in front
    (``"ValueError: bad input"``); ``limit`` cuts the result to that many characters.
    """
    text = " ".join(str(value).split())
    if isinstance(value, BaseException):
        name = type(value).__name__
        text = text or name
        if typed:
            text = f"{name}: {text}"
    return text if limit is None else text[:limit]


def markdown_table_lines(
    header: Sequence[Any], rows: Iterable[Sequence[Any]], cell: Callable[[Any], str] = str
) -> list[str]:
    """A Markdown table as lines: the header, the ``|---|`` rule, one line per row; ``cell`` writes each cell."""
    lines = ["| " + " | ".join(cell(c) for c in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return lines


def markdown_table(header: Sequence[Any], rows: Iterable[Sequence[Any]], cell: Callable[[Any], str] = str) -> str:
    """:func:`markdown_table_lines` as text, each line (the last too) ending in a newline."""
    return "\n".join(markdown_table_lines(header, rows, cell)) + "\n"


def escape_cell(value: Any, *, newlines: bool = False) -> str:
    """A cell's text with ``|`` escaped (and, with ``newlines``, line breaks as spaces) so it stays one cell."""
    text = str(value).replace("|", "\\|")
    return text.replace("\n", " ") if newlines else text
