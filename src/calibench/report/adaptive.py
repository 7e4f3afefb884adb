"""The report's adaptive-evaluation section: per comparison, how many items it used, where it stands, and why."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from calibench.report.frame import load_frame
from calibench.report.render import Section

HEADING = "Adaptive evaluation: items used per comparison, and why each stopped"
INTRO = (
    "The study scored items in blocks and tested every comparison of two sources after each block, in a way that "
    "stays valid however often it looks: set-aware where both sources have 2+ sets (the set-aware test at each "
    "planned look, Bonferroni over the looks; scope sources), an items-only betting confidence sequence otherwise "
    "(scope these sets); Holm across each model x method x task at every look. A comparison stopped when decided "
    "(Holm p <= alpha), futile (the set-to-set spread alone, or the items-only projection, says the cap cannot "
    "decide it; or the cap or the task's items ran out), and only the cells of running comparisons scored further "
    "items. CS low/high: an interval valid at every look at once, at the stop; anytime p is valid at any stopping "
    "time. These decisions are the study's; the fixed tables above re-test the items every cell shares."
)
COLUMNS = [
    "model",
    "method",
    "n",
    "seq_len",
    "task",
    "source A",
    "source B",
    "scope",
    "sets",
    "state",
    "items",
    "difference (A-B)",
    "CS low",
    "CS high",
    "anytime p",
    "p (Holm)",
    "reason",
]


def adaptive_frame(meta: dict[str, Any]) -> Any:
    import pandas as pd

    rows = meta.get("adaptive") or []
    return pd.DataFrame(rows, columns=COLUMNS) if rows else pd.DataFrame(columns=COLUMNS)


def sections(directory: Path, frame: Any, out: Path | None) -> list[Section]:
    meta = load_frame(directory)[2]
    table = adaptive_frame(meta)
    if table.empty:
        return []
    plots = []
    if out is not None:
        from calibench.report.plots import plot_adaptive_items

        drawn = plot_adaptive_items(table, Path(out) / "adaptive_items.png")
        plots = [drawn] if drawn is not None else []
    return [Section(HEADING, intro=INTRO, tables=[table], plots=plots)]
