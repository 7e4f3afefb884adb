"""Every committed report that ships its study store regenerates, number for number, from that store.

A report folder under ``docs/`` with a ``study.sqlite`` (the store the study wrote: every cell's configuration,
results and per-item samples) is rebuilt with ``calibench study report`` into a scratch copy; the regenerated
``report.md`` must equal the committed one, and the committed ``items.parquet`` must hold the store's items.
So a report edited by hand, or made by other code than this tree's, fails here.  A report with summarization
judges ships the validation results it was read under (``judge-validity/auc-*.json``, from ``calibench summ
validate``): they go into the test's private cache first, as a reader would copy them into theirs.  The
console's "resolved:" lines quoted in the README and the docs must be lines the committed report's study
resolves.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[2]
STORED = sorted(p.parent for p in (ROOT / "docs").glob("*-report/study.sqlite"))


def _portable(path: Path) -> list[str]:
    """The report's lines, less the one note read from this machine's asset store (a bundled model's
    provenance), which the tests' private CALIBENCH_HOME does not hold."""
    lines = path.read_text(encoding="utf-8").splitlines()
    kept = [ln for ln in lines if not (ln.startswith("> **Note.**") and "before calibench dequantized" in ln)]
    return [ln for ln in kept if ln.strip()]  # the note's blank line goes with it


@pytest.mark.parametrize("folder", STORED, ids=[p.name for p in STORED])
def test_report_regenerates_from_its_store(tmp_path, folder):
    from calibench.report.study import write_report

    study = tmp_path / folder.name
    study.mkdir()
    shutil.copy(folder / "study.sqlite", study / "study.sqlite")
    shipped = sorted((folder / "judge-validity").glob("auc-*.json"))
    if shipped:
        from calibench.summarize.validate import cache_dir

        cache_dir().mkdir(parents=True, exist_ok=True)
        for path in shipped:
            shutil.copy(path, cache_dir() / path.name)
    report = write_report(study)
    assert _portable(report.markdown) == _portable(folder / "report.md")
    fresh = pd.read_parquet(study / "report" / "items.parquet")
    committed = pd.read_parquet(folder / "items.parquet")
    pd.testing.assert_frame_equal(fresh, committed)


def test_quoted_resolved_lines_are_the_demo_reports():
    from calibench.report.frame import load_frame
    from calibench.report.sections import RESOLVED_HEADING, build_sections, resolved_lines

    folder = ROOT / "docs" / "demo-report"
    if not (folder / "study.sqlite").is_file():
        pytest.skip("the demo report ships no store")
    everything, _, _ = load_frame(folder)
    frame = everything[everything.perturbation == ""]
    lines = [
        line for s in build_sections(folder, frame, None) if s.title == RESOLVED_HEADING for line in resolved_lines(s)
    ]
    assert lines
    for doc in (ROOT / "README.md", ROOT / "docs" / "index.md", ROOT / "docs" / "getting-started.md"):
        quoted = [ln.strip() for ln in doc.read_text(encoding="utf-8").splitlines() if ln.startswith("resolved: ")]
        assert quoted, f"{doc.name} quotes no resolved line"
        assert sorted(quoted) == sorted(f"resolved: {ln}" for ln in lines), doc.name
