"""predict/validated.json: what tools/validated_table.py computes from the committed study reports."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from calibench.predict.recommend import VALIDATED
from calibench.predict.report import SIGNALS_HEADING, outcome_name
from calibench.report.render import markdown_table

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("calibench_validated_table", ROOT / "tools" / "validated_table.py")
tool = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = tool  # dataclasses look their module up
_spec.loader.exec_module(tool)


def test_the_file_is_what_the_script_computes_from_the_committed_reports(tmp_path):
    table = tool.build()
    assert tool.OUT.read_text(encoding="utf-8") == tool.text(table)
    assert VALIDATED == table  # what recommend loads
    assert tool.main(["--check"]) == 0
    stale = tmp_path / "validated.json"
    stale.write_text(tool.text(table).replace("-0.739", "-0.740"), encoding="utf-8")
    assert tool.main(["--check", "--out", str(stale)]) == 1
    assert tool.main(["--out", str(stale)]) == 0 and stale.read_text() == tool.OUT.read_text()


def test_the_numbers_agree_with_the_grid_readme_table():
    """The README of the choice study quotes the same numbers to 2 decimals (typed there, not generated)."""
    readme = (ROOT / "docs" / "choice-study-report" / "README.md").read_text(encoding="utf-8")
    number = r"([+-]?\d\.\d\d)"
    pattern = re.compile(
        rf"^\| ([\w.]+) \([^)]*\) \| {number} \[{number}, {number}\] \| {number} \| "
        rf"{number} \[{number}, {number}\] \| {number} \|$",
        re.MULTILINE,
    )
    rows = pattern.findall(readme)
    assert len(rows) == 5
    for signal, *values in rows:
        quoted = [float(v) for v in values]
        for method, part in (("gptq", quoted[:4]), ("wanda", quoted[4:])):
            entry = VALIDATED["smollm2-135m"][method]["signals"][signal]
            recorded = [entry["spearman"], *entry["ci"], entry["held_out"]]
            assert recorded == pytest.approx(part, abs=0.0051), (signal, method)


def _report(frame: pd.DataFrame) -> str:
    """A report whose signal section is written by the report's own table renderer."""
    other = pd.DataFrame({"model": ["m"], "x": [1.0]})
    return (
        f"# Study\n\n## Something else\n\n{markdown_table(other)}\n## {SIGNALS_HEADING}\n\n"
        f"{markdown_table(frame)}\n## After\n\n{markdown_table(other)}"
    )


def test_rows_read_back_from_a_rendered_report_give_rounded_entries():
    outcome = outcome_name("ppl:x")
    frame = pd.DataFrame(
        {
            "model": ["m|1", "m|1", "m|1"],
            "method": ["gptq-w4g64", "gptq-w4g64", "gptq-w4g64"],
            "outcome": [outcome, outcome, "average acc"],
            "signal": ["a", "b", "a"],
            "direction": ["lower is better", "learned", "lower is better"],
            "cells": [9, 9, 9],
            "spearman (all cells)": [-0.61234, 0.5, 0.1],
            "CI low": [-0.9, 0.1, -0.2],
            "CI high": [-0.12345, 0.95, 0.3],
            "selection (oriented)": [0.5, 0.4, 0.0],
            "held-out (oriented)": [0.33333, float("nan"), 0.0],
            "chosen in folds": ["1/3", "2/3", "0/3"],
        }
    )
    rows = tool.read_table(_report(frame), SIGNALS_HEADING)
    assert [r["signal"] for r in rows] == ["a", "b", "a"] and rows[0]["model"] == "m|1"
    assert rows[0]["spearman (all cells)"] == "-0.6123" and rows[1]["held-out (oriented)"] == "nan"
    spec = SimpleNamespace(
        models=["m|1"],
        methods=[SimpleNamespace(display="gptq-w4g64", name="gptq", params={"bits": 4, "group_size": 64})],
        sources=[SimpleNamespace(sets=2)] * 3,
        n=[8],
        seq_len=[64],
        eval=SimpleNamespace(ppl_max_windows=4, ppl_seq_len=32, tasks=["ppl:x"], limit=None),
    )
    grid = tool.Grid("spec.yaml", "report.md", "2030-01-01", "ppl:x", ("b", "a"))
    found = tool.entries(grid, rows, spec)
    entry = found["m|1"]["gptq"]
    assert entry["params"] == {"bits": 4, "group_size": 64} and entry["objective"] == "ppl:x"
    assert list(entry["signals"]) == ["b", "a"]
    a = entry["signals"]["a"]
    assert a == {
        "spearman": -0.612,
        "ci": [-0.9, -0.123],
        "held_out": 0.333,
        "sign": -1,
        "outcome": outcome,
        "cells": 9,
        "study": "spec.yaml on m|1 (3 sources x 2 sets of 8 x 64 tokens, ppl:x on 4 windows of 32), 2030-01-01",
    }
    assert entry["signals"]["b"]["sign"] == 1
    assert json.loads(json.dumps(found, allow_nan=True))["m|1"]["gptq"]["signals"]["a"] == a
    with pytest.raises(ValueError, match="no row for m\\|1, gptq-w4g64, ppl:x \\(-log ppl\\), c"):
        tool.entries(tool.Grid("spec.yaml", "report.md", "d", "ppl:x", ("c",)), rows, spec)
    with pytest.raises(ValueError, match="no section"):
        tool.read_table("# Study\n", SIGNALS_HEADING)
