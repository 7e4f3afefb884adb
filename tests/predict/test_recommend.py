"""``calibench recommend`` end to end on the tiny model: ranking, full runs, the choice, the card, and bad input."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from calibench.core.errors import CalibenchError
from calibench.data.calibset import CalibrationSet
from calibench.predict.recommend import DEFAULT_SIGNAL, eval_estimate, objective_of, parse_candidates, recommend
from conftest import assert_one_line_error, corpus_text, fresh_model, run

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.filterwarnings("ignore")]


@pytest.fixture(scope="module")
def texts(tmp_path_factory):
    root = tmp_path_factory.mktemp("recommend")
    paths = {}
    for name, count, seed in (("prose", 200, 0), ("other", 200, 3), ("heldout", 60, 7)):
        paths[name] = root / f"{name}.txt"
        paths[name].write_text("\n\n".join(corpus_text(count, seed=seed)))
    return paths


def _options(texts, **extra):
    return {
        "candidates": f"{texts['prose']},random-vocab",
        "n": 4,
        "seq_len": 32,
        "tasks": f"ppl:{texts['heldout']}",
        "ppl_seq_len": 32,
        "ppl_max_windows": 4,
        "k_layers": 1,
        "params": {"sparsity": 0.5},
        **extra,
    }


@pytest.fixture(scope="module")
def recommended(tmp_path_factory, tiny_model_dir, texts):
    out = tmp_path_factory.mktemp("rec") / "choice"
    result = recommend(str(tiny_model_dir), "wanda", budget=30, out=out, **_options(texts))
    return result, out


def test_both_candidates_are_ranked_evaluated_and_the_best_full_result_is_chosen(recommended, texts):
    result, _ = recommended
    assert [c.rank for c in result.candidates] == [1, 2]
    assert result.signal == DEFAULT_SIGNAL and result.sign == -1  # no --signal, no --study: the default's fixed sign
    values = [c.signal_value for c in result.candidates]
    assert values == sorted(values) and all(math.isfinite(v) for v in values)  # lower error ranks first
    assert len(result.evaluated) == 2
    best = max(result.evaluated, key=lambda c: c.full.objective)
    assert result.chosen is best
    task = f"ppl:{texts['heldout']}"
    assert result.objective == task
    for c in result.evaluated:
        assert c.full.objective == pytest.approx(-math.log(c.full.metrics[task]))


def test_the_full_result_is_what_compress_and_evaluate_give(recommended, tiny_model_dir, tiny_tokenizer, texts):
    from calibench.compress import compress
    from calibench.evaluation import evaluate
    from calibench.study.runner import quiet_libraries

    result, _ = recommended
    model = fresh_model(tiny_model_dir)
    with quiet_libraries():
        compress(model, result.chosen.calib, "wanda", tokenizer=tiny_tokenizer, sparsity=0.5)
    task = f"ppl:{texts['heldout']}"
    again = evaluate(model, task, tokenizer=tiny_tokenizer, seq_len=32, max_windows=4)
    assert again.rows[0].value == pytest.approx(result.chosen.full.metrics[task], rel=1e-5)


def test_the_paired_comparison_is_the_log_perplexity_gap(recommended, texts):
    result, _ = recommended
    task = f"ppl:{texts['heldout']}"
    best, runner = sorted(result.evaluated, key=lambda c: -c.full.objective)
    comparison = result.comparison
    assert comparison["best"] == best.label and comparison["runner_up"] == runner.label and comparison["items"] == 4
    # every window predicts the same number of tokens: mean NLL difference = log ppl difference
    gap = math.log(runner.full.metrics[task]) - math.log(best.full.metrics[task])
    assert comparison["difference"] == pytest.approx(gap, rel=1e-6) and gap >= 0
    assert comparison["ci"][0] <= comparison["difference"] <= comparison["ci"][1]


def test_the_output_holds_the_chosen_set_and_a_card(recommended, tiny_tokenizer):
    result, out = recommended
    saved = CalibrationSet.load(out / "set", tokenizer=tiny_tokenizer)
    assert saved.set_id == result.chosen.calib.set_id
    np.testing.assert_array_equal(saved.input_ids, result.chosen.calib.input_ids)
    card = json.loads((out / "card.json").read_text())
    assert card["chosen"]["set_id"] == saved.set_id
    assert [r["candidate"] for r in card["ranking"]] == [c.label for c in result.candidates]
    assert all(r["evaluated"] for r in card["ranking"])
    cost = card["cost"]
    assert len(cost["full_runs"]) == 2 and cost["total_s"] <= cost["budget_s"]
    assert cost["estimate"]["layers"] == 2 and cost["estimate"]["k_layers"] == 1 and cost["estimate"]["full_s"] > 0
    assert cost["full_s"] == pytest.approx(sum(r["seconds"] for r in cost["full_runs"]), abs=0.01)
    text = (out / "card.md").read_text()
    for fragment in (
        "Chosen:",
        "## Why",
        "## How sure",
        "## What it cost",
        "paired bootstrap 95% CI",
        "no validation for this method",
    ):
        assert fragment in text, fragment
    assert sorted(p.name for p in out.iterdir()) == ["card.json", "card.md", "set"]


def test_top_one_evaluates_only_the_best_ranked(tmp_path, tiny_model_dir, texts):
    result = recommend(str(tiny_model_dir), "wanda", budget=30, top=1, **_options(texts))
    assert [c.full is not None for c in result.candidates] == [True, False]
    assert result.chosen is result.candidates[0] and result.comparison is None
    assert any("only one candidate" in note for note in result.notes)
    assert result.out is None


def test_eval_estimate_scales_each_task_to_its_full_item_count():
    from calibench.evaluation.results import TaskRecord

    records = [
        TaskRecord(task="ppl:x", kind="perplexity", n_total=40, n_evaluated=8, seconds=2.0),
        TaskRecord(task="arc", kind="lm_eval", n_total=100, n_evaluated=8, seconds=1.0),
        TaskRecord(task="gone", kind="lm_eval", status="skipped", seconds=5.0),
    ]
    assert eval_estimate(records, limit=None, max_windows=None) == pytest.approx(2.0 * 5 + 1.0 * 100 / 8)
    assert eval_estimate(records, limit=16, max_windows=20) == pytest.approx(2.0 * 20 / 8 + 1.0 * 16 / 8)


def test_candidate_and_objective_checks():
    assert parse_candidates(" wiki , code ") == ["wiki", "code"]
    with pytest.raises(CalibenchError, match="given twice"):
        parse_candidates("wiki,wiki")
    assert objective_of(["ppl:wiki", "arc_easy"]) == "average acc"
    assert objective_of(["ppl:wiki", "ppl:code"]) == "ppl:wiki"
    assert objective_of(["ppl:wiki", "ppl:code"], "ppl:code") == "ppl:code"
    with pytest.raises(CalibenchError, match="not among the tasks"):
        objective_of(["ppl:wiki"], "average acc")


@pytest.mark.parametrize(
    "extra,fragments",
    [
        (
            ["--budget", "0.0001"],
            ["budget 0.0001 min is too small", "one full evaluation is estimated at", "give at least --budget"],
        ),
        (["--budget", "5", "--candidates", "wikki"], ["unknown candidate 'wikki'", "known candidates are", "code"]),
        (["--budget", "5", "--candidates", " , "], ["no candidates given"]),
        (["--budget", "0"], ["--budget must be a positive number of minutes"]),
        (["--budget", "5", "--signal", "nope"], ["unknown signal 'nope'"]),
        (["--budget", "5", "--params", "sparsity"], ["is not KEY=VALUE"]),
        (["--budget", "5", "--signal", "stats.token_entropy"], ["has no known direction", "--study"]),
        (["--budget", "5", "--params", "bits=4"], ["wanda does not use bits"]),
    ],
    ids=[
        "budget-too-small",
        "unknown-candidate",
        "empty-candidates",
        "budget-zero",
        "unknown-signal",
        "bad-params",
        "learned-sign-without-study",
        "foreign-param",
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, tiny_model_dir, texts, capsys, extra, fragments):
    out = tmp_path / "choice"
    args = [
        "recommend",
        "--model",
        str(tiny_model_dir),
        "--method",
        "wanda",
        "--candidates",
        f"{texts['prose']},random-vocab",
        "--n",
        "4",
        "--seq-len",
        "32",
        "--tasks",
        f"ppl:{texts['heldout']}",
        "--ppl-seq-len",
        "32",
        "--max-windows",
        "4",
        "--k-layers",
        "1",
        "-o",
        str(out),
    ]
    if "--candidates" in extra:
        at = args.index("--candidates")
        del args[at : at + 2]
    code, _, err = run([*args, *extra], capsys)
    assert_one_line_error(code, err, *fragments)
    assert not out.exists() and not list(tmp_path.glob(".choice*"))


def test_an_existing_output_is_refused_before_any_work(tmp_path, tiny_model_dir, texts, capsys):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "mine.txt").write_text("keep")
    code, _, err = run(
        [
            "recommend",
            "--model",
            str(tiny_model_dir),
            "--method",
            "wanda",
            "--candidates",
            str(texts["prose"]),
            "--budget",
            "5",
            "--tasks",
            f"ppl:{texts['heldout']}",
            "-o",
            str(out),
        ],
        capsys,
    )
    assert_one_line_error(code, err, "already exists")
    assert [p.name for p in out.iterdir()] == ["mine.txt"]


def test_the_cli_writes_the_card(tmp_path, tiny_model_dir, texts, capsys):
    out = tmp_path / "cli-choice"
    code, stdout, err = run(
        [
            "recommend",
            "--model",
            str(tiny_model_dir),
            "--method",
            "wanda",
            "--params",
            "sparsity=0.5",
            "--candidates",
            str(texts["prose"]),
            "--n",
            "4",
            "--seq-len",
            "32",
            "--tasks",
            f"ppl:{texts['heldout']}",
            "--ppl-seq-len",
            "32",
            "--max-windows",
            "4",
            "--k-layers",
            "1",
            "--budget",
            "30",
            "-o",
            str(out),
        ],
        capsys,
    )
    assert code == 0, err
    assert "chosen: " in stdout and "card: " in stdout
    assert json.loads((out / "card.json").read_text())["settings"]["params"] == {"sparsity": 0.5}


@pytest.mark.parametrize(
    "ci, p, resolved, verdict",
    [
        ([0.01, 0.03], 0.01, True, "resolved: the CI excludes zero and p < 0.05"),
        ([0.001, 0.034], 0.066, False, "borderline: the CI excludes zero but p >= 0.05"),
        ([-0.02, 0.03], 0.4, False, "not resolved: the CI includes zero"),
    ],
)
def test_the_card_calls_a_difference_resolved_only_when_the_ci_and_the_p_value_agree(ci, p, resolved, verdict):
    from calibench.predict.card import _confidence

    comparison = {
        "best": "wiki",
        "runner_up": "wiki#1",
        "quantity": "log-ppl gain",
        "difference": sum(ci) / 2,
        "ci": ci,
        "p": p,
        "items": 32,
        "resolved": resolved,
    }
    lines = _confidence({"validation": None, "comparison": comparison})
    assert verdict in lines[1] and "no validation for this method" in lines[0]


def test_a_recorded_validation_is_claimed_only_for_the_model_method_parameters_and_objective_it_measured():
    from calibench.predict.recommend import DEFAULT_SIGNAL, VALIDATED, known_validation

    entry = VALIDATED["smollm2-135m"]["gptq"]
    found = known_validation("smollm2-135m", "gptq", entry["params"], "ppl:wiki", DEFAULT_SIGNAL)
    assert found is entry["signals"][DEFAULT_SIGNAL] and found["ci"][0] <= found["spearman"] <= found["ci"][1]
    assert known_validation("smollm2-135m", "gptq", {"bits": 8, "group_size": 64}, "ppl:wiki", DEFAULT_SIGNAL) is None
    assert known_validation("smollm2-135m", "gptq", entry["params"], "average acc", DEFAULT_SIGNAL) is None
    assert known_validation("gemma3-270m", "gptq", entry["params"], "ppl:wiki", DEFAULT_SIGNAL) is None
    assert known_validation("smollm2-135m", "sparsegpt", {"sparsity": 0.5}, "ppl:wiki", DEFAULT_SIGNAL) is None
    # every recorded sign agrees with the signal's own fixed direction, where it has one
    from calibench.predict.signals import get_signal

    for methods in VALIDATED.values():
        for method in methods.values():
            for name, value in method["signals"].items():
                assert get_signal(name).sign in (0, value["sign"]) and value["sign"] * value["spearman"] > 0
