"""Offline mirrors render every document exactly as lm-eval's own task definition does.

The reference is lm-eval's task built the way ``lm_eval --tasks NAME`` builds
it (its full TaskManager, its YAML, its ``datasets.load_dataset`` call), with
only the download answered by a local copy of the hub dataset.  For each task
several documents are rendered by both and compared: context, choices,
target, the zero-shot prompt and the (context, continuation) requests that
are scored.

Where the pack holds hub data as is, the local copy *is* the reference.
Where the mirror maps OLMo's documents back to the hub schema (ARC and
OpenBookQA test, BoolQ, LAMBADA), the mapping is checked against the hub
rows on the validation split (every document), and the served documents
against OLMo's own rendered requests, an independent harness using the same
templates.
"""

from __future__ import annotations

import random

import pytest

pytestmark = pytest.mark.integration

PLAIN = {  # task -> pack folder of its hub dataset, as is
    "hellaswag": "hellaswag/none/validation",
    "piqa": "piqa/plain_text/validation",
    "rte": "glue/rte/validation",
    "winogrande": "winogrande/winogrande_xl/validation",
    "copa": "super_glue/copa/validation",
    "sciq": "sciq/none/validation",
    "arc_easy": "ai2_arc/ARC-Easy/validation",
    "arc_challenge": "ai2_arc/ARC-Challenge/validation",
    "openbookqa": "openbookqa/main/validation",
}


def sample_indices(n: int, extra: int = 3) -> list[int]:
    fixed = [0, 1, 2, n // 2, n - 1]
    return sorted(set(fixed + random.Random(0).sample(range(n), min(extra, n))))


def rendered(task, doc) -> dict:
    """Everything lm-eval derives from one document for zero-shot scoring."""
    ctx = task.fewshot_context(doc=doc, num_fewshot=0)
    instances = task.construct_requests(doc=doc, ctx=ctx, metadata=(task.task_name, 0, 1))
    instances = instances if isinstance(instances, list) else [instances]
    out = {"text": task.doc_to_text(doc), "target": task.doc_to_target(doc), "context": ctx,
           "requests": [inst.arguments for inst in instances]}  # fmt: skip
    if task.config.doc_to_choice is not None:
        out["choices"] = task.doc_to_choice(doc)
    return out


@pytest.fixture
def pack(offline_assets):
    from calibench.evaluation.mirrors import pack_root

    return pack_root()


@pytest.fixture(scope="module")
def full_task_manager():
    from lm_eval.tasks import TaskManager

    return TaskManager()  # lm-eval's own full index, not calibench's restricted one


@pytest.fixture
def reference_task(full_task_manager, monkeypatch):
    """lm-eval's task as its CLI builds it, with the hub download answered by ``rows``."""
    import datasets

    def build(name: str, rows):
        requested = []

        def fake_load_dataset(path=None, name=None, **kwargs):
            requested.append((path, name))
            return datasets.DatasetDict({split: rows for split in ("train", "validation", "test")})

        monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
        task = full_task_manager.load([name])["tasks"][name]
        assert requested == [(task.config.dataset_path, task.config.dataset_name)]
        return task

    return build


def mirror_task(name: str, mirror=None):
    """The task exactly as ``evaluate(..., offline=True)`` builds it."""
    from calibench.evaluation import lmeval
    from calibench.evaluation.tasks import ZEROSHOT_TASKS

    spec = ZEROSHOT_TASKS[name]
    if mirror is None:
        (prepared,) = lmeval.prepare([spec], offline=True, offline_reason="test", limit=None)
        return prepared.task
    return lmeval.build_offline(lmeval.task_manager([spec]), spec, mirror)


def assert_same_rendering(ours, reference, indices):
    our_docs, ref_docs = ours.eval_docs, reference.eval_docs
    assert len(our_docs) == len(ref_docs)
    for i in indices:
        assert rendered(ours, our_docs[i]) == rendered(reference, ref_docs[i]), f"{ours.task_name} doc {i}"


@pytest.mark.parametrize("name", ["hellaswag", "piqa", "rte", "winogrande", "copa", "sciq"])
def test_plain_mirrors_render_like_lm_eval(name, pack, reference_task):
    import datasets

    ours = mirror_task(name)
    reference = reference_task(name, datasets.load_from_disk(str(pack / "hf_datasets" / PLAIN[name])))
    assert_same_rendering(ours, reference, sample_indices(len(ours.eval_docs)))


@pytest.mark.parametrize("name, oe_task", [("arc_easy", "arc_easy"), ("arc_challenge", "arc_challenge"),
                                           ("openbookqa", "openbookqa")])  # fmt: skip
def test_mapped_olmo_documents_render_like_the_hub_rows(name, oe_task, pack, reference_task):
    """On validation, where the pack has both, OLMo documents mapped to the hub schema == hub rows, every doc."""
    import datasets

    from calibench.evaluation import mirrors

    mapping = mirrors.arc_row_from_oe if name.startswith("arc") else mirrors.openbookqa_row_from_oe
    hub_rows = datasets.load_from_disk(str(pack / "hf_datasets" / PLAIN[name]))
    mapped = datasets.Dataset.from_list([mapping(d) for d in mirrors.oe_docs(pack, f"{oe_task}/rc_0shot")],
                                        features=hub_rows.features)  # fmt: skip
    ours = mirror_task(name, mirrors.Mirror(name, {"test": mapped}, {"test": "mapped validation"}))
    assert ours.config.test_split == "test"
    reference = reference_task(name, hub_rows)
    assert_same_rendering(ours, reference, range(len(hub_rows)))


def olmo_requests(pack, task_dir):
    """doc id -> (context, [continuations]) of OLMo's zero-shot ranked-classification requests."""
    import gzip
    import json

    from calibench.evaluation.mirrors import UNCONDITIONAL_DOC_ID

    out: dict[int, tuple[str, list[str], object]] = {}
    with gzip.open(pack / "oe_eval_tasks" / task_dir / "requests.jsonl.gz", "rt", encoding="utf-8") as fh:
        for line in fh:
            req = json.loads(line)
            if req["doc_id"] >= UNCONDITIONAL_DOC_ID:
                continue
            ctx, conts, label = out.setdefault(req["doc_id"], (req["request"]["context"], [], req["label"]))
            assert ctx == req["request"]["context"]
            conts.append(req["request"]["continuation"])
    return [out[k] for k in sorted(out)]


@pytest.mark.parametrize("name, task_dir, zero_shot_context, olmo_template", [
    ("arc_easy", "arc_easy/test_rc_5shot", False, "{}"),
    ("arc_challenge", "arc_challenge/test_rc_5shot", False, "{}"),
    # lm-eval's OpenBookQA prompt is the bare question stem; OLMo wraps it in Question:/Answer:
    ("openbookqa", "openbookqa/test_rc_5shot", False, "Question: {}\nAnswer:"),
    ("boolq", "boolq/rc_0shot", True, "{}"),
])  # fmt: skip
def test_served_documents_match_olmo_rendering(name, task_dir, zero_shot_context, olmo_template, pack):
    """The split lm-eval scores (ARC/OBQA test, BoolQ with titled passages) against OLMo's own requests."""
    ours = mirror_task(name)
    requests = olmo_requests(pack, task_dir)
    docs = ours.eval_docs
    assert len(docs) == len(requests)
    for i in sample_indices(len(docs), extra=20):
        ctx, continuations, label = requests[i]
        mine = rendered(ours, docs[i])
        expected = olmo_template.format(mine["context"])
        if zero_shot_context:
            assert expected == ctx
        else:  # OLMo's 5-shot context ends with this document's zero-shot prompt
            assert ctx.endswith("\n\n" + expected)
        if name == "boolq":  # OLMo orders the choices yes, no; lm-eval no, yes
            assert sorted(continuations) == sorted(c for _, c in mine["requests"]) == [" no", " yes"]
            assert mine["choices"][mine["target"]] == ["yes", "no"][label]
        else:
            assert [c for _, c in mine["requests"]] == continuations
            assert mine["target"] == label


def test_lambada_matches_olmo_requests_for_every_document(pack):
    ours = mirror_task("lambada_openai")
    requests = olmo_requests(pack, "lambada/bpb_0shot")
    docs = ours.eval_docs
    assert len(docs) == len(requests) == 5153
    for doc, (ctx, (continuation,), _) in zip(docs, requests):
        assert (ours.doc_to_text(doc), ours.doc_to_target(doc)) == (ctx, continuation)


def test_sciq_is_marked_not_comparable_and_storycloze_has_no_mirror(pack):
    from calibench.evaluation import lmeval
    from calibench.evaluation.tasks import ZEROSHOT_TASKS

    sciq, story = lmeval.prepare([ZEROSHOT_TASKS["sciq"], ZEROSHOT_TASKS["storycloze"]], True, "test", None)
    assert (sciq.record.split, sciq.record.reference_split, sciq.record.comparable) == ("validation", "test", False)
    assert story.task is None and story.record.status == "skipped"


def test_heldout_perplexity_text_is_disjoint_from_calibration_text(pack):
    from calibench.data.sources import get_source

    for name in ("wiki", "science", "math", "code"):
        source = get_source(name)
        heldout = set(source.documents("heldout").texts)
        calibration = set(source.documents("calibration").texts)
        assert heldout and calibration and not heldout & calibration, name
