"""``act:outliers`` in a study: each cell's set seen by the dense model, beside its results, per model."""

from __future__ import annotations

import json

import pytest

from calibench.study import load_spec, run_study
from conftest import assert_one_line_error, corpus_text, run, tiny_llama_config

pytestmark = [pytest.mark.filterwarnings("ignore"), pytest.mark.usefixtures("one_thread")]


@pytest.fixture(scope="module")
def second_model_dir(tmp_path_factory, tiny_tokenizer):
    import torch
    from transformers import LlamaForCausalLM

    path = tmp_path_factory.mktemp("tiny-llama-study-b")
    torch.manual_seed(5)
    LlamaForCausalLM(tiny_llama_config(tiny_tokenizer)).save_pretrained(path)
    tiny_tokenizer.save_pretrained(path)
    return path


def _spec(path, models, train, heldout, tasks):
    path.write_text(
        json.dumps(
            {
                "name": "act",
                "models": [str(m) for m in models],
                "methods": [{"name": "wanda", "params": {"sparsity": 0.5}}],
                "sources": [{"name": str(train), "sets": 2}, {"name": "random-vocab", "sets": 1}],
                "n": [4],
                "seq_len": [32],
                "eval": {"tasks": tasks, "ppl_seq_len": 32, "ppl_max_windows": 3},
            }
        )
    )
    return path


@pytest.fixture(scope="module")
def texts(tmp_path_factory):
    root = tmp_path_factory.mktemp("act-texts")
    train, heldout = root / "train.txt", root / "heldout.txt"
    train.write_text("\n\n".join(corpus_text(200, seed=0)))
    heldout.write_text("\n\n".join(corpus_text(60, seed=7)))
    return train, heldout


def test_act_outliers_rows_equal_a_direct_measurement_and_reach_the_report(
    tmp_path, tiny_model_dir, second_model_dir, texts
):
    from calibench.data.builders import build_set
    from calibench.data.calibset import CalibrationSet
    from calibench.inspect import activation_stats
    from calibench.inspect.quant_error import activation_quant_error, static_scales
    from calibench.models import load_model, load_tokenizer
    from calibench.report.frame import load_frame
    from calibench.report.study import write_report
    from calibench.study.sets import SETS_DIR

    train, heldout = texts
    spec = load_spec(
        _spec(
            tmp_path / "s.json", [tiny_model_dir, second_model_dir], train, heldout, [f"ppl:{heldout}", "act:outliers"]
        )
    )
    out = tmp_path / "study"
    run_study(spec, out)
    frame, failures, _ = load_frame(out)
    assert not failures
    act = frame[frame.task == "act:outliers"]
    assert set(act.method) == {"wanda-50%"}  # a dense cell has no calibration set to measure
    assert len(act[act.metric == "int8_static_error"]) == 2 * 3  # per model: 3 sets

    # one cell against a direct measurement on a freshly loaded dense model
    row = act[(act.model == str(tiny_model_dir)) & (act.source == "random-vocab")]
    values = dict(zip(row.metric, row.value))
    tokenizer = load_tokenizer(str(tiny_model_dir))
    set_dirs = [p for p in (out / SETS_DIR).iterdir() if p.is_dir()]
    calib = next(
        s
        for s in (CalibrationSet.load(p) for p in set_dirs)
        if s.manifest.source.name == "random-vocab" and s.tokenizer_identity.vocab_size == len(tokenizer)
    )
    model = load_model(str(tiny_model_dir), dtype="float32", device="cpu")
    stats = activation_stats(model, calib)
    windows = build_set(str(heldout), tokenizer=tokenizer, n=calib.n, seq_len=calib.seq_len, seed=0)
    quant = activation_quant_error(model, windows, {"set": static_scales(stats)})
    assert values["int8_static_error"] == pytest.approx(quant.total_static["set"], rel=1e-6)
    assert values["max_abs_linear"] == pytest.approx(max(s.max_abs for s in stats.sites if s.kind == "linear_input"))
    assert values["outlier_features"] == len(stats.outlier_features)

    report = write_report(out)
    text = report.markdown.read_text()
    assert "Activation statistics of each source's sets" in text
    assert "Perplexity spread across calibration sets, per model and method" in text
    names = {p.name for p in report.plots}
    assert "activation_vs_perplexity.png" in names
    # two models: every per-source plot is drawn once per model, never both in one panel
    assert {
        f"perplexity_by_source-{tiny_model_dir.name}.png",
        f"perplexity_by_source-{second_model_dir.name}.png",
    } <= names


def test_unknown_or_lonely_activation_tasks_are_refused(tmp_path, tiny_model_dir, texts, capsys):
    train, heldout = texts
    for tasks, fragment in (
        (["ppl:wiki", "act:outlier"], "unknown activation task 'act:outlier'"),
        (["act:outliers"], "add at least one other task"),
    ):
        path = _spec(tmp_path / "s.json", [tiny_model_dir], train, heldout, tasks)
        code, _, err = run(["study", "run", str(path), "--out", str(tmp_path / "out")], capsys)
        assert_one_line_error(code, err, fragment)
        assert not (tmp_path / "out").exists()
