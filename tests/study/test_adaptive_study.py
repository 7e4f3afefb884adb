"""Adaptive evaluation in a real (tiny) study: blocks, stopping, resuming, the stored state, and the report."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import corpus_text

pytestmark = pytest.mark.usefixtures("one_thread")


def write_spec(tmp_path, model_dir, adaptive: str, sources: str | None = None):
    train, heldout = tmp_path / "train.txt", tmp_path / "heldout.txt"
    train.write_text("\n\n".join(corpus_text(200, seed=0)))
    heldout.write_text("\n\n".join(corpus_text(150, seed=7)))
    sources = (
        sources
        or f"""  - name: {train}
    sets: 2
  - name: random-vocab
    sets: 2"""
    )
    spec = tmp_path / "s.yaml"
    spec.write_text(f"""name: tiny
models: [{model_dir}]
methods:
  - name: wanda
    params: {{sparsity: 0.5}}
sources:
{sources}
n: [4]
seq_len: [32]
eval:
  tasks: [ppl:{heldout}]
  ppl_seq_len: 32
  adaptive: {adaptive}
""")
    return spec, f"ppl:{heldout}"


def stored(out, task):
    from calibench.study.store import Store

    store = Store(out)
    try:
        return store.samples(task), store.meta(), store.rows()
    finally:
        store.close()


def test_blocks_until_the_cap_then_a_raised_cap_resumes(tmp_path, tiny_model_dir):
    from calibench.study import run_study
    from calibench.study.cells import POSITION

    # alpha tiny: nothing is decided, so every comparison runs to the cap
    spec, task = write_spec(tmp_path, tiny_model_dir, "{block: 3, cap: 7, alpha: 1.0e-9}")
    out = tmp_path / "out"
    run_study(spec, out, progress=False)
    samples, meta, rows = stored(out, task)
    compressed = {key: items for (key, _), items in samples.items() if len(items) != 3}
    assert len(compressed) == 4  # two sources x two sets scored past the first block; dense stops at it
    windows = []
    for items in compressed.values():
        positions = sorted(int(i[POSITION]) for i in items.values())
        assert positions == list(range(7))  # blocks 0-2, 3-5 and 6 (the cap)
        windows.append({int(i[POSITION]): int(i["window"]) for i in items.values()})
    # one seeded shuffle of the windows, the same for every cell (so they pair), not the text order
    assert all(w == windows[0] for w in windows) and len(set(windows[0].values())) == 7
    assert list(windows[0].values()) != list(range(7))
    (state,) = meta["adaptive"]
    assert state["state"] == "futile" and state["items"] == 7 and "cap of 7" in state["reason"]
    assert state["scope"] == "sources" and state["sets"] == "2+2"
    # each cell's row is recomputed from all its items
    for row in rows:
        if row["key"] in compressed:
            nll = np.array([i["nll"] for i in compressed[row["key"]].values()])
            assert row["n"] == 7 and row["value"] == pytest.approx(float(np.exp(nll.mean())), rel=1e-9)
    assert not (out / "models").exists()  # the weights cache is gone once nothing runs

    # raising the cap continues from item 7: the cells keep their keys, the first items are not rescored
    before = {key: dict(items) for key, items in compressed.items()}
    spec.write_text(spec.read_text().replace("cap: 7", "cap: 10"))
    run_study(spec, out, progress=False)
    samples, meta, _ = stored(out, task)
    for key, items in before.items():
        now = samples[(key, task)]
        assert len(now) == 10 and all(now[i] == item for i, item in items.items())
    assert meta["adaptive"][0]["items"] == 10


def test_blocks_equal_a_fixed_run_over_the_same_items(tmp_path, tiny_model_dir):
    """Cached weights and later blocks give the very numbers one fixed run of the first items gives."""
    from calibench.study import run_study

    spec, task = write_spec(tmp_path, tiny_model_dir, "{block: 2, cap: 6, alpha: 1.0e-9}")
    run_study(spec, tmp_path / "adaptive", progress=False)
    fixed = spec.read_text().replace("  adaptive: {block: 2, cap: 6, alpha: 1.0e-9}\n", "")  # every window
    spec.write_text(fixed)
    run_study(spec, tmp_path / "fixed", progress=False)

    def by_cell(out):
        samples, _, rows = stored(out, task)
        names = {r["key"]: (r["config"]["method"], r["config"]["source"], r["config"]["set_index"]) for r in rows}
        return {names[key]: {i: v["nll"] for i, v in items.items()} for (key, _), items in samples.items()}

    a, b = by_cell(tmp_path / "adaptive"), by_cell(tmp_path / "fixed")
    compressed = [name for name in b if name[0] != "dense"]
    assert len(compressed) == 4 and len(a[("dense", "", 0)]) == 2  # dense scores the first block only
    for name in compressed:  # bit-identical NLL for each window the blocks scored (window ids key both)
        assert len(a[name]) == 6 and a[name] == {window: b[name][window] for window in a[name]}


def test_a_clear_difference_is_decided_early_and_the_report_says_so(tmp_path, tiny_model_dir):
    from calibench.report.study import write_report
    from calibench.study import run_study

    spec, task = write_spec(tmp_path, tiny_model_dir, "{block: 4, cap: 40}")
    out = tmp_path / "out"
    run_study(spec, out, progress=False)
    _, meta, _ = stored(out, task)
    (state,) = meta["adaptive"]
    assert state["state"] in {"decided", "futile"} and state["items"] <= 40
    report = write_report(out)
    md = report.markdown.read_text()
    assert "Adaptive evaluation" in md and state["reason"].split(" (")[0][:30] in md
    assert json.dumps(state)  # plain data
