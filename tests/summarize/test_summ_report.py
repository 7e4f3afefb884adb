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
