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
# A sentence ends at . ! ? (closing quotes and brackets staying with it) followed by whitespace, whatever
# the case of what follows: lowercased text (SummEval's summaries) has sentences too.  Newlines always end
# one (XSum keeps one a line).  A period after an abbreviation or an initial does not end one.
_SENTENCE_END = re.compile(r"[.!?][\"'\u2019\u201d)\]]*(?=\s+\S)")
_LAST_TOKEN = re.compile(r"[\"'\u2018\u201c(\[]*([^\s\"'\u2018\u201c(\[]+)$")
ABBREVIATIONS = frozenset(
    """mr mrs ms dr prof sr jr st mt ft vs etc approx dept est fig gen gov govt sen rep rev col lt sgt capt cmdr
    adm maj inc ltd co corp bros jan feb mar apr jun jul aug sep sept oct nov dec""".split()
)
_DOTTED = re.compile(r"(?:\w\.)+\w")  # e.g, i.e, u.s, a.m: letters with inner periods


def _is_abbreviation(token: str) -> bool:
    """Whether a word that a period follows is an abbreviation (``Dr``, ``u.s``, ``e.g``)."""
    word = token.lower()
    return word in ABBREVIATIONS or bool(_DOTTED.fullmatch(word))


def words(text: str) -> list[str]:
    """Lowercased word tokens."""
    return [w.lower() for w in _WORD.findall(text)]


def sentences(text: str) -> list[str]:
    """Sentences of ``text``: split at newlines and at sentence-final punctuation; empty pieces dropped."""
    out: list[str] = []
    for line in text.splitlines():
        start = 0
        for end in _SENTENCE_END.finditer(line):
            if end.group()[0] == "." and _ends_with_abbreviation(line[start : end.start()]):
                continue
            _keep(out, line[start : end.end()])
            start = end.end()
        _keep(out, line[start:])
    return out


def _ends_with_abbreviation(text: str) -> bool:
    last = _LAST_TOKEN.search(text)
    return last is not None and _is_abbreviation(last.group(1))


def _keep(out: list[str], piece: str) -> None:
    piece = piece.strip()
    if piece and _WORD.search(piece):
        out.append(piece)


def ngrams(tokens: list[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]
