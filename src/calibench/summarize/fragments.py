"""Extractive fragments of Grusky et al. (2018, Newsroom): coverage, density and compression.

The greedy algorithm of the paper: walk the summary; at each position find
the longest run of tokens that also occurs contiguously in the article (the
first longest when several tie), take it as a fragment and jump past it, or
step one token when nothing matches.  Then, with fragments F, summary S and
article A (word tokens, :func:`calibench.summarize.text.words`):

* coverage = sum |f| / |S|: the share of summary tokens inside a copied
  fragment (1 = purely extractive vocabulary);
* density = sum |f|^2 / |S|: the average length of the fragment each summary
  token belongs to (high = long copied spans);
* compression = |A| / |S|.

Coverage and density are NaN for an empty summary (no tokens to cover).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from calibench.summarize.text import words


@dataclass(frozen=True)
class Fragments:
    fragments: tuple[tuple[str, ...], ...]
    summary_len: int
    article_len: int

    @property
    def coverage(self) -> float:
        return sum(len(f) for f in self.fragments) / self.summary_len if self.summary_len else math.nan

    @property
    def density(self) -> float:
        return sum(len(f) ** 2 for f in self.fragments) / self.summary_len if self.summary_len else math.nan

    @property
    def compression(self) -> float:
        return self.article_len / self.summary_len if self.summary_len else math.nan


def extractive_fragments(summary: list[str], article: list[str]) -> list[tuple[str, ...]]:
    """The greedy shared fragments of two token lists (Grusky et al. 2018, Algorithm 1)."""
    positions: dict[str, list[int]] = {}
    for j, token in enumerate(article):
        positions.setdefault(token, []).append(j)
    out = []
    i = 0
    while i < len(summary):
        best = 0
        for j in positions.get(summary[i], ()):  # only where the token occurs: same result, no full scan
            k = 0
            while i + k < len(summary) and j + k < len(article) and summary[i + k] == article[j + k]:
                k += 1
            best = max(best, k)
        if best:
            out.append(tuple(summary[i : i + best]))
        i += max(best, 1)
    return out


def fragments(summary: str, article: str) -> Fragments:
    s, a = words(summary), words(article)
    return Fragments(tuple(extractive_fragments(s, a)), len(s), len(a))
