"""``calibench study signals`` on a tiny finished study: stored values, resumption, and the report's sections."""

from __future__ import annotations

import json
import math
import sqlite3

import numpy as np
import pytest

from calibench.predict import report as R
from calibench.predict.study_signals import cell_signals, compute_study_signals, load_signals, study_cells
from conftest import assert_one_line_error, corpus_text, run

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.filterwarnings("ignore")]

SIGNALS = "reconstruction,stats,coverage"


@pytest.fixture(scope="module")
def study(tmp_path_factory, tiny_model_dir):
    """3 sources x 3 sets, wanda 50%, perplexity on a held-out file: 9 compressed cells and the dense one."""
    from calibench.study import run_study

    root = tmp_path_factory.mktemp("predict-study")
    heldout = root / "heldout.txt"
    heldout.write_text("\n\n".join(corpus_text(60, seed=7)))
    sources = []
    for seed in (0, 3):
        path = root / f"train{seed}.txt"
        path.write_text("\n\n".join(corpus_text(200, seed=seed)))
        sources.append(str(path))
    spec = root / "spec.yaml"
    spec.write_text(f"""name: tiny-signals
models: [{tiny_model_dir}]
methods:
  - name: wanda
    params: {{sparsity: 0.5}}
sources:
  - name: {sources[0]}
    sets: 3
  - name: {sources[1]}
    sets: 3
  - name: random-vocab
    sets: 3
n: [4]
seq_len: [32]
eval:
  tasks: [ppl:{heldout}]
  ppl_seq_len: 32
  ppl_max_windows: 4
""")
    out = root / "study"
    summary = run_study(spec, out, progress=False)
    assert summary.failed == 0
    return out


def test_signals_are_stored_per_cell_and_match_a_direct_computation(study, tiny_model_dir, tiny_tokenizer):
    done = compute_study_signals(study, SIGNALS, k_layers=1, heldout_windows=8)
    cells = study_cells(study)
    assert len(cells) == 9 and {c.set_index for c in cells} == {0, 1, 2}
    stored = load_signals(study)
    per_method = stored[stored.method != ""]
    assert set(per_method.signal) == {"reconstruction", "reconstruction.token"}
    assert set(stored[stored.method == ""].signal) == {
        "coverage",
        "coverage.diversity",
        "stats.mean_nll",
        "stats.token_entropy",
        "stats.distinct_share",
        "stats.ngram_diversity",
        "stats.eval_js",
    }
    assert done.computed == len(stored) == 9 * 2 + 9 * 7
    # one cell's values, recomputed directly from its set, agree exactly
    from calibench.data.calibset import CalibrationSet
    from calibench.predict import signals as S
    from calibench.study.sets import set_path
    from conftest import fresh_model

    cell = cells[4]
    probe = S.make_probe(
        fresh_model(tiny_model_dir),
        tiny_tokenizer,
        str(tiny_model_dir),
        list(cell.tasks),
        cell.seq_len,
        heldout_windows=8,
        k_layers=1,
    )
    calib = CalibrationSet.load(set_path(study, cell.set_id), tokenizer=tiny_tokenizer)
    for name, method in (("reconstruction", cell.method), ("stats.eval_js", ""), ("coverage", "")):
        row = stored[(stored.signal == name) & (stored.set_id == cell.set_id) & (stored.method == method)]
        assert len(row) == 1
        value = S.compute(name, probe, calib, cell.method_name, cell.params).value
        assert row.value.iloc[0] == pytest.approx(value, rel=1e-6), name
    settings = json.loads(per_method.settings.iloc[0])
    assert settings["k_layers"] == 1 and settings["method"] == "wanda" and settings["heldout_windows"] == 8


def test_a_rerun_computes_only_what_is_missing_or_changed(study):
    compute_study_signals(study, SIGNALS, k_layers=1, heldout_windows=8)
    again = compute_study_signals(study, SIGNALS, k_layers=1, heldout_windows=8)
    assert again.computed == 0 and again.skipped == 9 * 9
    changed = compute_study_signals(study, "reconstruction", k_layers=2, heldout_windows=8)
    assert changed.computed == 9 * 2  # other settings: recomputed and replaced, nothing duplicated
    with sqlite3.connect(study / "study.sqlite") as conn:
        assert conn.execute("SELECT COUNT(*) FROM signals").fetchone()[0] == 9 * 9
    compute_study_signals(study, "reconstruction", k_layers=1, heldout_windows=8)  # back, for the next tests


def test_report_sections_validate_signals_against_the_cells(study, tmp_path):
    from calibench.report.frame import load_frame

    compute_study_signals(study, SIGNALS, k_layers=1, heldout_windows=8)
    frame, _, _ = load_frame(study)
    found = R.sections(study, frame, tmp_path)
    assert [s.title for s in found] == [R.SIGNALS_HEADING, R.SELECTION_HEADING]
    assert [len(s.tables) for s in found] == [1, 1] and not found[0].plots
    table, chosen, plots = found[0].tables[0].frame, found[1].tables[0].frame, found[1].plots
    assert len(plots) == 1 and plots[0].name == "signals.png" and plots[0].stat().st_size > 1000
    outcome = next(o for o in table.outcome.unique())
    assert outcome.endswith("(-log ppl)") and set(table.cells) == {9}
    # the all-cells Spearman is the rank correlation of the stored values with -log ppl of the same cells
    from scipy import stats

    signals = cell_signals(study)
    ppl = frame[(frame.method != "dense") & frame.task.str.startswith("ppl:")].set_index("key")["value"]
    recon = signals[signals.signal == "reconstruction"].set_index("key")["value"]
    keys = sorted(recon.index)
    expected = stats.spearmanr(recon.loc[keys], -np.log(ppl.loc[keys])).statistic
    row = table[table.signal == "reconstruction"].iloc[0]
    assert row["spearman (all cells)"] == pytest.approx(expected)
    assert row.direction == "lower is better"
    # three folds by set index, each holding out one set of every source
    folds = chosen[chosen["held-out set index"] != "mean"]
    assert list(folds["held-out set index"]) == [0, 1, 2]
    assert set(folds["held-out cells"]) == {3} and set(folds["selection cells"]) == {6}
    assert set(folds["chosen signal"]) <= set(table.signal)
    mean = chosen[chosen["held-out set index"] == "mean"]["held-out (oriented)"].iloc[0]
    finite = [v for v in folds["held-out (oriented)"] if math.isfinite(v)]
    assert mean == pytest.approx(np.mean(finite))


def test_a_study_without_signals_has_no_predictor_sections(tmp_path):
    import pandas as pd

    from calibench.study.store import Store

    Store(tmp_path / "empty").close()
    assert R.sections(tmp_path / "empty", pd.DataFrame(columns=["method", "source", "task"]), tmp_path) == []


def test_study_signals_cli_and_its_bad_inputs(study, tmp_path, capsys):
    code, out, err = run(
        ["study", "signals", str(study), "--signals", "stats", "--k-layers", "1", "--max-windows", "8"], capsys
    )
    assert code == 0, err
    assert "signal values computed" in out and "already stored" in out
    code, _, err = run(["study", "signals", str(study), "--signals", "nosuch"], capsys)
    assert_one_line_error(code, err, "unknown signal 'nosuch'")
    code, _, err = run(["study", "signals", str(tmp_path / "missing")], capsys)
    assert_one_line_error(code, err, "has no study.sqlite")
    assert not (tmp_path / "missing").exists()
    code, _, err = run(["study", "signals", str(study), "--k-layers", "0"], capsys)
    assert_one_line_error(code, err, "--k-layers must be at least 1")


def test_recommend_reads_a_signals_validation_from_the_study(study, tiny_model_dir):
    """What `recommend --study` puts on the card is the report's own row for that model, method and outcome."""
    from calibench.predict.recommend import _sign_for, validation_from_study
    from calibench.predict.signals import get_signal
    from calibench.report.frame import load_frame

    compute_study_signals(study, SIGNALS, k_layers=1, heldout_windows=8)
    cell = study_cells(study)[0]
    objective = cell.tasks[0]
    found = validation_from_study(study, str(tiny_model_dir), "wanda", {"sparsity": 0.5}, objective)
    frame, _, _ = load_frame(study)
    table = R.sections(study, frame, None)[0].tables[0].frame
    for name, entry in found.items():
        row = table[table.signal == name].iloc[0]
        assert entry["spearman"] == pytest.approx(row["spearman (all cells)"], nan_ok=True)
        assert entry["held_out"] == pytest.approx(row["held-out (oriented)"], nan_ok=True)
        assert entry["cells"] == 9 and entry["method_label"] == cell.method
    # a signal without a fixed direction takes the sign the study measured
    learned = get_signal("stats.token_entropy")
    expected = -1 if found[learned.name]["spearman"] < 0 else 1
    assert _sign_for(learned, found) == expected
    assert validation_from_study(study, str(tiny_model_dir), "gptq", {}, objective) == {}
    assert validation_from_study(study, str(tiny_model_dir), "wanda", {"sparsity": 0.3}, objective) == {}
