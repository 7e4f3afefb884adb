"""How much of a summary repeats itself: the share of its word 3-grams that occurred earlier in it.

Why it is a metric: a badly compressed model degenerates into loops ("In
2012\\nIn 2012\\n..."), and such a loop copies a source phrase, so NLI-based
consistency scores it as *supported* (SummaC-ZS gives it 0.96).  Without a
degeneration measure next to it, "the pruned model hallucinates less" can
simply mean "the pruned model repeats one supported phrase".  0 for a
summary without a repeated 3-gram, near 1 for a loop; NaN under 3 words.
"""

from __future__ import annotations

import math

from calibench.summarize.text import ngrams, words

REPEAT_N = 3
#: summaries above this share are counted as degenerate in reports and notes
DEGENERATE_AT = 0.5


def repeated_share(summary: str, n: int = REPEAT_N) -> float:
    grams = ngrams(words(summary), n)
    if not grams:
        return math.nan
    return 1.0 - len(set(grams)) / len(grams)
