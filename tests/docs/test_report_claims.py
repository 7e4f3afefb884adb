"""docs/claims.yaml: every number the documentation quotes from a committed report is what the report gives.

``tools/report_claims.py`` recomputes each quoted number from the report's own
files; these tests run it over the real claims file (so ``make test`` fails
when a page and its report disagree) and show that it does fail: a stale
number, a reworded quote, a number beyond the rounding shown, a malformed
entry, and a statistic recomputed from ``items.parquet`` against an
independent computation.
"""

from __future__ import annotations

import importlib.util
import math
import statistics
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("calibench_report_claims", ROOT / "tools" / "report_claims.py")
tool = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = tool  # dataclasses look their module up
_spec.loader.exec_module(tool)

REPORT = """# calibench study: t

## Perplexity across sets

| model | method | source | task | sets | mean | std |
|---|---|---|---|---|---|---|
| m | dense | - | ppl:wiki | 1 | 20.00 | 0.0000 |
| m | gptq-w4g64 | code | ppl:wiki | 3 | 41.48 | 1.2063 |
| m | gptq-w4g64 | wiki | ppl:wiki | 3 | 29.45 | 0.2552 |
| m | wanda-50% | wiki | ppl:wiki | 3 | 47.72 | 0.1870 |

## Paired differences between sources

| method | source A | source B | difference (A-B) | p (Holm) |
|---|---|---|---|---|
| gptq-w4g64 | code | wiki | 0.3422 | 1.0e-03 * |
| wanda-50% | code | wiki | 0.0113 | 0.2574 |
"""

RATIO = {
    "kind": "ratio",
    "table": "Perplexity across sets",
    "where": {"method": "gptq-w4g64"},
    "column": "mean",
    "num": {"where": {"source": "code"}},
    "den": {"where": {"source": "wiki"}},
}  # 41.48 / 29.45 = 1.4085


def _world(tmp_path: Path, doc_text: str, entries: list[dict]) -> Path:
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "report.md").write_text(REPORT, encoding="utf-8")
    (tmp_path / "page.md").write_text(doc_text, encoding="utf-8")
    claims = tmp_path / "claims.yaml"
    claims.write_text(yaml.safe_dump(entries, allow_unicode=True), encoding="utf-8")
    return claims


def _entry(quote: str, check: dict, **extra) -> dict:
    return {"doc": "page.md", "quote": quote, "report": "r/report.md", "check": check, **extra}


def test_every_claim_in_the_docs_holds_against_its_committed_report(capsys):
    results = tool.check_all()
    assert [r.line() for r in results if r.problem] == []
    assert len(results) >= 20
    reports = {e["report"] for e in yaml.safe_load(tool.CLAIMS.read_text(encoding="utf-8"))}
    assert {"docs/summ-study-report/report.md", "docs/multilingual-report/report.md"} <= reports
    assert {"docs/choice-study-report/report.md", "docs/outlier-study-report/report.md"} <= reports
    assert tool.main([]) == 0
    assert f"{len(results)} of {len(results)} claims hold" in capsys.readouterr().err


def test_the_fixed_multilingual_sentence_against_the_stale_one(tmp_path, capsys):
    """The old "by a factor of 2 to 4" fails against the real report; the reworded one holds."""
    entries = yaml.safe_load(tool.CLAIMS.read_text(encoding="utf-8"))
    (gptq,) = [e for e in entries if e["doc"] == "docs/data.md" and "for GPTQ W4 g64" in e["quote"]]
    stale = tmp_path / "docs" / "data.md"
    stale.parent.mkdir()
    stale.write_text("Yes, by a factor of\n2 to 4 in the damage.\n", encoding="utf-8")
    (tmp_path / "docs" / "multilingual-report").symlink_to(ROOT / "docs" / "multilingual-report")
    claims = tmp_path / "claims.yaml"
    old = {**gptq, "quote": "by a factor of 2 to 4 in the damage", "shown": "2 to 4"}
    claims.write_text(yaml.safe_dump([old]), encoding="utf-8")
    assert tool.main(["--claims", str(claims), "--root", str(tmp_path)]) == 1
    (line,) = capsys.readouterr().out.splitlines()
    assert line.startswith("FAIL docs/data.md: 'by a factor of 2 to 4 in the damage': recomputed 2.87661, 4.82632")
    assert "disagrees beyond the rounding shown: 2 (is 2.87661), 4 (is 4.82632)" in line


def test_a_number_beyond_the_rounding_shown_fails_and_one_within_it_holds(tmp_path, capsys):
    doc = "GPTQ's ratio is 1.41 here, 1.4 to one decimal, 1.40 when stale.\n"
    claims = _world(
        tmp_path,
        doc,
        [_entry("ratio is 1.41", RATIO), _entry("1.4 to one decimal", RATIO, shown="1.4"), _entry("1.40", RATIO)],
    )
    results = tool.check_all(claims, tmp_path)
    assert [r.problem for r in results[:2]] == ["", ""]
    assert results[0].values == pytest.approx([41.48 / 29.45])
    assert results[2].problem == "disagrees beyond the rounding shown: 1.40 (is 1.40849)"
    assert tool.main(["--claims", str(claims), "--root", str(tmp_path)]) == 1
    assert capsys.readouterr().out.splitlines() == [
        "FAIL page.md: '1.40': recomputed 1.40849: disagrees beyond the rounding shown: 1.40 (is 1.40849)"
    ]


def test_a_quote_missing_from_the_doc_fails_with_the_recomputed_value(tmp_path, capsys):
    claims = _world(tmp_path, "The ratio was reworded away.\n", [_entry("ratio is 1.41", RATIO)])
    assert tool.main(["--claims", str(claims), "--root", str(tmp_path)]) == 1
    (line,) = capsys.readouterr().out.splitlines()
    assert line.startswith("FAIL page.md: 'ratio is 1.41': recomputed 1.40849: the quote is not in the doc")


def test_a_quote_wrapped_across_lines_matches_and_the_count_of_numbers_must_agree(tmp_path):
    doc = "the ratio\nis 1.41 and wiki\n  gives 29.45\n"
    cell = {"table": "Perplexity across sets", "where": {"method": "gptq-w4g64", "source": "wiki"}, "column": "mean"}
    claims = _world(
        tmp_path,
        doc,
        [
            _entry("ratio is 1.41 and wiki gives 29.45", {"kind": "values", "of": [RATIO, cell]}),
            _entry("ratio is 1.41 and wiki gives 29.45", RATIO),
        ],
    )
    ok, short = tool.check_all(claims, tmp_path)
    assert ok.problem == "" and ok.values == pytest.approx([41.48 / 29.45, 29.45])
    assert short.problem == "the quote shows 2 numbers, the check gives 1"


def test_counts_aggregates_ranges_and_where_operators_read_the_report_tables(tmp_path):
    report = tmp_path / "r" / "report.md"
    _world(tmp_path, "", [])
    pairs = {"table": "Paired differences"}
    resolved = {"kind": "count", **pairs, "where": {"p (Holm)": {"re": r"\*"}}}
    assert tool.evaluate(report, resolved) == [1.0]
    assert tool.evaluate(report, {"kind": "count", **pairs, "where": {"p (Holm)": {"lt": 0.05}}}) == [1.0]
    assert tool.evaluate(report, {"kind": "column", **pairs, "column": "p (Holm)", "agg": "max"}) == [0.2574]
    means = {"table": "Perplexity across sets", "column": "mean"}
    spread = {"kind": "range", **means, "of": [{"where": {"source": s}} for s in ("code", "wiki")]}
    assert tool.evaluate(report, {**spread, "where": {"method": "gptq-w4g64"}}) == [29.45, 41.48]
    several = {"kind": "column", **means, "where": {"source": ["code", "wiki"]}, "scale": 2}
    assert tool.evaluate(report, several) == pytest.approx([82.96, 58.90, 95.44])
    with pytest.raises(tool.ClaimError, match="2 rows .* need exactly one"):
        tool.evaluate(report, {**means, "where": {"source": "wiki"}})
    with pytest.raises(tool.ClaimError, match="no heading contain 'Nowhere'"):
        tool.evaluate(report, {"table": "Nowhere", "column": "mean"})
    with pytest.raises(tool.ClaimError, match="2 headings"):
        tool.evaluate(report, {"table": "s", "column": "mean"})
    with pytest.raises(tool.ClaimError, match="no column"):
        tool.evaluate(report, {**means, "where": {"sorce": "wiki"}})


def test_a_malformed_claims_file_is_one_line_and_exit_2(tmp_path, capsys):
    claims = _world(tmp_path, "ratio is 1.41\n", [_entry("ratio is 1.41", {**RATIO, "kind": "ratios"})])
    assert tool.main(["--claims", str(claims), "--root", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: claims.yaml entry 1 (page.md): unknown check kind 'ratios': use one of "
                   "['column', 'count', 'items', 'range', 'ratio', 'table_cell', 'values']"]  # fmt: skip
    (tmp_path / "claims.yaml").write_text("doc: [unclosed\n", encoding="utf-8")
    assert tool.main(["--claims", str(claims), "--root", str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith("error: ")


@pytest.mark.parametrize(
    ("text", "numbers"),
    [
        ("GPTQ by 2.9 to 4.8x", [2.9, 4.8]),
        ("about 2.9-4.75x", [2.9, 4.75]),
        ("+0.0356 [0.0127, 0.0614]", [0.0356, 0.0127, 0.0614]),
        ("-0.74 [-0.92, -0.31]", [-0.74, -0.92, -0.31]),
        ("W4 g64 on SmolLM2-135M, ROUGE-1 0.170, man-de", [0.170]),
        ("Holm p 1.0e-03, n = 8,192 and +37 ± 3%", [1.0e-03, 8192, 37, 3]),
    ],
)
def test_the_numbers_a_quote_shows(text, numbers):
    shown = tool.shown_numbers(text)
    assert [s.value for s in shown] == pytest.approx(numbers)


def test_rounding_is_half_a_unit_of_the_last_decimal_shown():
    (a, b, c) = tool.shown_numbers("2.9, 580 and 1.0e-03")
    assert (a.tolerance, b.tolerance) == pytest.approx((0.05, 0.5))
    assert c.tolerance == pytest.approx(0.5e-4)


# -- items.parquet ------------------------------------------------------------------------------------------------


def _items(tmp_path: Path) -> tuple[Path, dict[int, float], list[float]]:
    """A synthetic items.parquet: three wiki sets of one GPTQ cell with windows of unequal length, a dense cell,
    a noise-floor rerun that must not count, and arc_easy items; and the per-set perplexities computed here."""
    records = []
    truth: dict[int, float] = {}
    accs = []
    for s, base in enumerate([3.1, 3.3, 3.2]):
        nll = [base + 0.1 * w for w in range(4)]
        tokens = [255, 255, 100, 31]
        truth[s] = math.exp(sum(n * t for n, t in zip(nll, tokens)) / sum(tokens))
        for w, (n, t) in enumerate(zip(nll, tokens)):
            records.append(("g" + str(s), "m", "gptq-w4g64", "wiki", s, "", "ppl:wiki", str(w), n, t, None))
        acc = [1.0, 0.0, float(s > 0), 1.0]
        accs.append(sum(acc) / len(acc))
        for i, a in enumerate(acc):
            records.append(("g" + str(s), "m", "gptq-w4g64", "wiki", s, "", "arc_easy", f"d{i}", None, None, a))
    records.append(("r0", "m", "gptq-w4g64", "wiki", 0, "threads", "ppl:wiki", "0", 9.0, 255, None))
    records.append(("d", "m", "dense", "-", 0, "", "ppl:wiki", "0", 2.9, 255, None))
    columns = ["key", "model", "method", "source", "set_index", "perturbation", "task", "item"]  # items_frame's
    frame = pd.DataFrame.from_records(records, columns=[*columns, "nll", "tokens", "metrics.acc"])
    (tmp_path / "r").mkdir()
    frame.to_parquet(tmp_path / "r" / "items.parquet", index=False)
    (tmp_path / "r" / "report.md").write_text("# calibench study: t\n", encoding="utf-8")
    return tmp_path / "r" / "report.md", truth, accs


def test_items_recompute_the_across_set_std_of_perplexity_independently(tmp_path):
    report, truth, accs = _items(tmp_path)
    where = {"method": "gptq-w4g64", "source": "wiki", "task": "ppl:wiki"}
    check = {"kind": "items", "where": where, "value": "perplexity"}
    per_set = [truth[s] for s in range(3)]
    assert tool.evaluate(report, {**check, "stat": "values"}) == pytest.approx(per_set, rel=1e-12)
    assert tool.evaluate(report, {**check, "stat": "std"}) == pytest.approx([statistics.stdev(per_set)], rel=1e-12)
    assert tool.evaluate(report, {**check, "stat": "range"}) == pytest.approx([max(per_set) - min(per_set)])
    assert tool.evaluate(report, {**check, "stat": "count"}) == [3.0]
    rerun = {**check, "stat": "values", "where": {**where, "set_index": 0, "perturbation": "threads"}}
    assert tool.evaluate(report, rerun) == pytest.approx([math.exp(9.0)])
    acc = {"kind": "items", "where": {"task": "arc_easy"}, "value": "mean:metrics.acc", "stat": "values"}
    assert tool.evaluate(report, acc) == pytest.approx(accs)


def test_items_perplexity_is_the_one_the_report_computes(tmp_path):
    """The report's own perplexity of a cell's windows (token-weighted) is what the `items` check gives."""
    from calibench.evaluation.samples import rows_from_items

    report, _, _ = _items(tmp_path)
    items = pd.read_parquet(report.parent / "items.parquet")
    cell = items[(items.key == "g1") & (items.task == "ppl:wiki")]
    (row,) = rows_from_items("ppl:wiki", cell[["nll", "tokens"]].to_dict("records"), perplexity=True)
    check = {"kind": "items", "where": {"set_index": 1, "task": "ppl:wiki", "method": "gptq-w4g64"}}
    assert tool.evaluate(report, {**check, "stat": "mean"}) == pytest.approx([row["value"]], rel=1e-12)


def test_an_items_claim_against_a_doc_and_its_errors(tmp_path):
    report, truth, _ = _items(tmp_path)
    std = statistics.stdev(truth.values())
    check = {"kind": "items", "where": {"method": "gptq-w4g64", "task": "ppl:wiki"}, "stat": "std"}
    (tmp_path / "page.md").write_text(f"an across-set std of {std:.2f} and a stale {std + 0.1:.2f}\n")
    good = _entry(f"across-set std of {std:.2f}", check)
    bad = _entry(f"a stale {std + 0.1:.2f}", check)
    assert [r.problem == "" for r in (tool.check_entry(good, tmp_path), tool.check_entry(bad, tmp_path))] == [
        True,
        False,
    ]
    with pytest.raises(tool.ClaimError, match="no field 'acc'"):
        tool.evaluate(report, {**check, "value": "mean:acc"})
    with pytest.raises(tool.ClaimError, match="no item .* matches"):
        tool.evaluate(report, {**check, "where": {"source": "code"}})
    with pytest.raises(tool.ClaimError, match="not \\['key'\\]"):
        tool.evaluate(report, {**check, "where": {"key": "g0"}})
    with pytest.raises(tool.ClaimError, match="items.parquet does not exist"):
        tool.evaluate(tmp_path / "elsewhere" / "report.md", check)


def test_items_read_the_columns_the_report_writes(tmp_path):
    """An items.parquet made by the report's own ``items_frame`` (the labels the check selects by)."""
    from calibench.report.frame import items_frame

    cells = pd.DataFrame(
        [
            {"key": f"k{s}", "model": "m", "method": "wanda-50%", "source": "code", "set_index": s, "perturbation": ""}
            for s in range(2)
        ]
    )
    nll = {0: [3.0, 3.5], 1: [3.2, 3.9]}
    samples = {
        (f"k{s}", "ppl:wiki"): {w: {"window": w, "nll": v, "tokens": 127} for w, v in enumerate(nll[s])}
        for s in range(2)
    }
    (tmp_path / "r").mkdir()
    items_frame(cells, samples).to_parquet(tmp_path / "r" / "items.parquet", index=False)
    check = {"kind": "items", "where": {"method": "wanda-50%", "source": "code", "task": "ppl:wiki"}, "stat": "values"}
    expected = [math.exp(statistics.fmean(nll[s])) for s in range(2)]
    assert tool.evaluate(tmp_path / "r" / "report.md", check) == pytest.approx(expected, rel=1e-12)


def test_an_estimate_with_its_ci_and_the_second_table_under_one_heading(tmp_path):
    """A cell ``0.108 [0.083, 0.140]`` gives its three numbers; of two tables under one heading, the one holding
    the columns the check names is read."""
    report = tmp_path / "report.md"
    report.write_text(
        "## Sensitivity\n\n| method | spread [95% CI] |\n|---|---|\n| gptq | 0.108 [0.083, 0.140] |\n"
        "| wanda | 0.050 [0.027, 0.074] |\n\n| method A | method B | A - B [95% CI] |\n|---|---|---|\n"
        "| gptq | wanda | +0.058 [+0.023, +0.102] |\n",
        encoding="utf-8",
    )
    first = {"table": "Sensitivity", "where": {"method": "wanda"}, "column": "spread [95% CI]"}
    assert tool.evaluate(report, first) == [0.050, 0.027, 0.074]
    second = {"table": "Sensitivity", "where": {"method A": "gptq"}, "column": "A - B [95% CI]"}
    assert tool.evaluate(report, second) == [0.058, 0.023, 0.102]
    with pytest.raises(tool.ClaimError, match="no column"):
        tool.evaluate(report, {**second, "where": {"method C": "gptq"}})
