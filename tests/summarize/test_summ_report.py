"""The study report's summarization sections: metrics across sets, compressed minus dense paired per document
(from the store's samples table), and the overlap-vs-consistency plot; built on a hand-filled store."""

from __future__ import annotations

import pytest


def _cell(method, source, set_index):
    from calibench.study.cells import Cell

    return Cell(
        model="m",
        method=method,
        method_name="" if method == "dense" else method,
        params={},
        source=source,
        source_params={},
        num_sets=2,
        set_index=set_index,
        n=4,
        seq_len=32,
        seed=0,
        eval={"tasks": ["summ:xsum"]},
    )


def _items(shift):
    return [
        {
            "doc_id": str(i),
            "doc_hash": f"h{i}",
            "response": "s",
            "metrics": {"rouge1": 0.2 + 0.01 * i, "coverage": 0.5 + shift + 0.001 * i, "summac_zs": 0.6 + shift},
        }
        for i in range(6)
    ]


def test_report_sections_pair_cells_with_dense(tmp_path):
    from calibench.report.study import write_report
    from calibench.study.store import Store

    store = Store(tmp_path)
    for method, source, k, shift in [
        ("dense", "", 0, 0.0),
        ("wanda", "wiki", 0, 0.1),
        ("wanda", "wiki", 1, 0.2),
        ("wanda", "code", 0, -0.1),
    ]:
        items = _items(shift)
        rows = [
            {"task": "summ:xsum", "metric": m, "value": sum(it["metrics"][m] for it in items) / 6, "n": 6}
            for m in ("rouge1", "coverage", "summac_zs")
        ]
        store.record_success(_cell(method, source, k), rows, None, {}, 1.0, {"summ:xsum": items})
    store.close()
    report = write_report(tmp_path)
    md = report.markdown.read_text()
    assert "Summarization metrics across sets" in md and "compressed minus dense, paired per document" in md
    assert any(p.name == "summarization_overlap_consistency.png" for p in report.plots)

    from calibench.report.frame import load_frame
    from calibench.report.summarization import paired_to_dense, spread_table

    frame = load_frame(tmp_path)[0]
    paired = paired_to_dense(tmp_path, frame)
    cov = paired[(paired.metric == "coverage") & (paired.source == "wiki")].sort_values("set")
    assert cov["diff"].tolist() == pytest.approx([0.1, 0.2]) and set(cov.docs) == {6}
    assert (cov["ci excludes 0"] == "yes").all()
    rouge = paired[(paired.metric == "rouge1")]
    assert rouge["diff"].abs().max() < 1e-12  # identical per-document values: no difference
    spread = spread_table(frame)
    wiki = spread[(spread.method == "wanda") & (spread.source == "wiki") & (spread.metric == "coverage")].iloc[0]
    assert wiki["sets"] == 2 and wiki["range"] == pytest.approx(0.1)


def test_clean_documents_leave_out_degenerate_summaries_on_both_sides(tmp_path):
    """Eight documents; dense loops on document 0, the pruned cell on 1 and 2 (their responses repeat one phrase).
    On the five clean documents the pruned coverage is dense + 0.1 exactly; on the looping ones + 0.5, which the
    all-document pairing averages in and the clean one leaves out.  Five equal positive differences: the exact
    sign-flip p is 2 / 2**5."""
    from calibench.report.frame import load_frame
    from calibench.report.study import write_report
    from calibench.report.summarization import CLEAN_HEADING, clean_documents, paired_to_dense
    from calibench.study.store import Store

    loop = " ".join(["the cat sat"] * 6)
    fine = "the cat sat on the mat while the dog slept"

    def items(shift, loops):
        return [
            {
                "doc_id": str(i),
                "doc_hash": f"h{i}",
                "response": loop if i in loops else fine,
                "metrics": {"coverage": 0.4 + 0.01 * i + (0.5 if i in loops and shift else shift), "rouge1": 0.2},
            }
            for i in range(8)
        ]

    store = Store(tmp_path)
    for method, shift, loops in [("dense", 0.0, {0}), ("wanda", 0.1, {1, 2})]:
        got = items(shift, loops)
        rows = [{"task": "summ:xsum", "metric": m, "value": 0.5, "n": 8} for m in ("coverage", "rouge1")]
        store.record_success(_cell(method, "" if method == "dense" else "wiki", 0), rows, None, {}, 1.0,
                             {"summ:xsum": got})  # fmt: skip
    store.close()
    frame = load_frame(tmp_path)[0]
    clean = clean_documents(tmp_path, frame)
    cov = clean[clean.metric == "coverage"].iloc[0]
    assert (cov["degenerate dense"], cov["degenerate compressed"], cov["docs"]) == ("1/8", "2/8", 5)
    assert cov["diff"] == pytest.approx(0.1) and cov["p"] == pytest.approx(2 / 32)
    # coverage, rouge1 and repeat_3 (filled in from the responses): Holm multiplies the smallest p by 3
    assert set(clean.metric) == {"coverage", "rouge1", "repeat_3"} and cov["p (Holm)"] == pytest.approx(3 * 2 / 32)
    assert clean[clean.metric == "rouge1"].iloc[0]["p"] == pytest.approx(1.0)
    everything = paired_to_dense(tmp_path, frame)
    assert everything[everything.metric == "coverage"].iloc[0]["diff"] == pytest.approx((6 * 0.1 + 2 * 0.5) / 8)
    assert CLEAN_HEADING in write_report(tmp_path).markdown.read_text()
