"""Parity with lm-evaluation-harness: any task name, few-shot and chat prompts, per-item samples, its output layout.

The reference is always lm-eval itself: ``simple_evaluate`` on the task its
TaskManager builds from the YAML, with the hub download answered by the same
rows.  What calibench sends to the model (every loglikelihood or generation
request) is recorded on both sides and compared exactly.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
from pathlib import Path

import pytest
import torch

from calibench.core.errors import CalibenchError, UnknownNameError
from conftest import copa_rows

pytestmark = pytest.mark.usefixtures("one_thread")

CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}</s>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    return model, AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.fixture
def copa_splits():
    return {"train": copa_rows(8, offset=100), "validation": copa_rows(6)}


@pytest.fixture
def fake_copa(monkeypatch, copa_splits):
    """Serve copa offline from synthetic rows; ``fake_copa(splits)`` chooses which splits the mirror has."""
    from calibench.evaluation import lmeval
    from calibench.evaluation.mirrors import Mirror

    def serve(names=("train", "validation")):
        splits = {k: copa_splits[k] for k in names}
        monkeypatch.setattr(
            lmeval, "build_mirror", lambda task, root=None: Mirror("copa", splits, {k: "synthetic" for k in splits})
        )

    serve()
    return serve


@pytest.fixture
def recorded(monkeypatch):
    """Every request any HFLM receives, in order: (request type, arguments)."""
    from lm_eval.models.huggingface import HFLM

    log: list[tuple[str, tuple]] = []
    for kind in ("loglikelihood", "generate_until"):
        original = getattr(HFLM, kind)

        def wrapper(self, requests, disable_tqdm=False, _kind=kind, _original=original):
            log.extend((_kind, copy.deepcopy(r.args)) for r in requests)
            return _original(self, requests, disable_tqdm=disable_tqdm)

        monkeypatch.setattr(HFLM, kind, wrapper)
    return log


def lm_eval_reference(monkeypatch, model, tokenizer, task, folder, splits, **options):
    """lm-eval's own run: its YAML through its TaskManager, the hub download answered by ``splits``."""
    import datasets
    import lm_eval.tasks
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    monkeypatch.setattr(datasets, "load_dataset", lambda path=None, name=None, **kw: datasets.DatasetDict(splits))
    manager = TaskManager(include_defaults=False, include_path=[str(Path(lm_eval.tasks.__file__).parent / folder)])
    lm = HFLM(pretrained=model, tokenizer=copy.deepcopy(tokenizer), batch_size=options.pop("batch_size", 2))
    return simple_evaluate(model=lm, tasks=[task], task_manager=manager, bootstrap_iters=1000, **options)


# -- any lm-eval task by name ---------------------------------------------------------------------


@pytest.fixture
def small_index(monkeypatch):
    """lm-eval's own TaskIndex over a few of its folders (the full one takes 10-40 s), kept in memory only."""
    from lm_eval.tasks._index import TaskIndex

    from calibench.evaluation import lmeval_index

    builds = []

    def build(root):
        builds.append(root)
        folders = [
            root / f
            for f in (
                "arc",
                "gsm8k",
                "mmlu/default",
                "super_glue/copa",
                "arabic_leaderboard_complete/arabic_leaderboard_arabic_mt_copa",
            )
        ]
        return lmeval_index.entries_from_raw(TaskIndex.build(folders), root)

    monkeypatch.setattr(lmeval_index, "_memory", {})
    monkeypatch.setattr(lmeval_index, "_build", build)
    monkeypatch.setattr(lmeval_index, "_read_cache", lambda root: None)
    monkeypatch.setattr(lmeval_index, "_write_cache", lambda root, index: None)
    return builds


def test_any_lm_eval_name_resolves_through_its_index(small_index):
    from calibench.evaluation import parse_tasks

    requests = {r.name: r.lm_eval for r in parse_tasks("gsm8k_cot,mmlu,ai2_arc,copa")}
    assert list(requests) == ["gsm8k_cot", "mmlu", "arc_challenge", "arc_easy", "copa"]
    assert (requests["gsm8k_cot"].kind, requests["gsm8k_cot"].lm_eval_dirs, requests["gsm8k_cot"].registered) == (
        "task",
        ("gsm8k",),
        False,
    )
    assert requests["mmlu"].kind == "group" and requests["mmlu"].lm_eval_dirs == ("mmlu/default",)
    assert (
        requests["arc_easy"].registered and requests["arc_easy"].mirror == "arc_easy"
    )  # a tag's members keep the registry's
    assert len(small_index) == 1  # indexed once, and only for names outside the registry


def test_unknown_names_fail_fast_with_a_suggestion(small_index):
    from calibench.evaluation import parse_tasks

    with pytest.raises(UnknownNameError) as info:
        parse_tasks("nosuch_task", offline=True)
    message = str(info.value)
    assert message.startswith("unknown task 'nosuch_task'") and "\n" not in message
    assert "tasks with offline data:" in message and "gsm8k" in message and "storycloze" not in message
    assert small_index == []  # a name written in none of lm-eval's configs needs no index

    with pytest.raises(
        UnknownNameError
    ) as info:  # written in lm-eval's configs (inside a longer name): the index decides
        parse_tasks("mmlu_abstract_algebr", offline=False)
    assert str(info.value).startswith("unknown task 'mmlu_abstract_algebr' (did you mean 'mmlu_abstract_algebra'?)")
    assert "any lm-eval task name" in str(info.value) and len(small_index) == 1


def test_offline_lm_eval_task_without_data_is_skipped_and_others_run_from_mirrored_datasets(
    small_index, tiny_model_dir, fake_copa
):
    from calibench.evaluation import evaluate

    result = evaluate(str(tiny_model_dir), "mmlu_abstract_algebra,mmlu,copa", offline=True, limit=3, batch_size=2)
    skipped = {r.task: r.reason for r in result.skipped}
    assert skipped == {
        "mmlu_abstract_algebra": (
            "no offline data for mmlu_abstract_algebra (offline on request (--offline)); run it online"
        ),
        "mmlu": "no offline data for group mmlu (offline on request (--offline)); run it online",
    }
    assert [r.task for r in result.rows] == ["copa"]


def test_an_lm_eval_group_runs_online_as_lm_eval_runs_it(small_index, tiny, monkeypatch):
    """A group (its subtasks and lm-eval's aggregate), from the hub (answered here by COPA-shaped rows)."""
    import datasets

    from calibench.core import connectivity
    from calibench.evaluation import evaluate

    for name in connectivity.OFFLINE_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(connectivity, "_probe", lambda endpoint, timeout: None)
    asked = []

    def hub(path=None, name=None, **kwargs):
        asked.append((path, name))
        return datasets.DatasetDict({"validation": copa_rows(4, offset=50), "test": copa_rows(5)})

    monkeypatch.setattr(datasets, "load_dataset", hub)
    model, tok = tiny
    group = "arabic_leaderboard_arabic_mt_copa"
    result = evaluate(model, group, tokenizer=tok, limit=3, batch_size=2, log_samples=True)
    record = result.record(group)
    assert asked == [("OALL/AlGhafa-Arabic-LLM-Benchmark-Translated", "copa_ext_ar")]
    assert (record.mode, record.split, record.n_total, record.n_evaluated) == ("online", "test", 5, 3)
    assert record.details["subtasks"] == ["arabic_mt_copa"] and record.details["lm_eval_group"] is True
    rows = {(r.task, r.metric): r for r in result.rows}
    assert set(rows) == {(t, m) for t in (group, "arabic_mt_copa") for m in ("acc", "acc_norm")}
    assert rows[(group, "acc")].value == rows[("arabic_mt_copa", "acc")].value and rows[(group, "acc")].n == 3
    assert len(result.samples["arabic_mt_copa"]) == 3


@pytest.mark.integration
def test_lm_eval_tasks_on_a_mirrored_dataset_run_offline(small_index, offline_assets, tiny):
    """gsm8k_cot is not calibench's, but loads openai/gsm8k: served from the gsm8k mirror, 8-shot from its YAML."""
    from calibench.evaluation import evaluate

    model, tok = tiny
    result = evaluate(model, "gsm8k_cot", tokenizer=tok, offline=True, limit=2, num_fewshot=None,
                      gen_kwargs={"max_gen_toks": 4}, log_samples=True)  # fmt: skip
    record = result.record("gsm8k_cot")
    assert (record.mode, record.split, record.num_fewshot, record.n_total) == ("offline", "test", 8, 1319)
    assert {r.metric for r in result.rows} == {"exact_match,strict-match", "exact_match,flexible-extract"}
    assert len(result.samples["gsm8k_cot"]) == 2


# -- few-shot and chat templates ---------------------------------------------------------------


@pytest.mark.parametrize(
    "shots, chat, multiturn", [(2, False, None), (0, True, None), (3, True, None), (2, True, False)]
)
def test_fewshot_and_chat_requests_equal_lm_eval_own(shots, chat, multiturn, tiny, fake_copa, copa_splits, recorded,
                                                     monkeypatch):  # fmt: skip
    from calibench.evaluation import evaluate

    model, tok = tiny
    tok = copy.deepcopy(tok)
    tok.chat_template = CHAT_TEMPLATE
    ours = evaluate(model, "copa", tokenizer=tok, offline=True, limit=4, batch_size=2, num_fewshot=shots,
                    apply_chat_template=chat, fewshot_as_multiturn=multiturn, log_samples=True)  # fmt: skip
    sent, recorded[:] = list(recorded), []
    reference = lm_eval_reference(
        monkeypatch,
        model,
        tok,
        "copa",
        "super_glue/copa",
        copa_splits,
        limit=4,
        num_fewshot=shots,
        apply_chat_template=chat,
        fewshot_as_multiturn=bool(chat) if multiturn is None else multiturn,
        log_samples=True,
    )
    assert sent == recorded and len(sent) == 8  # 4 items x 2 choices, identical contexts and continuations
    contexts = [args[0] for _, args in sent]
    assert all(c.startswith("<|user|>") for c in contexts) == chat
    if shots:  # the examples come from the train rows, as online
        premises = [r["premise"].strip()[:-1] for r in copa_splits["train"]]
        assert all(sum(p in c for p in premises) == shots for c in contexts)
    assert ours.value("copa", "acc") == reference["results"]["copa"]["acc,none"]
    record = ours.record("copa")
    assert record.num_fewshot == shots == reference["n-shot"]["copa"]
    assert (ours.settings["num_fewshot"], ours.settings["apply_chat_template"]) == (shots, chat)
    assert ours.settings["fewshot_as_multiturn"] == (bool(chat) if multiturn is None else multiturn)
    ours_items = [(s["doc_hash"], s["prompt_hash"], s["loglikelihoods"], s["metrics"]) for s in ours.samples["copa"]]
    ref_items = [(s["doc_hash"], s["prompt_hash"], [r[0][0] for r in s["resps"]], {"acc": s["acc"]})
                 for s in reference["samples"]["copa"]]  # fmt: skip
    assert ours_items == ref_items


def test_offline_fewshot_from_a_missing_split_is_skipped_with_the_reason(tiny, fake_copa):
    from calibench.evaluation import evaluate

    fake_copa(("validation",))  # lm-eval's copa draws its shots from train
    model, tok = tiny
    result = evaluate(model, "copa", tokenizer=tok, offline=True, num_fewshot=3)
    (record,) = result.skipped
    assert record.reason == ("3-shot copa draws its examples from the train split, which the offline data lacks "
                             "(it has validation); run it online or with --num-fewshot 0")  # fmt: skip
    assert evaluate(model, "copa", tokenizer=tok, offline=True, limit=2).record("copa").status == "ok"  # 0-shot runs


def test_option_errors_come_before_the_model_loads(tiny_model_dir, tiny, monkeypatch):
    from calibench.evaluation import api, backends, evaluate

    monkeypatch.setattr(api, "_load_model", lambda *a, **k: pytest.fail("the model was loaded"))
    with pytest.raises(CalibenchError, match="--fewshot-as-multiturn needs --apply-chat-template"):
        evaluate(str(tiny_model_dir), "copa", fewshot_as_multiturn=True)
    with pytest.raises(CalibenchError, match="--num-fewshot must be 0 or more"):
        evaluate(str(tiny_model_dir), "copa", num_fewshot=-1)
    with pytest.raises(CalibenchError, match=r"^--backend vllm needs vLLM: pip install vllm \(GPU machines\)$"):
        evaluate(str(tiny_model_dir), "copa", backend="vllm")
    with pytest.raises(UnknownNameError, match="unknown --backend 'vlm'"):
        evaluate(str(tiny_model_dir), "copa", backend="vlm")
    monkeypatch.setattr(backends, "_importable", lambda module: True)  # as on a GPU machine with vLLM
    model, tok = tiny
    with pytest.raises(CalibenchError, match="save the in-memory model first"):
        evaluate(model, "copa", tokenizer=tok, backend="vllm")
    with pytest.raises(CalibenchError, match="--gen-kwargs 'max_gen_toks' is not key=value"):
        evaluate(str(tiny_model_dir), "copa", gen_kwargs="max_gen_toks")


def test_chat_template_is_checked_before_the_model_loads(tiny_model_dir, fake_copa, monkeypatch):
    from calibench.evaluation import api, evaluate

    monkeypatch.setattr(api, "_load_model", lambda *a, **k: pytest.fail("the model was loaded"))
    with pytest.raises(CalibenchError, match="has no chat template"):
        evaluate(str(tiny_model_dir), "copa", offline=True, apply_chat_template=True)


# -- per-item samples -------------------------------------------------------------------------


def test_log_samples_per_item_results_average_to_the_rows(tiny, fake_copa, copa_splits, heldout_file):
    from calibench.evaluation import EvalResult, evaluate

    model, tok = tiny
    tasks = f"copa,ppl:{heldout_file}"
    result = evaluate(model, tasks, tokenizer=tok, offline=True, seq_len=32, batch_size=2, log_samples=True)
    items = result.samples["copa"]
    assert [s["doc_id"] for s in items] == list(range(6))
    assert sum(s["metrics"]["acc"] for s in items) / len(items) == result.value("copa", "acc")
    for item, doc in zip(items, copa_splits["validation"]):  # lm-eval's doc hash: sha256 of the document's JSON
        assert item["doc_hash"] == hashlib.sha256(json.dumps(doc, indent=2, ensure_ascii=False).encode()).hexdigest()
        assert item["prediction"] == max(range(2), key=item["loglikelihoods"].__getitem__)
        assert item["gold"] == doc["label"] and item["metrics"]["acc"] == float(item["prediction"] == item["gold"])
    windows = result.samples[f"ppl:{heldout_file}"]
    assert [w["window"] for w in windows] == list(range(result.record(f"ppl:{heldout_file}").n_evaluated))
    mean_nll = sum(w["nll"] for w in windows) / len(windows)
    assert math.isclose(math.exp(mean_nll), result.value(f"ppl:{heldout_file}"), rel_tol=1e-9)

    again = EvalResult.from_json(result.to_json())
    assert again.samples == json.loads(result.to_json())["samples"] and again.format == "calibench.eval/1.1"
    assert not evaluate(model, "copa", tokenizer=tok, offline=True, limit=2).samples  # only when asked


def test_format_1_results_still_load():
    from calibench.evaluation import EvalResult

    old = {
        "format": "calibench.eval/1",
        "model": "m",
        "rows": [{"task": "piqa", "metric": "acc", "value": 0.5, "n": 2}],
        "tasks": [{"task": "piqa", "kind": "zeroshot"}],
        "settings": {},
        "versions": {},
        "seconds": 1.0,
    }
    result = EvalResult.from_json(json.dumps(old))
    assert result.value("piqa") == 0.5 and result.samples == {} and result.record("piqa").kind == "zeroshot"


# -- lm-eval's own output layout --------------------------------------------------------------


def test_lm_eval_output_layout(tiny, fake_copa, tmp_path, heldout_file):
    from calibench.evaluation import EvalResult, evaluate
    from calibench.evaluation.lmeval_output import write_lm_eval_output

    model, tok = tiny
    out = tmp_path / "lm-eval"
    result = evaluate(model, f"copa,ppl:{heldout_file}", tokenizer=tok, offline=True, limit=4, batch_size=2,
                      seq_len=32, log_samples=True, lm_eval_out=out)  # fmt: skip
    (folder,) = out.iterdir()
    names = sorted(p.name for p in folder.iterdir())
    assert len(names) == 2 and names[0].startswith("results_") and names[1].startswith("samples_copa_")
    stamp = names[0][len("results_") : -len(".json")]
    assert names[1] == f"samples_copa_{stamp}.jsonl"
    data = json.loads((folder / names[0]).read_text())
    for key in ("results", "configs", "versions", "n-shot", "higher_is_better", "n-samples", "config", "task_hashes"):
        assert key in data, key
    assert list(data["results"]) == ["copa"]  # perplexity is calibench's, not in lm-eval's layout
    assert data["results"]["copa"]["acc,none"] == result.value("copa", "acc")
    assert data["n-samples"]["copa"] == {"original": 6, "effective": 4} and data["n-shot"]["copa"] == 0
    lines = [json.loads(line) for line in (folder / names[1]).read_text().splitlines()]
    assert [s["doc_id"] for s in lines] == [0, 1, 2, 3] and "gen_args_0" in lines[0]["arguments"]
    assert [s["doc_hash"] for s in lines] == [s["doc_hash"] for s in result.samples["copa"]]
    assert result.settings["lm_eval_out"] == [str(folder / n) for n in reversed(names)]  # samples first, results last
    assert not [p for p in out.rglob("*") if ".tmp-" in p.name]

    with pytest.raises(CalibenchError, match="needs the run itself"):
        write_lm_eval_output(EvalResult.from_json(result.to_json()), tmp_path / "again")
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(CalibenchError, match="is a file"):
        evaluate(model, "copa", tokenizer=tok, offline=True, lm_eval_out=tmp_path / "a-file")


def test_each_mirror_serves_the_dataset_its_lm_eval_yaml_loads():
    """MIRROR_DATASETS (how other lm-eval tasks find offline data) agrees with the registry tasks' own YAMLs."""
    from calibench.evaluation import lmeval
    from calibench.evaluation.mirrors import MIRROR_DATASETS, MIRRORS, mirror_for_dataset
    from calibench.evaluation.tasks import LM_EVAL_TASKS

    mirrored = [t for t in LM_EVAL_TASKS.values() if t.mirror]
    manager = lmeval.task_manager(mirrored)
    for spec in mirrored:
        config = lmeval.declared_config(manager, spec)
        assert mirror_for_dataset(config["dataset_path"], config.get("dataset_name")) == spec.mirror, spec.name
    assert sorted(MIRROR_DATASETS.values()) == sorted(MIRRORS) == sorted(t.mirror for t in mirrored)
