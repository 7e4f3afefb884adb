"""Validate judges on labelled pairs datasets: ROC-AUC and balanced accuracy with CIs, cached per judge identity.

``calibench summ validate`` runs :func:`validate_judges`: for each judge (``lexical``, ``nli``, ``harim``) and
each dataset of :mod:`.pairsets`, it scores the rows, computes the AUC and split-half balanced accuracy with
bootstrap 95% CIs (:mod:`.judge_stats`) and merges them into the judge's validity cache
(:func:`calibench.summarize.validity.write_validity`), under:

* ``JudgeKind.identity(model, style, chat)`` for a model judge (``nli``: SummaC-ZS; ``harim``: HaRiM+);
* ``{"scorer": name}`` for each lexical score (``coverage``, ``density``, ``novel_1``, ``novel_2``,
  ``novel_3``).  A novel n-gram share is *higher for less consistent* summaries, so its AUC is that of the
  negated share: 1 - AUC of the raw share, the same direction as every other judge (higher = consistent).

On ``fsp`` a model judge's Factual-Summary-Pairs pair accuracy (faithful strictly above unfaithful) is cached
too, as :func:`calibench.summarize.judges.validate_judge` does: that is what a ``summ:`` task reports.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from calibench.core import progress
from calibench.core.errors import CalibenchError
from calibench.core.settings import DEFAULTS
from calibench.summarize.judge_stats import auc_with_ci, balanced_accuracy_with_ci
from calibench.summarize.judges import JUDGES, canonical_model_safe
from calibench.summarize.pairsets import build_pairs
from calibench.summarize.prompts import STYLES, ChatMode, use_chat
from calibench.summarize.score import LEXICAL, LEXICAL_SCORES, lexical_scores
from calibench.summarize.validate import FSP_DATA, cache_dir, store_validation
from calibench.summarize.validity import DatasetValidity, JudgeValidity, read_validity, write_validity

ALL = "all"
NEGATED = ("novel_1", "novel_2", "novel_3")  # higher = less consistent: validated as the negated share
CHUNK = 16  # rows scored per call, so that progress moves


@dataclass(frozen=True)
class Result:
    """One judge identity on one dataset."""

    judge: str  # "lexical", "nli", "harim"
    label: str  # "density", "nli (aegis)", "harim (smollm2-135m, chat)"
    identity: dict[str, Any]
    validity: DatasetValidity
    seconds: float
    cached: bool


def validate_choices() -> list[str]:
    return [LEXICAL, *JUDGES.names(), ALL]


def judge_targets(judge: str) -> list[str]:
    """``all`` or one of :func:`validate_choices` as a list (an unknown name: one line)."""
    if judge == ALL:
        return [LEXICAL, *JUDGES.names()]
    if judge != LEXICAL:
        JUDGES.get(judge)
    return [judge]


def lexical_identity(name: str) -> dict[str, Any]:
    return {"scorer": name}


def dataset_validity(dataset: str, scores: list[float], labels: list[int], n_boot: int, seed: int) -> DatasetValidity:
    """AUC and split-half balanced accuracy with CIs over the rows the judge could score (NaN rows dropped)."""
    kept = [(s, y) for s, y in zip(scores, labels) if not math.isnan(s)]
    s, y = [a for a, _ in kept], [b for _, b in kept]
    auc = auc_with_ci(s, y, n_boot, seed)
    ba = balanced_accuracy_with_ci(s, y, n_boot, seed)
    return DatasetValidity(dataset, len(kept), auc.value, auc.low, auc.high, ba.value, ba.low, ba.high)


def fsp_accuracy(scores: list[float], rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Pair accuracy on the fsp rows (each faithful row followed by its unfaithful one; ties count as wrong)."""
    good = np.array([s for s, r in zip(scores, rows) if r["label"] == 1][: len(rows) // 2], dtype=np.float64)
    bad = np.array([s for s, r in zip(scores, rows) if r["label"] == 0][: len(good)], dtype=np.float64)
    good = good[: len(bad)]
    return {"accuracy": float((good > bad).mean()), "pairs": len(good), "ties": int((good == bad).sum()),
            "data": FSP_DATA}  # fmt: skip


def validate_judges(
    judge: str = ALL,
    model: str | None = None,
    *,
    data: list[str],
    style: str = "sentences",
    chat: ChatMode = "auto",
    limit: int | None = None,
    force: bool = False,
    offline: bool = False,
    batch_size: int = DEFAULTS.batch_size,
    dtype: str = DEFAULTS.dtype,
    device: str = DEFAULTS.device,
    n_boot: int = 1000,
    seed: int = 0,
) -> list[Result]:
    """Every judge of ``judge`` on every dataset of ``data`` (the first ``limit`` rows of each), cached.

    A model judge's dataset already cached with the same number of rows is not scored again unless ``force``.
    Every judge model is checked by name, and every dataset built, before any model loads.
    """
    targets = judge_targets(judge)
    if model is not None and (len(targets) > 1 or targets == [LEXICAL]):
        raise CalibenchError("--judge-model names one judge's model: use it with --judge harim or --judge nli")
    if style not in STYLES:
        raise CalibenchError(f"style must be one of {', '.join(STYLES)}, got '{style}'")
    if limit is not None and limit < 1:
        raise CalibenchError(f"limit must be at least 1, got {limit}")
    for name in targets:
        if name != LEXICAL:
            kind = JUDGES.get(name)
            kind.check(model or kind.default_model, offline)
    sets = {d: build_pairs(d, limit=limit) for d in data}
    results: list[Result] = []
    for name in targets:
        if name == LEXICAL:
            results.extend(_lexical(sets, n_boot, seed))
        else:
            results.extend(_model_judge(name, model, sets, style=style, chat=chat, force=force,
                                        batch_size=batch_size, dtype=dtype, device=device, n_boot=n_boot,
                                        seed=seed, limit=limit))  # fmt: skip
    return results


def _lexical(sets: dict[str, list[dict[str, Any]]], n_boot: int, seed: int) -> list[Result]:
    out = []
    for dataset, rows in sets.items():
        started = time.perf_counter()
        values = [lexical_scores(r["document"], r["summary"]) for r in rows]
        seconds = time.perf_counter() - started
        labels = [r["label"] for r in rows]
        for name in LEXICAL_SCORES:
            sign = -1.0 if name in NEGATED else 1.0
            found = dataset_validity(dataset, [sign * v[name] for v in values], labels, n_boot, seed)
            identity = lexical_identity(name)
            write_validity(identity, [found])
            label = f"-{name}" if name in NEGATED else name
            out.append(Result(LEXICAL, label, identity, found, round(seconds, 1), False))
    return out


def _model_judge(
    name: str, model: str | None, sets: dict[str, list[dict[str, Any]]], *, style: str, chat: ChatMode,
    force: bool, batch_size: int, dtype: str, device: str, n_boot: int, seed: int, limit: int | None,
) -> list[Result]:  # fmt: skip
    kind = JUDGES.get(name)
    spec = model or kind.default_model
    if name == "harim":
        from calibench.models import load_tokenizer

        chat_on = use_chat(load_tokenizer(spec), chat, spec)
    else:
        chat_on = False
    identity = kind.identity(spec, style, chat_on)
    shown = canonical_model_safe(name, spec)
    label = f"{name} ({shown}{', chat' if chat_on else ''})"
    old = read_validity(identity)
    cached = {d.dataset: d for d in (old.datasets if old else ())}
    out: list[Result] = []
    score = None
    for dataset, rows in sets.items():
        if not force and dataset in cached and cached[dataset].rows == len(rows):
            out.append(Result(name, label, identity, cached[dataset], 0.0, True))
            continue
        if score is None:
            score = kind.scorer(spec, style, chat_on, batch_size=batch_size, dtype=dtype, device=device)
        started = time.perf_counter()
        values: list[float] = []
        with progress.task(f"validating {name} ({shown}) on {dataset}", total=len(rows), unit="rows") as bar:
            for start in range(0, len(rows), CHUNK):
                part = rows[start : start + CHUNK]
                values.extend(float(v) for v in score([r["document"] for r in part], [r["summary"] for r in part]))
                bar.advance(len(part))
        seconds = round(time.perf_counter() - started, 1)
        found = dataset_validity(dataset, values, [r["label"] for r in rows], n_boot, seed)
        write_validity(identity, [found])
        if dataset == "fsp":
            pairs = fsp_accuracy(values, rows)
            store_validation(identity, {**pairs, "seconds": seconds}, None if limit is None else pairs["pairs"])
        out.append(Result(name, label, identity, found, seconds, False))
    return out


def all_validities() -> list[JudgeValidity]:
    """Every judge identity validated on this machine (for ``calibench summ judges``)."""
    out = []
    for path in sorted(cache_dir().glob("auc-*.json")):
        try:
            identity = json.loads(path.read_text(encoding="utf-8"))["identity"]
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError):
            continue
        found = read_validity(identity) if isinstance(identity, dict) else None
        if found is not None:
            out.append(found)
    return out


def results_markdown(results: list[Result]) -> str:
    """The validation table: judge, dataset, rows, AUC and balanced accuracy with 95% CIs, seconds."""
    lines = ["| judge | dataset | rows | ROC-AUC [95% CI] | balanced accuracy [95% CI] | seconds |",
             "|---|---|---:|---|---|---:|"]  # fmt: skip
    for r in results:
        v = r.validity
        when = "cached" if r.cached else f"{r.seconds:.0f}"
        lines.append(f"| {r.label} | {v.dataset} | {v.rows} | {v.auc:.3f} [{v.auc_low:.3f}, {v.auc_high:.3f}] | "
                     f"{v.balanced_accuracy:.3f} [{v.ba_low:.3f}, {v.ba_high:.3f}] | {when} |")  # fmt: skip
    return "\n".join(lines) + "\n"
