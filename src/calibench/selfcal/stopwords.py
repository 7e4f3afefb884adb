"""First-token restriction: the first generated token must be a stop word of the text's language.

The word list ships with calibench (``stopwords_en.txt``, common English
function words, the default; and ``stopwords_<lang>.txt`` for German,
French, Spanish, Polish, Russian, Japanese and Chinese, see
:data:`LANGUAGES`) or comes from a file the user names; it is never fetched.
A token counts as a stop word when its decoded text, with surrounding
whitespace removed and lower-cased, is a word of the list: ``"The"``,
``" the"`` and ``"▁the"`` all qualify, ``"there"`` only because it is itself
listed, ``"Theory"`` never.  Special tokens never qualify.

The restriction is on the first *token*, as in the self-calibration paper: a
stop-word token can be followed by a token that glues onto it (``"The"`` +
``"ory"``), which :func:`first_word_is_stopword` lets callers measure.  That
check splits words at what is not a letter or digit, which is right for
scripts that put spaces between words; Japanese and Chinese do not, so there
a text's first word is the longest listed word it begins with.  French
elision is matched through the apostrophe: "l'homme" and "l’homme" start with
the listed "l'".  Neither rule can change a result for the English list, which
has no such words.
"""

from __future__ import annotations

import hashlib
import re
from importlib import resources
from pathlib import Path
from typing import Any

from calibench.core.errors import CalibenchError

BUNDLED = "stopwords_en.txt"
#: Languages (ISO 639-1) with a bundled list, ``stopwords_<code>.txt``; "en" is the default.
LANGUAGES = ("en", "de", "fr", "es", "pl", "ru", "ja", "zh")


def bundled_file(language: str = "en") -> str:
    """The bundled list of ``language``, or an error naming the languages that have one."""
    if language not in LANGUAGES:
        raise CalibenchError(
            f"no bundled stop-word list for language '{language}' (have: {', '.join(LANGUAGES)}): "
            "give a list of your own (--stopwords FILE, one word a line)"
        )
    return BUNDLED if language == "en" else f"stopwords_{language}.txt"


def parse_stopwords(text: str) -> list[str]:
    """Words of a stop-word file: one a line, '#' comments and blank lines ignored, lower-cased, deduplicated."""
    seen: dict[str, None] = {}
    for line in text.splitlines():
        word = line.split("#", 1)[0].strip().lower()
        if word:
            seen.setdefault(word, None)
    return list(seen)


def load_stopwords(path: str | Path | None = None, language: str = "en") -> tuple[list[str], str]:
    """(words, origin): the bundled list of ``language`` (English by default), or the words of ``path``.

    A file given as ``path`` is used as it is, whatever ``language`` says.
    ``origin`` names where the list came from, for the manifest.
    """
    if path is None:
        name = bundled_file(language)
        text = resources.files("calibench.selfcal").joinpath(name).read_text(encoding="utf-8")
        origin = f"calibench:{name}"
    else:
        p = Path(path)
        if not p.is_file():
            raise CalibenchError(f"stop-word file {p} does not exist: give a text file with one word a line")
        text = p.read_text(encoding="utf-8")
        origin = p.name
    words = parse_stopwords(text)
    if not words:
        raise CalibenchError(f"the stop-word list {origin} has no words: one word a line")
    return words, origin


def stopwords_sha256(words: list[str]) -> str:
    """Hash of the word list (sorted), recorded in the manifest."""
    return hashlib.sha256("\n".join(sorted(words)).encode("utf-8")).hexdigest()


def _special_ids(tokenizer: Any) -> set[int]:
    ids = {int(i) for i in getattr(tokenizer, "all_special_ids", [])}
    for token_id, added in getattr(tokenizer, "added_tokens_decoder", {}).items():
        if getattr(added, "special", False):
            ids.add(int(token_id))
    return ids


def stopword_token_ids(tokenizer: Any, words: list[str]) -> list[int]:
    """Sorted ids of the tokens whose decoded text is one of ``words`` (case-insensitive).

    Raises a user error when the tokenizer has none (a non-English vocabulary).
    """
    wanted = {w.lower() for w in words}
    specials = _special_ids(tokenizer)
    size = len(tokenizer)
    texts = tokenizer.batch_decode(
        [[i] for i in range(size)], skip_special_tokens=False, clean_up_tokenization_spaces=False
    )
    ids = [i for i, text in enumerate(texts) if i not in specials and text.strip().lower() in wanted]
    if not ids:
        raise CalibenchError(
            "no token of this tokenizer is one of the stop words: use --first-token any, or a stop-word "
            "list in the model's language (--stopwords FILE)"
        )
    return ids


_WORD = re.compile(r"\w+(?:'\w+)?", re.UNICODE)
_LETTERS = re.compile(r"\w+", re.UNICODE)
_APOSTROPHES = ("'", "\u2019")
#: Scripts written without spaces between words: hiragana, katakana, CJK ideographs (and their marks).
_UNSPACED = re.compile("[\u3005\u3040-\u30ff\u31f0-\u31ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff66-\uff9f]")


def _unspaced(char: str) -> bool:
    return bool(_UNSPACED.fullmatch(char))


def first_word_is_stopword(text: str, words: list[str]) -> bool:
    """Whether the first word of ``text`` is in ``words`` (case-insensitive).

    The first word is the first run of letters/digits (an apostrophe inside
    allowed).  A run in Japanese or Chinese script has no spaces to end it,
    so there the text qualifies when it begins with a listed word of that
    script; without a word segmenter, a listed word that begins a longer word
    ("在" of "在线") counts too.  A run followed by an apostrophe qualifies
    when the list has it elided ("l'" for "l'homme" and "l’homme").
    """
    match = _WORD.search(text)
    if not match:
        return False
    wanted = {w.lower() for w in words}
    word = match.group(0).lower()
    if word in wanted:
        return True
    if _unspaced(word[0]):
        return any(word.startswith(w) for w in wanted if w and _unspaced(w[0]))
    head = _LETTERS.match(word)
    assert head is not None  # the match starts with a letter or digit
    after = text[match.start() + head.end() : match.start() + head.end() + 1]
    return after in _APOSTROPHES and head.group(0) + "'" in wanted
