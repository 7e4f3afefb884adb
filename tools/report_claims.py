"""Check the numbers that the documentation quotes from committed study reports (``docs/claims.yaml``).

A page that says "GPTQ's best-to-worst ratio is 1.41" about a report under
``docs/*-report/`` goes stale silently when the report is regenerated.  Each
such number is an entry of ``docs/claims.yaml``::

    - doc: docs/choice-study-report/README.md
      quote: "best-to-worst perplexity ratio across the four\\ntext sources is 1.41"
      report: docs/choice-study-report/report.md
      check: {kind: ratio, table: Perplexity across sets, column: mean, where: {method: gptq-w4g64},
              num: {where: {source: code}}, den: {where: {source: wiki}}}

and this script, for every entry,

* looks for ``quote`` in ``doc`` (whitespace runs, line breaks included,
  match any whitespace run, so a wrapped sentence is quoted as one line);
* recomputes the values with the ``check`` (a kind of :data:`KINDS`, reading
  only the report's own files: its Markdown tables or its ``items.parquet``);
* reads the numbers shown in ``shown`` (a substring of the quote; the whole
  quote by default) and compares them in order with the recomputed values,
  each within half a unit of its last shown decimal (``2.9`` stands for
  2.85 to 2.95) or within the entry's ``tolerance`` (one number for all,
  or a list with one per number, ``null`` for the default: "about 580" is
  ``tolerance: [null, 5]`` beside another number).

Each failing entry prints one line naming the doc, the quote, the recomputed
values and what is wrong; the exit code is 1 when any entry fails, 2 when the
claims file itself is malformed.

Check kinds (nested checks inherit ``table``, ``where`` (merged), ``column``
or ``columns``, and ``file`` from the check around them; a nested check without ``kind`` is
a ``table_cell``, a bare number is itself):

``table_cell``
    ``table`` (a substring of exactly one heading of the report; of several
    tables under it, the first with every column named), ``where`` (column:
    value; one row must match), ``column`` or ``columns`` (a cell holding an
    estimate with its CI, ``0.108 [0.083, 0.140]``, gives its three numbers).
``column``
    the ``column`` of every row matching ``where``, reduced by ``agg``
    (``min``, ``max``, ``mean``, ``sum`` or ``values``, the default).
``count``
    the number of rows of ``table`` matching ``where``.
``ratio``
    ``num`` / ``den``, each a check giving one value.
``range``
    ``[min, max]`` of the values of the checks in ``of``.
``values``
    the values of the checks in ``of``, in order.
``items``
    a statistic recomputed from the report's ``items.parquet`` (``file``,
    relative to the report's folder): the rows matching ``where`` (label
    columns: model, method, source, set_index, perturbation, task; the
    perturbation defaults to ``""``, the grid itself) are grouped by cell
    (``key``); each cell gives ``value``: ``perplexity`` (exp of the
    token-weighted mean window NLL, the report's perplexity) or
    ``mean:FIELD`` (the mean of an item field such as ``metrics.acc``); the
    cells' values are reduced by ``stat``: ``std`` (across cells, ddof 1,
    as the report's "std" column), ``mean``, ``min``, ``max``, ``range``,
    ``count`` or ``values`` (in set order).

Every check takes an optional ``scale`` (the values are multiplied by it:
``100`` for a difference of accuracies quoted in points).  Where-values are
compared with the cell's text (numbers by value); a list matches any of its
members; ``{re: PATTERN}`` searches the text; ``{lt: x}``, ``{le: x}``,
``{gt: x}``, ``{ge: x}`` compare the cell's number.

Usage::

    python tools/report_claims.py                  # check every entry; exit 1 on any failure
    python tools/report_claims.py --show           # also print each entry's recomputed values
    python tools/report_claims.py --claims FILE --root DIR

``tests/docs/test_report_claims.py`` runs it over ``docs/claims.yaml``, so
``make test`` (and CI) fails when a page and its report disagree.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
CLAIMS = ROOT / "docs" / "claims.yaml"
INHERITED = ("table", "where", "column", "columns", "file")


class ClaimError(ValueError):
    """A claims entry or check that cannot be evaluated as written (a spec error, not a stale number)."""


# -- the report's Markdown tables ---------------------------------------------------------------------------------

_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*$")
_CELL_SPLIT = re.compile(r"(?<!\\)\|")
_RULE = re.compile(r"^\|(\s*:?-+:?\s*\|)+\s*$")


@dataclass(frozen=True)
class Table:
    heading: str
    columns: list[str]
    rows: list[dict[str, str]]


def _cells(line: str) -> list[str]:
    inner = line.strip()
    inner = inner[1:] if inner.startswith("|") else inner
    inner = inner[:-1] if inner.endswith("|") and not inner.endswith("\\|") else inner
    return [c.strip().replace("\\|", "|") for c in _CELL_SPLIT.split(inner)]


def parse_tables(text: str) -> list[Table]:
    """Every Markdown table of ``text`` with the heading it sits under (``""`` before the first heading)."""
    tables: list[Table] = []
    heading = ""
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        match = _HEADING.match(lines[i])
        if match:
            heading = match.group(2)
        elif lines[i].lstrip().startswith("|") and i + 1 < len(lines) and _RULE.match(lines[i + 1].strip()):
            columns = _cells(lines[i])
            rows = []
            i += 2
            while i < len(lines) and lines[i].lstrip().startswith("|"):
                values = _cells(lines[i])
                rows.append(dict(zip(columns, values + [""] * (len(columns) - len(values)))))
                i += 1
            tables.append(Table(heading, columns, rows))
            continue
        i += 1
    return tables


_TABLE_CACHE: dict[tuple[str, int, int], list[Table]] = {}


def report_tables(path: Path) -> list[Table]:
    if not path.is_file():
        raise ClaimError(f"report {path} does not exist")
    stat = path.stat()
    key = (str(path), stat.st_mtime_ns, stat.st_size)
    if key not in _TABLE_CACHE:
        _TABLE_CACHE[key] = parse_tables(path.read_text(encoding="utf-8"))
    return _TABLE_CACHE[key]


def find_table(path: Path, heading: Any, needs: list[str] | None = None) -> Table:
    """The table under the one heading containing ``heading``; of several tables there, the first with every
    column in ``needs``."""
    if not isinstance(heading, str) or not heading:
        raise ClaimError("a table check needs `table`: a substring of one heading of the report")
    found = [t for t in report_tables(path) if heading in t.heading]
    headings = sorted({t.heading for t in found})
    if len(headings) != 1:
        what = "no heading" if not headings else f"{len(headings)} headings ({'; '.join(headings)})"
        raise ClaimError(f"{path}: {what} contain {heading!r}: give a substring of exactly one")
    return next((t for t in found if all(c in t.columns for c in needs or [])), found[0])


def number(text: str) -> float:
    """A cell's number: ``1.0e-03 *`` (the Holm mark), ``37%``, ``nan``; a cell without one is a spec error."""
    cleaned = text.strip().rstrip("*").strip().rstrip("%").replace("\u2212", "-").replace(",", "")
    try:
        return float(cleaned)
    except ValueError:
        raise ClaimError(f"cell {text!r} holds no number") from None


_ESTIMATE_CI = re.compile(r"^\s*(\S+)\s*\[\s*(\S+),\s*(\S+)\s*\]\s*$")


def numbers(text: str) -> list[float]:
    """A cell's numbers: an estimate with its CI, ``0.108 [0.083, 0.140]``, gives three; any other cell one."""
    match = _ESTIMATE_CI.match(text)
    return [number(part) for part in match.groups()] if match else [number(text)]


def _matches(cell: str, want: Any) -> bool:
    if isinstance(want, list):
        return any(_matches(cell, w) for w in want)
    if isinstance(want, dict):
        ops: dict[str, Callable[[Any], bool]] = {
            "re": lambda p: re.search(str(p), cell) is not None,
            "lt": lambda x: number(cell) < x,
            "le": lambda x: number(cell) <= x,
            "gt": lambda x: number(cell) > x,
            "ge": lambda x: number(cell) >= x,
        }
        unknown = set(want) - set(ops)
        if unknown:
            raise ClaimError(f"unknown where-operator(s) {sorted(unknown)}: use {sorted(ops)}")
        return all(ops[op](arg) for op, arg in want.items())
    if isinstance(want, bool) or not isinstance(want, int | float):
        return cell == ("" if want is None else str(want))
    try:
        return number(cell) == float(want)
    except ClaimError:
        return False


def select(path: Path, spec: dict[str, Any]) -> tuple[Table, list[dict[str, str]]]:
    named = [*(spec.get("where") or {}), *(spec.get("columns") or []), *([spec["column"]] if "column" in spec else [])]
    table = find_table(path, spec.get("table"), [str(c) for c in named])
    where = spec.get("where") or {}
    missing = [c for c in where if c not in table.columns]
    if missing:
        raise ClaimError(f"table {table.heading[:60]!r} has no column(s) {missing}; it has {table.columns}")
    return table, [row for row in table.rows if all(_matches(row[c], w) for c, w in where.items())]


def _column_names(spec: dict[str, Any], table: Table) -> list[str]:
    names = spec.get("columns") or ([spec["column"]] if spec.get("column") is not None else [])
    if not names:
        raise ClaimError("give `column` or `columns`")
    missing = [c for c in names if c not in table.columns]
    if missing:
        raise ClaimError(f"table {table.heading[:60]!r} has no column(s) {missing}; it has {table.columns}")
    return [str(n) for n in names]


# -- check kinds ---------------------------------------------------------------------------------------------------

KINDS: dict[str, Callable[[Path, dict[str, Any]], list[float]]] = {}


def kind(name: str) -> Callable[[Callable[[Path, dict[str, Any]], list[float]]], Any]:
    def register(fn: Callable[[Path, dict[str, Any]], list[float]]) -> Callable[[Path, dict[str, Any]], list[float]]:
        KINDS[name] = fn
        return fn

    return register


def _child(parent: dict[str, Any], child: Any) -> Any:
    """A nested check with the parent's table, where (merged), column and file as defaults."""
    if isinstance(child, int | float) and not isinstance(child, bool):
        return child
    if not isinstance(child, dict):
        raise ClaimError(f"a nested check must be a mapping or a number, got {child!r}")
    merged = {k: parent[k] for k in INHERITED if k in parent}
    if "column" in child or "columns" in child:  # the child's own column choice replaces the parent's
        merged.pop("column", None)
        merged.pop("columns", None)
    merged.update(child)
    merged["where"] = {**(parent.get("where") or {}), **(child.get("where") or {})}
    merged.setdefault("kind", "table_cell")
    return merged


def evaluate(report: Path, spec: Any) -> list[float]:
    """The values a check gives (a bare number gives itself)."""
    if isinstance(spec, int | float) and not isinstance(spec, bool):
        return [float(spec)]
    if not isinstance(spec, dict):
        raise ClaimError(f"a check must be a mapping, got {spec!r}")
    name = spec.get("kind", "table_cell")
    if name not in KINDS:
        raise ClaimError(f"unknown check kind {name!r}: use one of {sorted(KINDS)}")
    values = KINDS[name](report, spec)
    scale = spec.get("scale", 1)
    return [float(v) * scale for v in values]


def _one(report: Path, parent: dict[str, Any], child: Any, role: str) -> float:
    values = evaluate(report, _child(parent, child))
    if len(values) != 1:
        raise ClaimError(f"`{role}` must give one value, gave {len(values)}")
    return values[0]


@kind("table_cell")
def table_cell(report: Path, spec: dict[str, Any]) -> list[float]:
    table, rows = select(report, spec)
    if len(rows) != 1:
        raise ClaimError(f"{len(rows)} rows of {table.heading[:60]!r} match {spec.get('where')}: need exactly one")
    return [value for c in _column_names(spec, table) for value in numbers(rows[0][c])]


AGGREGATES: dict[str, Callable[[list[float]], list[float]]] = {
    "values": lambda v: v,
    "min": lambda v: [min(v)],
    "max": lambda v: [max(v)],
    "sum": lambda v: [sum(v)],
    "mean": lambda v: [sum(v) / len(v)],
}


@kind("column")
def column(report: Path, spec: dict[str, Any]) -> list[float]:
    table, rows = select(report, spec)
    (name,) = _column_names({"column": spec.get("column")}, table)
    agg = spec.get("agg", "values")
    if agg not in AGGREGATES:
        raise ClaimError(f"unknown agg {agg!r}: use one of {sorted(AGGREGATES)}")
    if not rows:
        raise ClaimError(f"no row of {table.heading[:60]!r} matches {spec.get('where')}")
    return AGGREGATES[agg]([number(r[name]) for r in rows])


@kind("count")
def count(report: Path, spec: dict[str, Any]) -> list[float]:
    return [float(len(select(report, spec)[1]))]


@kind("ratio")
def ratio(report: Path, spec: dict[str, Any]) -> list[float]:
    if "num" not in spec or "den" not in spec:
        raise ClaimError("a ratio needs `num` and `den`")
    return [_one(report, spec, spec["num"], "num") / _one(report, spec, spec["den"], "den")]


def _of(report: Path, spec: dict[str, Any]) -> list[float]:
    parts = spec.get("of")
    if not isinstance(parts, list) or not parts:
        raise ClaimError(f"a {spec.get('kind')} check needs `of`: a list of checks")
    return [v for part in parts for v in evaluate(report, _child(spec, part))]


@kind("range")
def value_range(report: Path, spec: dict[str, Any]) -> list[float]:
    values = _of(report, spec)
    return [min(values), max(values)]


@kind("values")
def values(report: Path, spec: dict[str, Any]) -> list[float]:
    return _of(report, spec)


ITEM_LABELS = ("model", "method", "source", "set_index", "perturbation", "task")
STATS: dict[str, Callable[[Any], list[float]]] = {
    "std": lambda s: [float(s.std(ddof=1))],
    "mean": lambda s: [float(s.mean())],
    "min": lambda s: [float(s.min())],
    "max": lambda s: [float(s.max())],
    "range": lambda s: [float(s.max() - s.min())],
    "count": lambda s: [float(len(s))],
    "values": lambda s: [float(v) for v in s],
}


def cell_values(items: Any, value: str) -> Any:
    """One number per cell (``key``) of an items frame, ordered by set index: perplexity or a field's mean."""
    import numpy as np

    if value == "perplexity":
        if "nll" not in items.columns:
            raise ClaimError("the items hold no `nll` field: `perplexity` needs a ppl: task")
        weights = items["tokens"] if "tokens" in items.columns else items["nll"] * 0 + 1
        frame = items.assign(_w=weights, _wn=items["nll"] * weights)
        sums = frame.groupby("key")[["_wn", "_w"]].sum()
        per_cell = np.exp(sums["_wn"] / sums["_w"])
    elif value.startswith("mean:"):
        field = value.split(":", 1)[1]
        if field not in items.columns:
            raise ClaimError(f"the items hold no field {field!r}; fields: {sorted(set(items.columns) - {'item'})}")
        per_cell = items.groupby("key")[field].mean()
    else:
        raise ClaimError(f"unknown items value {value!r}: use `perplexity` or `mean:FIELD`")
    order = items.drop_duplicates("key").set_index("key")["set_index"].sort_values(kind="stable")
    return per_cell.loc[order.index]


@kind("items")
def items_stat(report: Path, spec: dict[str, Any]) -> list[float]:
    import pandas as pd

    path = report.parent / spec.get("file", "items.parquet")
    if not path.is_file():
        raise ClaimError(f"{path} does not exist (`calibench study report` writes it)")
    items = pd.read_parquet(path)
    where = {"perturbation": "", **(spec.get("where") or {})}
    unknown = [c for c in where if c not in ITEM_LABELS]
    if unknown:
        raise ClaimError(f"items can be selected by {list(ITEM_LABELS)}, not {unknown}")
    mask = pd.Series(True, index=items.index)
    for col, want in where.items():
        mask &= items[col].astype(str).map(lambda cell, want=want: _matches(cell, want))
    chosen = items[mask]
    if chosen.empty:
        raise ClaimError(f"no item of {path} matches {where}")
    stat = spec.get("stat", "mean")
    if stat not in STATS:
        raise ClaimError(f"unknown stat {stat!r}: use one of {sorted(STATS)}")
    return STATS[stat](cell_values(chosen, spec.get("value", "perplexity")))


# -- numbers shown in prose ----------------------------------------------------------------------------------------

# digits not glued to a word ("W4", "g64", "135M", "ROUGE-1" are no numbers; "4.8x" and "37%" are), an optional
# exponent
_NUMBER = re.compile(r"(?<![\w.])(\d{1,3}(?:,\d{3})+|\d+)(\.\d+)?(?:[eE]([-+]?\d+))?(?![\d.]?\d)(?![A-Za-wyz_])")
_SIGNS = {"-": -1.0, "\u2212": -1.0, "+": 1.0}


@dataclass(frozen=True)
class Shown:
    text: str
    value: float
    tolerance: float


def shown_numbers(text: str) -> list[Shown]:
    """The numbers written in ``text`` with half a unit of their last decimal (``2.9`` -> 0.05, ``1.0e-03`` ->
    0.05e-03)."""
    out = []
    for match in _NUMBER.finditer(text):
        whole, frac, exp = match.groups()
        start, sign = match.start(), 1.0
        before = text[start - 2] if start >= 2 else " "
        if text[start - 1 : start] == "-" and before.isalpha():
            continue  # part of a name: ROUGE-1, man-de
        if start >= 1 and text[start - 1] in _SIGNS and not (before.isalnum() or before in "._)]"):
            start, sign = start - 1, _SIGNS[text[start - 1]]  # a sign, not the hyphen of "2.9-4.75"
        scale = 10.0 ** int(exp) if exp is not None else 1.0
        value = sign * float(whole.replace(",", "") + (frac or "")) * scale
        tolerance = 0.5 * 10.0 ** -(len(frac) - 1 if frac else 0) * scale
        out.append(Shown(text[start : match.end()], value, tolerance))
    return out


def _normalise(text: str) -> str:
    return re.sub(r"\s+", " ", text)


@dataclass(frozen=True)
class Result:
    doc: str
    quote: str
    values: list[float]
    problem: str  # "" when the entry holds

    def line(self) -> str:
        got = ", ".join(f"{v:.6g}" for v in self.values) if self.values else "-"
        head = f"{self.doc}: {_normalise(self.quote)!r}: recomputed {got}"
        return f"{head}: {self.problem}" if self.problem else head


def check_entry(entry: Any, root: Path) -> Result:
    """One claims entry: the quote is in its doc, and its numbers are what the check recomputes."""
    if not isinstance(entry, dict) or not {"doc", "quote", "report", "check"} <= set(entry):
        raise ClaimError(f"an entry needs doc, quote, report and check: {entry!r}")
    doc, quote = str(entry["doc"]), str(entry["quote"])
    shown_text = str(entry.get("shown", quote))
    if shown_text not in quote:
        raise ClaimError(f"{doc}: `shown` {shown_text!r} is not part of the quote {quote!r}")
    values = evaluate(root / str(entry["report"]), entry["check"])
    doc_path = root / doc
    if not doc_path.is_file():
        return Result(doc, quote, values, "the doc does not exist")
    if _normalise(quote) not in _normalise(doc_path.read_text(encoding="utf-8")):
        return Result(doc, quote, values, "the quote is not in the doc (reworded? update docs/claims.yaml)")
    shown = shown_numbers(shown_text)
    if len(shown) != len(values):
        return Result(doc, quote, values, f"the quote shows {len(shown)} numbers, the check gives {len(values)}")
    tolerances = entry.get("tolerance", [s.tolerance for s in shown])
    tolerances = tolerances if isinstance(tolerances, list) else [tolerances] * len(shown)
    if len(tolerances) != len(shown):
        raise ClaimError(f"{doc}: `tolerance` lists {len(tolerances)} values for {len(shown)} numbers shown")
    wrong = []
    for s, v, tol in zip(shown, values, tolerances):
        tolerance = s.tolerance if tol is None else float(tol)
        if not (math.isfinite(v) and abs(v - s.value) <= tolerance * (1 + 1e-9) + 1e-12):
            wrong.append(f"{s.text.strip()} (is {v:.6g})")
    if wrong:
        return Result(doc, quote, values, f"disagrees beyond the rounding shown: {', '.join(wrong)}")
    return Result(doc, quote, values, "")


def load_claims(path: Path) -> list[Any]:
    if not path.is_file():
        raise ClaimError(f"{path} does not exist")
    try:
        entries = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ClaimError(f"{path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(entries, list):
        raise ClaimError(f"{path} must hold a list of entries (doc, quote, report, check)")
    return entries


def check_all(path: Path = CLAIMS, root: Path = ROOT) -> list[Result]:
    """Every entry's result; a malformed entry raises :class:`ClaimError` naming it."""
    results = []
    for n, entry in enumerate(load_claims(path), 1):
        try:
            results.append(check_entry(entry, root))
        except ClaimError as exc:
            where = entry.get("doc", "?") if isinstance(entry, dict) else "?"
            raise ClaimError(f"{path.name} entry {n} ({where}): {exc}") from None
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--claims", type=Path, default=CLAIMS, help="the claims file (default docs/claims.yaml)")
    parser.add_argument("--root", type=Path, default=ROOT, help="the folder the entries' paths are relative to")
    parser.add_argument("--show", action="store_true", help="print every entry with its recomputed values")
    args = parser.parse_args(argv)
    try:
        results = check_all(args.claims, args.root)
    except ClaimError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    failed = [r for r in results if r.problem]
    for r in results if args.show else failed:
        print(("FAIL " if r.problem else "ok   ") + r.line())
    print(f"{len(results) - len(failed)} of {len(results)} claims hold", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
