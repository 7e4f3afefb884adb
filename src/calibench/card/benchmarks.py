"""The evaluation text a card checks a set against: every benchmark calibench can evaluate offline.

Two kinds, read through the modules that evaluation itself uses, so the card
checks exactly the text the scores are computed on:

* ``task``: the offline mirrors of lm-eval's tasks
  (:data:`calibench.evaluation.mirrors.MIRRORS`), every split a mirror serves;
  an item is a dataset row and its segments are the row's string fields
  (question, passage, each choice, ...), nested lists included;
* ``heldout``: the perplexity texts that read no hub
  (:data:`calibench.evaluation.heldout.HELDOUT_TEXTS`), one item per document,
  named ``ppl:<name>`` as in ``--tasks``.

A benchmark whose data is not on this machine (the pack or an asset not
pulled) is left out and named in ``skipped`` with the reason, so a card
never claims a check it did not make.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from calibench.core import progress
from calibench.core.errors import CalibenchError, UnknownNameError, did_you_mean
from calibench.evaluation.heldout import HELDOUT_TEXTS, load_heldout_texts
from calibench.evaluation.mirrors import MIRRORS

TASK, HELDOUT = "task", "heldout"


@dataclass(frozen=True)
class BenchmarkText:
    name: str
    kind: str
    items: list[list[str]]  # the text segments of each item
    origin: str = ""
    labels: list[str] = field(default_factory=list)  # how a reader finds each item (``test[12]``)


@dataclass
class Benchmarks:
    texts: list[BenchmarkText] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # benchmark -> why it was not checked


def strings(value: Any) -> Iterator[str]:
    """Every non-empty string inside a row value (dicts and lists walked in order)."""
    if isinstance(value, str):
        if value.strip():
            yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from strings(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from strings(v)


def row_segments(row: dict[str, Any]) -> list[str]:
    """A row's string fields, each once, in field order."""
    return list(dict.fromkeys(strings(row)))


def task_items(task: str) -> BenchmarkText:
    """Every row of every split of one offline mirror."""
    from calibench.evaluation.mirrors import build_mirror

    mirror = build_mirror(task)
    items, labels = [], []
    for split, rows in mirror.splits.items():
        for i, row in enumerate(rows):
            items.append(row_segments(row))
            labels.append(f"{split}[{i}]")
    origin = "; ".join(f"{split}: {where}" for split, where in mirror.origin.items())
    return BenchmarkText(task, TASK, items, origin, labels)


def heldout_items(name: str) -> BenchmarkText:

    spec = HELDOUT_TEXTS[name]
    docs, _ = load_heldout_texts(spec)
    kept = [(i, d) for i, d in enumerate(docs) if d.strip()]
    return BenchmarkText(
        f"ppl:{name}", HELDOUT, [[d] for _, d in kept], spec.description, [f"document {i}" for i, _ in kept]
    )


def offline_benchmarks(include: set[str] | None = None) -> Benchmarks:
    """Every benchmark with offline data here (or those named in ``include``), and the ones that could not be read."""
    wanted = [(task, TASK) for task in MIRRORS] + [(name, HELDOUT) for name, h in HELDOUT_TEXTS.items() if h.offline]
    wanted = [(name, kind) for name, kind in wanted if include is None or _label(name, kind) in include]
    out = Benchmarks()
    with progress.task("reading benchmarks", total=len(wanted), unit="benchmarks") as bar:
        for name, kind in wanted:
            try:
                out.texts.append(task_items(name) if kind == TASK else heldout_items(name))
            except CalibenchError as exc:  # an asset not pulled, a damaged pack: say so on the card
                out.skipped[_label(name, kind)] = str(exc)
            bar.advance()
    return out


def _label(name: str, kind: str) -> str:
    return name if kind == TASK else f"ppl:{name}"


def benchmark_names() -> list[str]:
    """Every benchmark a card can check: task mirrors and offline perplexity texts (``ppl:NAME``)."""
    return list(MIRRORS) + [f"ppl:{name}" for name, h in HELDOUT_TEXTS.items() if h.offline]


def parse_benchmarks(text: str | None) -> set[str] | None:
    """``--benchmarks a,b`` as a set of known names (None: all of them)."""

    if text is None:
        return None
    names = [t.strip() for t in text.split(",") if t.strip()]
    if not names:
        raise CalibenchError("--benchmarks is empty: name at least one (e.g. arc_challenge,ppl:wiki)")
    known = benchmark_names()
    for name in names:
        if name not in known:
            raise UnknownNameError(f"unknown benchmark '{name}'{did_you_mean(name, known)}")
    return set(names)
