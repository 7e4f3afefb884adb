"""The share of a summary's n-grams that never occur in its source (n = 1, 2, 3).

Counted over the *distinct* n-grams of the summary (a repeated phrase counts
once), on the word tokens of :func:`calibench.summarize.text.words`.  High
novelty means abstraction; it is also where unsupported content must live,
so a model that hallucinates less by copying more shows lower novelty.
NaN for a summary with fewer than n tokens.
"""

from __future__ import annotations

import math

from calibench.summarize.text import ngrams, words

NOVEL_NS = (1, 2, 3)


def novel_fraction(summary_tokens: list[str], source_tokens: list[str], n: int) -> float:
    grams = set(ngrams(summary_tokens, n))
    if not grams:
        return math.nan
    return len(grams - set(ngrams(source_tokens, n))) / len(grams)


def novel_ngrams(summary: str, source: str, ns: tuple[int, ...] = NOVEL_NS) -> dict[str, float]:
    """``{"novel_1": ..., "novel_2": ..., "novel_3": ...}``."""
    s, a = words(summary), words(source)
    return {f"novel_{n}": novel_fraction(s, a, n) for n in ns}
