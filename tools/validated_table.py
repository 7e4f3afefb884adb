"""Write ``src/calibench/predict/validated.json``: the signal validations ``calibench recommend`` shows on its card.

When ``recommend`` runs without ``--study``, its card quotes how well the
ranking signal predicted the full result on a grid that was measured (see
:func:`calibench.predict.recommend.known_validation`).  Those numbers come
from the committed study reports listed in :data:`GRIDS`: each report's
"Which signals predict" table (written by ``calibench study report``, see
:mod:`calibench.predict.report`), one row per model x method x outcome x
signal.  Per method of the grid's spec and per listed signal this takes

* ``spearman`` and ``ci``: the all-cells Spearman and its bootstrap 95% CI;
* ``held_out``: the mean held-out Spearman over folds, oriented by the sign;
* ``sign``: the sign of the all-cells Spearman (as ``recommend --study`` sets it);
* ``cells``, ``outcome``, and ``study``: a description of the grid made from its spec,

rounded to :data:`DIGITS` decimals.  The committed reports keep the table,
not the per-cell signal values behind it, so the numbers are read from the
table (4 decimals) rather than recomputed from cells; to refresh them from a
new run, ``calibench study report DIR`` and point the grid's ``report`` at
``DIR/report/report.md``.

Usage::

    python tools/validated_table.py            # rewrite the file from the committed reports
    python tools/validated_table.py --check    # exit 1 when the file is not what the reports give
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "src" / "calibench" / "predict" / "validated.json"
DIGITS = 3


@dataclass(frozen=True)
class Grid:
    spec: str  # the study spec, relative to the repository root
    report: str  # the report.md `calibench study report` wrote for it, relative to the root
    date: str  # when the grid ran (its report's README says)
    objective: str  # a perplexity task ("ppl:wiki") or "average acc"
    signals: tuple[str, ...]  # the signals to record, in this order


GRIDS = (
    Grid(
        spec="examples/choice-study.yaml",
        report="docs/choice-study-report/report.md",
        date="2026-12-02",
        objective="ppl:wiki",
        # the signals the report's README compares: the ones with a direction known without fitting, and the
        # learned one that did best on GPTQ
        signals=("reconstruction.token", "coverage", "stats.eval_js", "reconstruction", "outliers.kurtosis"),
    ),
)

_PIPE = re.compile(r"(?<!\\)\|")  # a cell boundary (a cell's own "|" is written "\|")


def read_table(markdown: str, heading: str) -> list[dict[str, str]]:
    """The rows of the table under ``## heading`` as ``{column: text}`` (cells unescaped)."""
    lines = markdown.splitlines()
    try:
        start = lines.index(f"## {heading}")
    except ValueError:
        raise ValueError(f"no section '## {heading[:60]}...' in the report") from None
    table = []
    for line in lines[start + 1 :]:
        if line.startswith("## "):
            break
        if line.startswith("|"):
            table.append([cell.strip().replace("\\|", "|") for cell in _PIPE.split(line)[1:-1]])
        elif table:
            break
    if len(table) < 2:
        raise ValueError(f"the section '## {heading[:60]}...' has no table")
    header, rows = table[0], table[2:]  # table[1] is the |---| rule
    return [dict(zip(header, row)) for row in rows]


def study_text(grid: Grid, spec: Any) -> str:
    """What the card says the numbers were measured on, from the spec."""
    sets = {source.sets for source in spec.sources}
    if len(spec.n) != 1 or len(spec.seq_len) != 1 or len(sets) != 1:
        raise ValueError(f"{grid.spec}: one n, one seq_len and one number of sets per source are described")
    measured = (
        f"{grid.objective} on {spec.eval.ppl_max_windows} windows of {spec.eval.ppl_seq_len}"
        if grid.objective.startswith("ppl:")
        else f"{', '.join(spec.eval.tasks)} at limit {spec.eval.limit}"
    )
    return (
        f"{grid.spec} on {', '.join(spec.models)} ({len(spec.sources)} sources x {sets.pop()} sets of "
        f"{spec.n[0]} x {spec.seq_len[0]} tokens, {measured}), {grid.date}"
    )


def entries(grid: Grid, rows: list[dict[str, str]], spec: Any) -> dict[str, dict[str, Any]]:
    """``{model: {method: {params, objective, signals}}}`` for one grid, from its report's signal table rows."""
    from calibench.predict.report import AVERAGE_ACC, outcome_name

    outcome = AVERAGE_ACC if grid.objective == "average acc" else outcome_name(grid.objective)
    study = study_text(grid, spec)
    found = {(r["model"], r["method"], r["outcome"], r["signal"]): r for r in rows}
    out: dict[str, dict[str, Any]] = {}
    for model in spec.models:
        for method in spec.methods:
            signals = {}
            for signal in grid.signals:
                row = found.get((model, method.display, outcome, signal))
                if row is None:
                    raise ValueError(f"{grid.report}: no row for {model}, {method.display}, {outcome}, {signal}")
                rho = float(row["spearman (all cells)"])
                signals[signal] = {
                    "spearman": round(rho, DIGITS),
                    "ci": [round(float(row["CI low"]), DIGITS), round(float(row["CI high"]), DIGITS)],
                    "held_out": round(float(row["held-out (oriented)"]), DIGITS),
                    "sign": -1 if rho < 0 else 1,
                    "outcome": outcome,
                    "cells": int(row["cells"]),
                    "study": study,
                }
            if method.name in out.get(model, {}):
                raise ValueError(f"{grid.spec}: {method.name} twice; the table holds one setting per model x method")
            entry = {"params": dict(method.params), "objective": grid.objective, "signals": signals}
            out.setdefault(model, {})[method.name] = entry
    return out


def build(grids: tuple[Grid, ...] = GRIDS, root: Path = ROOT) -> dict[str, dict[str, Any]]:
    """The whole table, from every grid's committed report."""
    from calibench.predict.report import SIGNALS_HEADING
    from calibench.study.spec import load_spec

    table: dict[str, dict[str, Any]] = {}
    for grid in grids:
        rows = read_table((root / grid.report).read_text(encoding="utf-8"), SIGNALS_HEADING)
        for model, methods in entries(grid, rows, load_spec(root / grid.spec)).items():
            for method, entry in methods.items():
                if method in table.get(model, {}):
                    raise ValueError(f"{grid.spec}: {model} x {method} is measured by an earlier grid too")
                table.setdefault(model, {})[method] = entry
    return table


def text(table: dict[str, dict[str, Any]]) -> str:
    return json.dumps(table, indent=2) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare with the file instead of writing it")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    wanted = text(build())
    if args.check:
        current = args.out.read_text(encoding="utf-8") if args.out.exists() else ""
        if current != wanted:
            print(f"{args.out} is not what the committed reports give: run python tools/validated_table.py")
            return 1
        print(f"{args.out} is up to date")
        return 0
    args.out.write_text(wanted, encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
