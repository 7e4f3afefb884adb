"""First-token restriction: the first generated token must be an English stop word.

The word list ships with calibench (``stopwords_en.txt``, common English
function words) or comes from a file the user names; it is never fetched.
A token counts as a stop word when its decoded text, with surrounding
whitespace removed and lower-cased, is a word of the list: ``"The"``,
``" the"`` and ``"▁the"`` all qualify, ``"there"`` only because it is itself
listed, ``"Theory"`` never.  Special tokens never qualify.

The restriction is on the first *token*, as in the self-calibration paper: a
stop-word token can be followed by a token that glues onto it (``"The"`` +
``"ory"``), which :func:`first_word_is_stopword` lets callers measure.
"""

from __future__ import annotations

import hashlib
import re
from importlib import resources
from pathlib import Path
from typing import Any

from calibench.errors import CalibenchError

BUNDLED = "stopwords_en.txt"


def parse_stopwords(text: str) -> list[str]:
    """Words of a stop-word file: one a line, '#' comments and blank lines ignored, lower-cased, deduplicated."""
    seen: dict[str, None] = {}
    for line in text.splitlines():
        word = line.split("#", 1)[0].strip().lower()
        if word:
            seen.setdefault(word, None)
    return list(seen)


def load_stopwords(path: str | Path | None = None) -> tuple[list[str], str]:
    """(words, origin): the bundled English list, or the words of ``path``.

    ``origin`` names where the list came from, for the manifest.
    """
    if path is None:
        text = resources.files("calibench.data.generation").joinpath(BUNDLED).read_text(encoding="utf-8")
        origin = f"calibench:{BUNDLED}"
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
    texts = tokenizer.batch_decode([[i] for i in range(size)], skip_special_tokens=False,
                                   clean_up_tokenization_spaces=False)
    ids = [i for i, text in enumerate(texts) if i not in specials and text.strip().lower() in wanted]
    if not ids:
        raise CalibenchError(
            "no token of this tokenizer is one of the stop words: use --first-token any, or a stop-word "
            "list in the model's language (--stopwords FILE)"
        )
    return ids


_WORD = re.compile(r"\w+(?:'\w+)?", re.UNICODE)


def first_word_is_stopword(text: str, words: list[str]) -> bool:
    """Whether the first word of ``text`` (letters/digits, an apostrophe allowed) is in ``words``."""
    match = _WORD.search(text)
    return bool(match) and match.group(0).lower() in {w.lower() for w in words}
