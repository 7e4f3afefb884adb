"""The two ways summary metrics cut text: into lowercased word tokens, and into sentences.

One tokenizer for every lexical metric (fragments, novel n-grams), so that
coverage and novelty of the same summary are computed over the same tokens.
Words are runs of letters and digits (Unicode ``\\w``), lowercased;
punctuation is dropped, so a summary cannot gain coverage by copying commas.
ROUGE keeps rouge-score's own tokenizer (it is the reference implementation).
"""

from __future__ import annotations

import re

_WORD = re.compile(r"\w+", re.UNICODE)
# A sentence ends at . ! ? (optionally followed by closing quotes/brackets) before whitespace and an
# upper-case letter, digit or opening quote; newlines always end a sentence (XSum keeps one a line).
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"'\u2019\u201d)\]]*\s+(?=[A-Z0-9\"'\u2018\u201c(\[])")


def words(text: str) -> list[str]:
    """Lowercased word tokens."""
    return [w.lower() for w in _WORD.findall(text)]


def sentences(text: str) -> list[str]:
    """Sentences of ``text``: split at newlines and at sentence-final punctuation; empty pieces dropped."""
    out = []
    for line in text.splitlines():
        for piece in _SENTENCE_END.split(line.strip()):
            if piece.strip() and _WORD.search(piece):
                out.append(piece.strip())
    return out


def ngrams(tokens: list[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]
