"""The paired tables moved to :mod:`calibench.report` (tables, sections); this module keeps the old entry point.

:func:`paired_sections` answers in the old shape, ``([(heading, DataFrame)], [PNG paths])``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from calibench.report.sections import PAIRED_HEADING, SOURCE_CI_HEADING  # noqa: F401
from calibench.report.sections import paired_sections as _paired_sections
from calibench.report.tables import GROUP, item_score, paired_tables, quantity, source_matrices  # noqa: F401


def paired_sections(
    directory: str | Path, frame: Any, out: Path | None = None
) -> tuple[list[tuple[str, Any]], list[Path]]:
    """The source-pair and source-CI tables with their headings, and the forest plots (none without ``out``)."""
    sections = _paired_sections(Path(directory), frame, Path(out) if out is not None else None)
    return ([(s.title, t.frame) for s in sections for t in s.tables], [p for s in sections for p in s.plots])
