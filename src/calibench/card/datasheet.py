"""Gathering a set's datasheet: provenance, statistics, activation metrics and contamination.

A card should let someone who never ran calibench decide whether a set suits
their model and their evaluation: where its text came from and how it was cut
(the manifest), what the text is like (the self-calibration paper's
statistics, :mod:`calibench.data.stats`), how well it covers a reference in
the model's activation space (COLA's coverage and diversity, the numbers
``calibench data stats --pool`` prints), and which evaluation benchmarks it
overlaps (:mod:`.contamination`).  The parts that need a model are optional:
without one the card says what it left out instead of guessing.

:func:`gather` does the work and returns plain data; rendering is
:mod:`calibench.card.markdown`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from calibench.card.benchmarks import Benchmarks
from calibench.card.contamination import DEFAULT_N, DEFAULT_TOP, BenchmarkOverlap, benchmark_overlap, index_windows
from calibench.core import progress
from calibench.core.settings import DEFAULTS
from calibench.data.calibset import CalibrationSet
from calibench.data.stats import set_statistics


@dataclass
class Contamination:
    n: int
    overlaps: list[BenchmarkOverlap]
    declared: dict[str, list[str]]  # benchmark -> the sources of the set that say they share its items
    skipped: dict[str, str] = field(default_factory=dict)  # benchmark -> why it was not checked

    def flagged(self) -> list[str]:
        """Benchmarks to keep away from this set: declared by a source or found overlapping, sorted."""
        return sorted(set(self.declared) | {o.benchmark for o in self.overlaps if o.items_hit})

    def to_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "flagged": self.flagged(),
            "declared": self.declared,
            "skipped": self.skipped,
            "benchmarks": [o.to_dict() for o in self.overlaps],
        }


@dataclass
class Datasheet:
    manifest: Any  # calibench.data.calibset.Manifest
    num_tokens: int
    statistics: dict[str, Any] | None
    contamination: Contamination | None
    activation: dict[str, Any] | None = None
    model: str | None = None
    notes: dict[str, str] = field(default_factory=dict)  # section -> why it is missing or partial

    def to_dict(self) -> dict[str, Any]:
        return {
            "set_id": self.manifest.set_id,
            "manifest": self.manifest.model_dump(mode="json"),
            "num_tokens": self.num_tokens,
            "model": self.model,
            "statistics": self.statistics,
            "activation": self.activation,
            "contamination": self.contamination.to_dict() if self.contamination else None,
            "notes": self.notes,
        }


def _records(value: Any) -> Iterator[dict[str, Any]]:
    """Every source record (a dict with a name and a spec) in a manifest dump, mixtures' components included."""
    if isinstance(value, dict):
        if isinstance(value.get("name"), str) and isinstance(value.get("spec"), dict):
            yield value
        for v in value.values():
            yield from _records(v)
    elif isinstance(value, list):
        for v in value:
            yield from _records(v)


def declared_overlaps(manifest: Any) -> dict[str, list[str]]:
    """Benchmark -> the sources that record ``shares_items_with`` it (the offline domains do: their text is
    evaluation items, and ``arc-c`` and ``piqa`` are nothing but a benchmark's items)."""
    dump = manifest.model_dump(mode="json")
    out: dict[str, list[str]] = {}
    for record in _records({"source": dump["source"], "generator": dump.get("generator")}):
        for benchmark in record["spec"].get("shares_items_with", []) or []:
            names = out.setdefault(str(benchmark), [])
            if record["name"] not in names:
                names.append(record["name"])
    return dict(sorted(out.items()))


def contamination_of(
    texts: list[str], manifest: Any, benchmarks: Benchmarks, n: int = DEFAULT_N, top: int = DEFAULT_TOP
) -> Contamination:
    """The set's windows (decoded text) against every benchmark text."""

    index = index_windows(texts, n)
    overlaps = []
    with progress.task("contamination check", total=len(benchmarks.texts), unit="benchmarks") as bar:
        for b in benchmarks.texts:
            overlaps.append(
                benchmark_overlap(
                    index, b.name, b.items, kind=b.kind, top=top, origin=b.origin, labels=b.labels or None
                )
            )
            bar.advance()
    return Contamination(n, overlaps, declared_overlaps(manifest), dict(benchmarks.skipped))


def gather(
    calib: CalibrationSet,
    tokenizer: Any,
    *,
    lm: Any = None,
    model: str | None = None,
    reference: CalibrationSet | None = None,
    benchmarks: Benchmarks | None = None,
    ngram: int = DEFAULT_N,
    top: int = DEFAULT_TOP,
    contamination: bool = True,
    batch_size: int = DEFAULTS.batch_size,
) -> Datasheet:
    """Everything a card says about ``calib``.

    ``lm`` (the loaded model named ``model``) adds the perplexity and, with
    ``reference``, activation coverage and diversity against it.
    ``benchmarks`` defaults to every offline benchmark on this machine.
    """

    calib.check_tokenizer(tokenizer)
    notes: dict[str, str] = {}
    stats = set_statistics(calib, tokenizer, lm, batch_size=batch_size)
    if lm is None:
        notes["statistics"] = "perplexity needs a model: pass --model"
    activation = None
    if lm is not None and reference is not None:
        from calibench.curate.setstats import pool_statistics

        activation = pool_statistics([calib], reference, lm, batch_size=batch_size)[0]
    else:
        notes["activation"] = (
            "activation coverage and diversity need a model and a reference set: "
            "pass --model and --reference (e.g. the pool of `calibench data curate`)"
        )
    found = None
    if contamination:
        if benchmarks is None:
            from calibench.card.benchmarks import offline_benchmarks

            benchmarks = offline_benchmarks()
        texts = calib.texts(tokenizer, skip_special_tokens=True)
        found = contamination_of(texts, calib.manifest, benchmarks, n=ngram, top=top)
    else:
        notes["contamination"] = "not checked on request"
    return Datasheet(calib.manifest, calib.num_tokens, stats, found, activation, model, notes)
