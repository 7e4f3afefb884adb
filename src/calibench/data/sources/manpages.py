"""Manual pages cleaned for calibration: headers, footers, boilerplate sections and line breaks removed.

The ``manpages-l10n`` asset stores each page as groff rendered it
(:mod:`calibench.assets.manpages`); the multilingual sources clean it here
when they load it, which is cheap and can change without a new pull.
"""

from __future__ import annotations

import re
from collections import Counter

from calibench.assets.manpages import plain_text

BOILERPLATE_HEADINGS = frozenset({
    "COLOPHON",  # en (Linux man-pages before 6.x)
    "ÜBERSETZUNG",  # de
    "TRADUCTION",  # fr
    "TRADUCCIÓN",  # es
    "TŁUMACZENIE",  # pl
    "ПЕРЕВОД",  # ru
    "この文書について",  # ja: "about this document", the man-pages colophon
    "跋", "译者", "翻译",  # zh: colophon, translator(s)
})  # fmt: skip
#: zh pages also credit the translation project under headings like "[中文版维护人]" (maintainer)
#: or "《中国 Linux 论坛 man 手册页翻译计划》" (the forum's translation project).
_ZH_CREDITS = re.compile(r"中文版|翻译计划")

_CJK = (
    "\u2e80-\u2fdf"  # radicals
    "\u3000-\u303f"  # CJK punctuation
    "\u3040-\u30ff"  # hiragana, katakana
    "\u3100-\u31ff"  # bopomofo, katakana extensions
    "\u3400-\u4dbf"  # extension A
    "\u4e00-\u9fff"  # unified ideographs
    "\uac00-\ud7af"  # hangul syllables
    "\uf900-\ufaff"  # compatibility ideographs
    "\uff00-\uffef"  # full- and half-width forms
)
_CJK_CHAR = re.compile(f"[{_CJK}]")
_TITLE = re.compile(r"\S+\([^()\s]*\)")


def _is_cjk(char: str) -> bool:
    return bool(_CJK_CHAR.fullmatch(char))


def is_boilerplate_heading(heading: str) -> bool:
    """Whether a section heading names credits or a colophon (see :data:`BOILERPLATE_HEADINGS`)."""
    heading = heading.strip().rstrip(":：")
    return heading in BOILERPLATE_HEADINGS or bool(_ZH_CREDITS.search(heading))


def _is_heading(line: str) -> bool:
    return bool(line) and not line[0].isspace()


def _drop_header_footer(lines: list[str]) -> list[str]:
    """Remove the running header (``LS(1)  title  LS(1)``) and footer (``source  date  LS(1)``)."""
    filled = [i for i, ln in enumerate(lines) if ln.strip()]
    if not filled:
        return lines
    drop: set[int] = set()
    first = lines[filled[0]].split()
    title = None
    if _TITLE.fullmatch(first[-1]) and (len(first) == 1 or first[0] == first[-1]):
        title = first[-1]
        drop.add(filled[0])
    last_index = filled[-1]
    if last_index not in drop:
        last = lines[last_index]
        words = last.split()
        if (title is not None and words[-1] == title) or (
            title is None and _TITLE.fullmatch(words[-1]) and re.search(r"\s{2,}", last.strip())
        ):
            drop.add(last_index)
    return [ln for i, ln in enumerate(lines) if i not in drop]


def _drop_boilerplate(lines: list[str]) -> list[str]:
    out: list[str] = []
    skipping = False
    for line in lines:
        if _is_heading(line):
            skipping = is_boilerplate_heading(line)
        if not skipping:
            out.append(line)
    return out


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _dedent(lines: list[str]) -> list[str]:
    """Remove the page's base indentation (7 columns) from indented lines; headings stay at column 0.

    The base indent is layout, not text: kept, every line of a page would
    spend tokens on it.  It is the most common indentation, not the least, so
    that one line set further out does not keep the rest indented; deeper
    indentation (option descriptions, examples) keeps its relative depth.
    """
    indents = Counter(_indent(ln) for ln in lines if ln.strip() and ln[0] == " ")
    if not indents:
        return lines
    base = indents.most_common(1)[0][0]
    return [ln[min(base, _indent(ln)) :] for ln in lines]


HYPHEN = "\u2010"  # what groff -Tutf8 prints where it hyphenated; a "-" of the source comes out as ASCII


def _join_breaks(lines: list[str]) -> list[str]:
    """Undo line breaks that fell inside a word: between two CJK characters, or after a hyphenation.

    Latin-script text breaks only at spaces, so a newline there reads as the
    space it replaced; Japanese and Chinese have no spaces, and groff breaks
    between any two ideographs.  A word groff hyphenated anyway (on the few
    pages rendered with hyphenation, see the module docstring) is rejoined
    without its hyphen.  Only body lines at the same indentation (give or
    take the one space a paragraph may open with) are joined, so headings,
    lists and examples keep their lines; it runs before :func:`_dedent`,
    while headings are the only lines at column 0.
    """
    out: list[str] = []
    for line in lines:
        if out and out[-1].strip() and line.strip() and not _is_heading(out[-1]) and not _is_heading(line):
            prev = out[-1]
            body = line.lstrip(" ")
            if abs(_indent(line) - _indent(prev)) <= 1:
                if _is_cjk(prev[-1]) and _is_cjk(body[0]):
                    out[-1] = prev + body
                    continue
                if prev.endswith(HYPHEN) and len(prev) > 1 and prev[-2].isalpha() and body[0].isalpha():
                    out[-1] = prev[:-1] + body
                    continue
        out.append(line)
    return out


def clean_page(rendered: str) -> str:
    """A rendered page as a calibration document.

    Drops the running header and footer and the credits/colophon sections,
    removes the base indentation, rejoins words split across lines, and
    collapses runs of blank lines to one, so paragraphs stay separated by a
    single blank line.
    """
    lines = [ln.rstrip().expandtabs() for ln in plain_text(rendered).splitlines()]
    lines = _drop_header_footer(lines)
    lines = _drop_boilerplate(lines)
    lines = _join_breaks(lines)
    lines = _dedent(lines)
    out: list[str] = []
    for line in lines:
        if line or (out and out[-1]):
            out.append(line)
    while out and not out[-1]:
        out.pop()
    return "\n".join(out)
