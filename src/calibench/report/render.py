"""One list of report sections, rendered to Markdown and to HTML (PNGs embedded), from the same display values.

A :class:`Section` is a title, an optional intro, tables, plots and notes.
Both renderers format every cell through :func:`display_frame`, so the two
documents show the same numbers: floats to 4 decimals (2 from 10 up),
p-values below 0.001 in scientific notation, counts as whole numbers, the
dense baseline's placeholder n / seq_len as '-', and a table's significance
flag folded into its p-value as a trailing ``*`` with a legend line under
the table.
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from calibench.core import text as core_text
from calibench.core.text import escape_cell

P_COLUMNS = ("p", "p (Holm)", "p (these sets)")
COUNT_COLUMNS = ("sets", "items", "items needed", "sets needed", "sets A", "sets B", "reruns", "docs")
MARK = "*"


@dataclass
class Table:
    """A DataFrame to show; ``mark = (value column, bool column)`` appends ``*`` to the value where the flag holds."""

    frame: Any
    mark: tuple[str, str] | None = None
    legend: str = ""


@dataclass
class Section:
    title: str
    intro: str = ""
    tables: list[Any] = field(default_factory=list)  # Table or a bare DataFrame
    plots: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.tables = [t if isinstance(t, Table) else Table(t) for t in self.tables]


def fmt(value: Any, column: str = "") -> str:
    """One cell as text (the rule both documents follow)."""
    if isinstance(value, float):
        if column in P_COLUMNS and 0 < value < 1e-3:
            return f"{value:.1e}"
        if column in COUNT_COLUMNS and value.is_integer():  # a count in a column that NaN or inf made float
            return str(int(value))
        if math.isfinite(value):
            return f"{value:.4f}" if abs(value) < 10 else f"{value:.2f}"
    return str(value)


def display_frame(table: Table) -> Any:
    """The table as strings: formatted cells, '-' for the dense baseline's n and seq_len, marks folded in."""
    df = table.frame.copy()
    if "method" in df.columns:  # the dense baseline has no calibration set: no n, no seq_len
        dense = df["method"] == "dense"
        for column in ("n", "seq_len"):
            if column in df.columns:
                df[column] = df[column].astype(object).where(~dense, "-")
    shown = df.astype(object)
    for column in df.columns:
        shown[column] = [fmt(v, str(column)) for v in df[column]]
    if table.mark is not None:
        value, flag = table.mark
        shown[value] = [f"{text} {MARK}" if bool(f) else text for text, f in zip(shown[value], df[flag])]
        shown = shown.drop(columns=[flag])
    return shown


def markdown_table(table: Table | Any) -> str:
    table = table if isinstance(table, Table) else Table(table)
    if table.frame is None or len(table.frame) == 0:
        return "_no rows_\n"
    shown = display_frame(table)
    return core_text.markdown_table(list(shown.columns), shown.itertuples(index=False), escape_cell)


def _html_table(table: Table) -> str:
    if len(table.frame) == 0:
        return "<p><i>no rows</i></p>"
    return display_frame(table).to_html(index=False, escape=True)


def _image(plot: Path) -> str:
    data = base64.b64encode(plot.read_bytes()).decode()
    return (
        f"<figure><img style='max-width:100%' alt='{html.escape(plot.stem)}' src='data:image/png;base64,{data}'>"
        f"<figcaption>{html.escape(plot.name)}</figcaption></figure>"
    )


STYLE = (
    "body{font-family:sans-serif;max-width:1200px;margin:2em auto}table{border-collapse:collapse;font-size:13px}"
    "td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}th{background:#eee}"
    ".note{background:#fff6d6;padding:6px}.legend{font-size:13px;color:#444}"
)


@dataclass(frozen=True)
class Format:
    """How one document type writes each part; :func:`render` walks the sections once for any of them."""

    head: Callable[[str], str]
    heading: Callable[[str], str]
    paragraph: Callable[[str], str]
    note: Callable[[str], str]
    table: Callable[[Table], str]
    legend: Callable[[str], str]
    image: Callable[[Path], str]
    tail: str
    joiner: str


MARKDOWN = Format(
    head=lambda title: f"# {title}\n\n",
    heading=lambda title: f"## {title}\n\n",
    paragraph=lambda text: f"{text}\n\n",
    note=lambda text: f"> **Note.** {text}\n\n",
    table=lambda table: markdown_table(table) + "\n",
    legend=lambda text: f"{text}\n\n",
    image=lambda plot: f"![{plot.stem}]({plot.name})\n\n",
    tail="",
    joiner="",
)
HTML = Format(
    head=lambda title: (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"\n<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>"
    ),
    heading=lambda title: f"<h2>{html.escape(title)}</h2>",
    paragraph=lambda text: f"<p>{html.escape(text)}</p>",
    note=lambda text: f"<p class='note'><b>Note.</b> {html.escape(text)}</p>",
    table=_html_table,
    legend=lambda text: f"<p class='legend'>{html.escape(text)}</p>",
    image=_image,
    tail="</body></html>",
    joiner="\n",
)


def render(form: Format, title: str, lead: list[str], notes: list[str], sections: list[Section]) -> str:
    """The document: title, lead paragraphs, notes, then each section's heading, intro, notes, tables, plots."""
    parts = [form.head(title), *map(form.paragraph, lead), *map(form.note, notes)]
    for section in sections:
        parts.append(form.heading(section.title))
        if section.intro:
            parts.append(form.paragraph(section.intro))
        parts += map(form.note, section.notes)
        for table in section.tables:
            parts.append(form.table(table))
            if table.legend:
                parts.append(form.legend(table.legend))
        parts += map(form.image, section.plots)
    parts.append(form.tail)
    return form.joiner.join(parts)


def render_markdown(title: str, lead: list[str], notes: list[str], sections: list[Section]) -> str:
    return render(MARKDOWN, title, lead, notes, sections)


def render_html(title: str, lead: list[str], notes: list[str], sections: list[Section]) -> str:
    return render(HTML, title, lead, notes, sections)
