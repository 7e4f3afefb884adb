"""``write_report``: a study directory in, ``<dir>/report`` out (report.md/.html, results and items parquet, PNGs).

The assembly only: the frame comes from :mod:`.frame`, the notes from
:mod:`.notes`, the sections from the providers of :mod:`.sections`, and
:mod:`.render` turns the one list of sections into both documents.  Every
file is written through a temporary name and renamed, so an interrupted
report leaves the previous one (or nothing), never half a file.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path

from calibench.core.errors import CalibenchError
from calibench.core.fsutil import atomic_write_bytes
from calibench.report.frame import items_frame, load_frame, load_samples
from calibench.report.notes import report_notes
from calibench.report.render import render_html, render_markdown
from calibench.report.sections import RESOLVED_HEADING, build_sections, resolved_lines

REPORT_DIR = "report"


@dataclass
class Report:
    markdown: Path
    html: Path
    csv: Path
    parquet: Path
    plots: list[Path]
    resolved: list[str]  # one line per resolved source pair (or why none is), for the console


def write_report(directory: str | Path) -> Report:
    """Compute the tables, draw the plots and write every export under ``<dir>/report``."""
    directory = Path(directory)
    everything, failures, meta = load_frame(directory)
    frame = everything[everything.perturbation == ""]  # the grid itself; noise-floor reruns only feed their table
    if frame.empty:
        raise CalibenchError(f"{directory} holds no finished cells yet: run the study first")
    out = directory / REPORT_DIR
    out.mkdir(exist_ok=True)
    atomic_write_bytes(out / "results.csv", everything.to_csv(index=False).encode("utf-8"))
    parquet = io.BytesIO()
    everything.to_parquet(parquet, index=False)
    atomic_write_bytes(out / "results.parquet", parquet.getvalue())
    items = io.BytesIO()
    items_frame(everything, load_samples(directory)).to_parquet(items, index=False)
    atomic_write_bytes(out / "items.parquet", items.getvalue())  # per item: every paired statistic recomputable

    sections = build_sections(directory, frame, out)
    notes = report_notes(everything, frame, failures)
    spec = meta.get("spec", {})
    title = f"calibench study: {spec.get('name', directory.name)}"
    reruns = everything.key.nunique() - frame.key.nunique()
    lead = [
        f"Cells: {frame.key.nunique()} finished"
        + (f", {len(failures)} failed" if failures else "")
        + (f", plus {reruns} noise-floor rerun(s)" if reruns else "")
        + "."
    ]
    md_path, html_path = out / "report.md", out / "report.html"
    atomic_write_bytes(md_path, render_markdown(title, lead, notes, sections).encode("utf-8"))
    atomic_write_bytes(html_path, render_html(title, lead, notes, sections).encode("utf-8"))
    atomic_write_bytes(out / "spec.json", json.dumps(spec, indent=2, sort_keys=True).encode("utf-8"))
    return Report(
        md_path,
        html_path,
        out / "results.csv",
        out / "results.parquet",
        [p for section in sections for p in section.plots],
        [line for s in sections if s.title == RESOLVED_HEADING for line in resolved_lines(s)],
    )
