"""The report package end to end on hand-filled study stores: the table against dense, McNemar in the source pairs,
the significance marks, a single-source study, per-model tables and plots, and the section registry and renderer."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from calibench.core import plots as core_plots
from calibench.core import stats
from calibench.core.errors import UnknownNameError
from calibench.report import plots, render, sections, tables
from calibench.report.frame import load_frame
from calibench.report.notes import SINGLE_SOURCE
from calibench.report.study import write_report
from calibench.study.cells import Cell
from calibench.study.store import Store

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.filterwarnings("ignore")]

DOCS = 40


def _cell(model: str, method: str, source: str, index: int) -> Cell:
    dense = method == "dense"
    return Cell(
        model=model,
        method=method,
        method_name="" if dense else method,
        params={},
        source="" if dense else source,
        source_params={},
        num_sets=2,
        set_index=index,
        n=0 if dense else 16,
        seq_len=0 if dense else 64,
        seed=0,
        eval={"tasks": ["arc_easy", "ppl:wiki"]},
    )


def fill(directory: Path, grid: dict[tuple[str, str, str], int], rates: dict[str, float], seed: int = 0) -> dict:
    """Cells of ``grid`` ((model, method, source) -> sets) plus each model's dense cell, with per-item samples.

    arc_easy: 0/1 acc per document at the source's rate; ppl:wiki: 6 windows of NLL.  Returns the scores by
    (model, method, source, set) -> (acc by doc, nll by window).
    """
    rng = np.random.default_rng(seed)
    models = sorted({m for m, _, _ in grid})
    cells = [(m, "dense", "", 0) for m in models] + [
        (m, meth, s, i) for (m, meth, s), k in grid.items() for i in range(k)
    ]
    scores = {}
    store = Store(directory)
    for model, method, source, index in cells:
        rate = rates["dense" if method == "dense" else source]
        acc = {f"h{j}": float(rng.uniform() < rate) for j in range(DOCS)}
        nll = {j: float(3.0 + (0.0 if method == "dense" else 0.2) + rng.normal(0, 0.05)) for j in range(6)}
        scores[(model, method, source, index)] = (acc, nll)
        rows = [
            {"task": "arc_easy", "metric": "acc", "value": float(np.mean(list(acc.values()))), "n": DOCS},
            {"task": "ppl:wiki", "metric": "perplexity", "value": float(np.exp(np.mean(list(nll.values())))), "n": 6},
        ]
        samples = {
            "arc_easy": [{"doc_id": j, "doc_hash": d, "metrics": {"acc": v}} for j, (d, v) in enumerate(acc.items())],
            "ppl:wiki": [{"window": j, "nll": v, "tokens": 31} for j, v in nll.items()],
        }
        store.record_success(_cell(model, method, source, index), rows, None, {}, 1.0, samples=samples)
    store.close()
    return scores


RATES = {"dense": 0.8, "wiki": 0.75, "code": 0.3}


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """One model: wanda with one set per source (single cells: 0/1 items), gptq with two (averaged items)."""
    directory = tmp_path_factory.mktemp("report-study")
    scores = fill(
        directory,
        {("m", "wanda", "wiki"): 1, ("m", "wanda", "code"): 1, ("m", "gptq", "wiki"): 2, ("m", "gptq", "code"): 2},
        RATES,
    )
    return directory, scores, write_report(directory)


def _per_item(scores, model, method, source, task):
    keys = sorted(k for k in scores if k[:3] == (model, method, source))
    if task == "arc_easy":
        docs = sorted(scores[keys[0]][0])
        return np.array([[scores[k][0][d] for d in docs] for k in keys]).mean(axis=0)
    return np.array([[scores[k][1][w] for w in sorted(scores[k][1])] for k in keys]).mean(axis=0)


def test_compressed_against_dense_equals_a_direct_computation(study):
    directory, scores, report = study
    frame = load_frame(directory)[0]
    (found,) = sections.dense_sections(directory, frame, None)
    table = found.tables[0].frame.set_index(["method", "source", "task"])
    assert len(table) == 2 * 2 * 2  # methods x sources x tasks
    for task in ("arc_easy", "ppl:wiki"):
        family = []
        for method in ("gptq", "wanda"):
            for source in ("code", "wiki"):
                row = table.loc[(method, source, task)]
                compressed, dense = (
                    _per_item(scores, "m", method, source, task),
                    _per_item(scores, "m", "dense", "", task),
                )
                d = compressed - dense
                ci = stats.paired_bootstrap_ci(d)
                assert row["difference (compressed-dense)"] == pytest.approx(d.mean())
                assert (row["CI low"], row["CI high"]) == (pytest.approx(ci.low), pytest.approx(ci.high))
                assert row["dense"] == pytest.approx(dense.mean()) and row["items"] == d.size
                if task == "arc_easy" and method == "wanda":  # single cells: 0/1 items, McNemar on the discordant
                    a_only, b_only = int(np.sum(d > 0)), int(np.sum(d < 0))
                    assert row["test"] == stats.MCNEMAR and row["discordant (compressed/dense)"] == f"{a_only}/{b_only}"
                    assert row["p"] == pytest.approx(stats.mcnemar_exact(a_only, b_only))
                else:
                    assert row["test"] != stats.MCNEMAR and row["p"] == pytest.approx(stats.sign_flip_pvalue(d))
                if task == "ppl:wiki":
                    assert row["ppl ratio (compressed/dense)"] == pytest.approx(math.exp(d.mean()))
                family.append(row)
        # Holm over the model's four comparisons of this task
        assert [r["p (Holm)"] for r in family] == pytest.approx(list(stats.holm([r["p"] for r in family])))
        assert [r["significant"] for r in family] == [r["p (Holm)"] < tables.ALPHA for r in family]
    assert table.loc[("wanda", "code", "arc_easy"), "significant"]  # 0.3 against 0.8 on 40 documents
    md = report.markdown.read_text()
    assert sections.DENSE_HEADING in md and sections.SIGNIFICANCE_LEGEND in md


def test_source_pairs_use_mcnemar_on_single_cells_and_mark_significance(study):
    directory, scores, report = study
    frame = load_frame(directory)[0]
    pairs_section, _ = sections.paired_sections(directory, frame, None)
    pairs = pairs_section.tables[0].frame.set_index(["method", "task"])
    wanda = pairs.loc[("wanda", "arc_easy")]
    a, b = _per_item(scores, "m", "wanda", "code", "arc_easy"), _per_item(scores, "m", "wanda", "wiki", "arc_easy")
    assert wanda["test"] == stats.MCNEMAR and wanda["p"] == pytest.approx(stats.mcnemar_pvalue(a, b))
    assert wanda["discordant (A/B)"] == "{}/{}".format(*stats.discordant_counts(a, b))
    assert wanda["scope"] == tables.THESE_SETS and wanda["p (these sets)"] == wanda["p"]  # one set per source
    gptq = pairs.loc[("gptq", "arc_easy")]  # two sets per source: decided about sources, sets random
    d = _per_item(scores, "m", "gptq", "code", "arc_easy") - _per_item(scores, "m", "gptq", "wiki", "arc_easy")
    assert gptq["p (these sets)"] == pytest.approx(stats.sign_flip_pvalue(d))  # items only, kept beside it
    matrix = {
        source: np.array(
            [
                [scores[("m", "gptq", source, i)][0][doc] for doc in sorted(f"h{j}" for j in range(DOCS))]
                for i in range(2)
            ]
        )
        for source in ("code", "wiki")
    }
    direct = stats.source_difference(matrix["code"], matrix["wiki"])
    assert gptq["scope"] == tables.SOURCES_SCOPE and gptq["test"] == stats.SET_AWARE
    assert gptq["p"] == pytest.approx(float(direct.p)) and gptq["df"] == pytest.approx(float(direct.df))
    assert (gptq["CI low"], gptq["CI high"]) == (pytest.approx(float(direct.low)), pytest.approx(float(direct.high)))
    assert gptq["difference (A-B)"] == pytest.approx(d.mean())
    assert wanda["significant"] and wanda["p (Holm)"] < tables.ALPHA  # 0.3 against 0.75
    # the Markdown row carries the mark after p (Holm) and no separate significant column
    md = report.markdown.read_text()
    marked = [line for line in md.splitlines() if line.startswith("| m | wanda |") and "McNemar" in line]
    holm_text = render.fmt(float(wanda["p (Holm)"]), "p (Holm)")
    assert any(f"| {holm_text} {render.MARK} |" in line for line in marked)
    header = next(
        line
        for line in md.splitlines()
        if line.startswith("| model | method | n | seq_len | task | quantity | source A")
    )
    assert "significant" not in header and "p (Holm)" in header
    html = report.html.read_text()
    assert f"<td>{holm_text} {render.MARK}</td>" in html and render.MARK in sections.SIGNIFICANCE_LEGEND


def test_a_single_source_study_says_no_comparison_is_possible(tmp_path):
    fill(tmp_path, {("m", "wanda", "wiki"): 2}, RATES)
    report = write_report(tmp_path)
    note = SINGLE_SOURCE.format(source="wiki")
    md, html = report.markdown.read_text(), report.html.read_text()
    assert md.count(note) == 1 and html.count(note) == 1
    assert sections.PAIRED_HEADING not in md and sections.SOURCE_CI_HEADING not in md
    assert "paired_differences.png" not in {p.name for p in report.plots}
    assert sections.DENSE_HEADING in md  # against dense still compares item by item
    two = tmp_path / "two"
    fill(two, {("m", "wanda", "wiki"): 1, ("m", "wanda", "code"): 1}, RATES)
    assert "single calibration source" not in write_report(two).markdown.read_text()


def test_two_models_never_share_a_table_without_a_model_column_or_a_plot(tmp_path):
    fill(tmp_path, {(m, "wanda", s): 2 for m in ("org/m1", "org/m2") for s in ("wiki", "code")}, RATES)
    frame = load_frame(tmp_path)[0]
    import matplotlib

    before = {key: matplotlib.rcParams[key] for key in core_plots.STYLE}
    found = sections.build_sections(tmp_path, frame, tmp_path)
    assert {key: matplotlib.rcParams[key] for key in core_plots.STYLE} == before  # an rc context, not a global change
    assert {s.title for s in found} >= {sections.PAIRED_HEADING, sections.DENSE_HEADING, sections.AVERAGE_HEADING}
    for section in found:
        for table in section.tables:
            assert "model" in table.frame.columns and set(table.frame.model) == {"org/m1", "org/m2"}, section.title
    names = [p.name for s in found for p in s.plots]
    assert names and all(n.endswith(("-m1.png", "-m2.png")) for n in names), names
    stems = {n.rsplit("-", 1)[0] for n in names}
    assert {f"{stem}-{m}.png" for stem in stems for m in ("m1", "m2")} == set(names)  # each plot once per model
    with pytest.raises(ValueError, match="per model"):
        plots.plot_average_by_source(frame, tmp_path / "mixed.png")
    assert not (tmp_path / "mixed.png").exists()


def test_render_gives_markdown_and_html_the_same_cells(tmp_path):
    png = plots.save_figure(plots.pyplot().figure(figsize=(1, 1)), tmp_path / "fig.png")
    assert png.read_bytes()[:8] == core_plots.PNG_MAGIC and sorted(p.name for p in tmp_path.iterdir()) == ["fig.png"]
    frame = pd.DataFrame(
        {
            "model": ["m", "m"],
            "method": ["dense", "wanda"],
            "n": [0, 16],
            "name": ["a|b", "c"],
            "p (Holm)": [0.00002, 0.5],
            "significant": [True, False],
            "mean": [0.123456, 12.3456],
        }
    )
    section = render.Section(
        "T",
        intro="why",
        tables=[render.Table(frame, ("p (Holm)", "significant"), "legend")],
        plots=[png],
        notes=["careful"],
    )
    md = render.render_markdown("Title", ["lead"], ["top"], [section])
    assert "| m | dense | - | a\\|b | 2.0e-05 * | 0.1235 |" in md and "| m | wanda | 16 | c | 0.5000 | 12.35 |" in md
    assert "> **Note.** careful" in md and "legend" in md and "![fig](fig.png)" in md
    html = render.render_html("Title", ["lead"], ["top"], [section])
    for cell in ("<td>2.0e-05 *</td>", "<td>a|b</td>", "<td>-</td>", "<td>12.35</td>"):
        assert cell in html
    assert "significant" not in html and html.count("data:image/png;base64,") == 1


def test_a_registered_provider_is_placed_with_its_tables_and_plots(tmp_path, monkeypatch):
    fill(tmp_path, {("m", "wanda", "wiki"): 1, ("m", "wanda", "code"): 1}, RATES)
    png = plots.save_figure(plots.pyplot().figure(figsize=(1, 1)), tmp_path / "extra.png")
    seen = []

    def provider(directory, frame, out):
        seen.append((directory, len(frame), out))
        return [render.Section("Predictors", tables=[pd.DataFrame({"model": ["m"], "rho": [0.5]})], plots=[png])]

    order = sections.PROVIDERS.names()
    with sections.PROVIDERS.temporarily("predictors", provider):
        sections.register("predictors", provider, before="summarization")
        with pytest.raises(UnknownNameError, match="unknown report section provider 'nothing'"):
            sections.register("x", provider, before="nothing")
        assert "x" not in sections.PROVIDERS and sections.PROVIDERS.names() == order
        report = write_report(tmp_path)
    assert sections.PROVIDERS.get("predictors") is not provider and sections.PROVIDERS.names() == order
    md = report.markdown.read_text()
    assert seen and seen[0][0] == tmp_path and seen[0][2] == tmp_path / "report"
    assert md.index(sections.PAIRED_HEADING) < md.index("## Predictors") and "| m | 0.5000 |" in md
    assert md.index("## Predictors") < md.index("![extra](extra.png)")
    assert sections.as_sections(None) == [] and sections.as_sections([]) == []
    with pytest.raises(TypeError):  # the old (tables, plots) tuple is no longer accepted
        sections.as_sections(([("a", pd.DataFrame())], [png]))
    with pytest.raises(TypeError):
        sections.as_sections([("a", pd.DataFrame())])


def test_the_headline_lists_exactly_the_significant_pairs_from_the_better_source(study):
    directory, scores, report = study
    frame = load_frame(directory)[0]
    pairs_section, _ = sections.paired_sections(directory, frame, None)
    pairs = pairs_section.tables[0].frame
    (headline,) = sections.resolved_sections(directory, frame, None)
    resolved = headline.tables[0].frame
    assert len(resolved) == int(pairs["significant"].sum()) >= 1
    for _, row in resolved.iterrows():
        match = pairs[(pairs.method == row["method"]) & (pairs.task == row["task"])].iloc[0]
        assert row["p (Holm)"] == match["p (Holm)"] and row["better"] == match["better"]
        difference = match["difference (A-B)"] * (1 if match["better"] == match["source A"] else -1)
        assert row["difference"] == pytest.approx(difference) and row["CI low"] <= row["CI high"]
        if row["task"] == "arc_easy":
            assert row["difference"] > 0  # the better source has the higher accuracy
    wanda = resolved[(resolved.method == "wanda") & (resolved.task == "arc_easy")].iloc[0]
    assert (wanda["better"], wanda["worse"], wanda["scope"]) == ("wiki", "code", tables.THESE_SETS)
    assert any(line.startswith("wanda arc_easy: wiki better than code, acc +") for line in report.resolved)
    assert sections.RESOLVED_HEADING in report.markdown.read_text()
