"""Manual pages as plain text: finding them, rendering them once, cleaning them for calibration.

The multilingual sources (:mod:`.multilingual`) read translated manual pages
from Debian's ``manpages-*`` packages.  Those ship roff source, which is
markup, not text, so the ``manpages-l10n`` asset renders every page once at
pull time (:func:`render_pages`) and stores the rendered text; loading a
source then only cleans it (:func:`clean_page`), which is cheap and can change
without a new pull.

Rendering calls ``groff`` directly rather than ``man -l``: it is the same
formatter with the same options ``man --nj --nh`` uses (``tbl`` for tables,
the language's macro package such as ``-mja`` where groff has one), three
times faster because no pager pipeline or encoding guesswork is spawned per
page, and explicit: lines of 78 columns (what ``man`` lays out for
``MANWIDTH=80``), no hyphenation (a word split across lines is two tokens no
writer produced) and ragged-right lines (justification pads with runs of
spaces).  Both are switched off the way man-db does it, by a preamble that
sets them and then makes the page's own ``.ad`` and ``.hy`` no-ops: the
``-rHY=0``/``-dAD=l`` options of the man macros do not reach pages written
with mdoc (the BSD macros), and ``-dAD=l`` does not exist in the groff 1.22
that Debian 12 ships.  That groff loops forever, printing megabytes, on a few
Chinese pages when hyphenation is off with ``-mzh``; such a page is rendered
again with hyphenation on after a short timeout (ideographs have no
hyphenation patterns, so little changes) and counted in the manifest.
Overstrikes and SGR escapes are stripped here, as ``col -b`` would.

The rendering half is called by the asset's prepare step
(:mod:`calibench.assets.catalog`); the cleaning half by the sources.
"""

from __future__ import annotations

import bz2
import functools
import gzip
import lzma
import os
import re
import shutil
import subprocess
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from calibench.errors import CalibenchError

#: What ``man`` lays out for ``MANWIDTH=80`` (it keeps a two-column margin).
LINE_LENGTH = 78
RENDER_COMMAND = ("groff", "-k", "-Kutf-8", "-t", "-mandoc", "-Tutf8", "-P-c", f"-rLL={LINE_LENGTH}n")
#: Left-adjust, then make the page's own ``.ad`` a no-op (as ``man --nj``).
NO_JUSTIFICATION = ".ad l\n.de ad\n..\n"
#: Stop hyphenating, then make the page's own ``.hy`` a no-op (as ``man --nh``).
NO_HYPHENATION = ".nh\n.de hy\n..\n"
#: The largest pages render in under a second; a page still running after this is looping.
FIRST_TRY_TIMEOUT_S = 20
RENDER_TIMEOUT_S = 120

_DECOMPRESS = {".gz": gzip.decompress, ".bz2": bz2.decompress, ".xz": lzma.decompress}


@dataclass(frozen=True)
class ManPage:
    """One manual page file: ``ls.1.gz`` is page ``ls`` of section ``1``."""

    page: str
    section: str
    path: Path


def page_name(path: Path) -> tuple[str, str]:
    """(page, section) of a manual page file name: ``sigevent.3type.gz`` -> ("sigevent", "3type")."""
    name = path.name
    for suffix in _DECOMPRESS:
        name = name.removesuffix(suffix)
    page, _, section = name.rpartition(".")
    return (page, section) if page else (name, "")


def read_roff(path: Path) -> str:
    """The roff source of a (possibly compressed) page, as UTF-8 text.

    Debian's translated pages are all UTF-8; a page that is not raises
    ``UnicodeDecodeError`` so the caller can count and skip it rather than
    render mojibake.
    """
    data = path.read_bytes()
    decompress = _DECOMPRESS.get(path.suffix)
    if decompress is not None:
        data = decompress(data)
    return data.decode("utf-8")


def is_alias(source: str) -> bool:
    """Whether a page is only a ``.so`` include of another page (an alias: rendering it duplicates the target)."""
    lines = [ln.strip() for ln in source.splitlines()]
    body = [ln for ln in lines if ln and not ln.startswith(('.\\"', "'\\\"", '\\"', '.\\\\"'))]
    return bool(body) and all(ln.startswith(".so ") or ln == "." for ln in body)


def find_pages(man_dir: Path) -> tuple[list[ManPage], Counter[str]]:
    """The pages under ``man_dir/man*/``, sorted by (section, page), and counts of what was skipped.

    Symbolic links and ``.so`` stubs are aliases of a page that is itself
    listed; keeping them would put the same text into both splits.
    """
    skipped: Counter[str] = Counter()
    pages = []
    for path in sorted(man_dir.glob("man*/*")):
        if path.is_symlink():
            skipped["skipped: alias (symlink)"] += 1
            continue
        if not path.is_file():
            continue
        page, section = page_name(path)
        pages.append(ManPage(page, section, path))
    pages.sort(key=lambda p: (p.section, p.page, p.path.name))
    return pages, skipped


_SGR = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_OVERSTRIKE = re.compile(r".\x08")


def plain_text(rendered: str) -> str:
    """Rendered output without terminal formatting: SGR escapes and ``X\\bX`` / ``_\\bX`` overstrikes."""
    text = _SGR.sub("", rendered)
    while "\x08" in text:
        stripped = _OVERSTRIKE.sub("", text)
        if stripped == text:  # a backspace at the very start: nothing before it to strike
            stripped = text.replace("\x08", "")
        text = stripped
    return text


def require_renderer() -> str:
    """The path of ``groff``, or an error saying how to get it."""
    groff = shutil.which(RENDER_COMMAND[0])
    if groff is None:
        raise CalibenchError(
            "rendering manual pages needs groff, which is not installed: install it "
            "(Debian/Ubuntu: `apt-get install groff-base`) and pull again"
        )
    return groff


def renderer_version() -> str:
    """The first line of ``groff --version``, recorded in the asset manifest."""
    proc = subprocess.run([require_renderer(), "--version"], capture_output=True, text=True, check=False)
    lines = (proc.stdout or "").splitlines()
    return lines[0].strip() if lines else "groff (unknown version)"


def _environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "MAN_KEEP_FORMATTING"}
    env.update(LC_ALL="C.UTF-8", GROFF_NO_SGR="1")
    return env


@functools.cache
def macro_package(language: str) -> str | None:
    """groff's macro package for ``language`` (``ja``, ``zh``, ``de``...), if this groff ships one.

    ``man`` loads it too: for Japanese and Chinese it is what lets groff break
    lines between ideographs; without it lines only break at spaces and come
    out padded with long runs of blanks.
    """
    if not re.fullmatch(r"[a-z]{2,3}", language):
        return None
    proc = subprocess.run(
        [require_renderer(), f"-m{language}", "-Tutf8", "-z"],
        input=b"", capture_output=True, env=_environment(), check=False, timeout=60,
    )  # fmt: skip
    return language if proc.returncode == 0 and not proc.stderr.strip() else None


def render_roff(
    source: str, language: str | None = None, hyphenate: bool = False, timeout: float = RENDER_TIMEOUT_S
) -> str:
    """Plain UTF-8 text of one page of roff source, laid out with ``language``'s macro package if any.

    Raises :class:`RuntimeError` when groff fails or prints nothing, and
    ``subprocess.TimeoutExpired`` past ``timeout``, so a caller rendering many
    pages can retry or skip the page and count it.
    """
    macros = macro_package(language) if language else None
    command = [require_renderer(), *RENDER_COMMAND[1:]]
    if macros:
        command.insert(1, f"-m{macros}")
    preamble = NO_JUSTIFICATION if hyphenate else NO_JUSTIFICATION + NO_HYPHENATION
    proc = subprocess.run(
        command,
        input=(preamble + source).encode("utf-8"),
        capture_output=True,
        env=_environment(),
        timeout=timeout,
        check=False,
    )
    text = plain_text(proc.stdout.decode("utf-8", errors="replace"))
    if proc.returncode != 0 or not text.strip():
        reason = proc.stderr.decode("utf-8", errors="replace").strip().splitlines()
        raise RuntimeError(f"groff exited with {proc.returncode}: {reason[-1] if reason else 'no output'}")
    return text


@dataclass
class Rendered:
    """The pages of one language that rendered, in (section, page) order, and notes on the others."""

    pages: list[dict[str, str]]
    notes: Counter[str]

    @property
    def chars(self) -> int:
        return sum(len(p["text"]) for p in self.pages)


HYPHENATED = "rendered with hyphenation (groff looped without)"


def _render_one(page: ManPage, language: str | None) -> tuple[dict[str, str] | None, str | None]:
    """(the page record or None, a note for the manifest: why it was skipped, or how it was rendered)."""
    try:
        source = read_roff(page.path)
    except UnicodeDecodeError:
        return None, "skipped: not UTF-8"
    except (OSError, EOFError, lzma.LZMAError):
        return None, "skipped: unreadable"
    if is_alias(source):
        return None, "skipped: alias (.so)"
    note = None
    try:
        try:
            text = render_roff(source, language, timeout=FIRST_TRY_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            text, note = render_roff(source, language, hyphenate=True), HYPHENATED
    except (RuntimeError, subprocess.TimeoutExpired):
        return None, "skipped: render failed"
    return {"page": page.page, "section": page.section, "text": text}, note


def render_pages(pages: Sequence[ManPage], language: str | None, label: str, workers: int | None = None) -> Rendered:
    """Render ``pages`` (of ``language``) in parallel, one groff process each, with a progress bar; order is kept.

    Threads suffice: each page is a subprocess, so the GIL is not the limit.
    A page that cannot be read or rendered is skipped and counted, not fatal:
    one odd page among hundreds should not cost the whole language.
    """
    from calibench.progress import task

    require_renderer()
    if language:
        macro_package(language)  # probe once, before the threads
    workers = workers or max(1, os.cpu_count() or 1)
    out: list[dict[str, str]] = []
    notes: Counter[str] = Counter()
    with task(f"rendering {label}", total=len(pages), unit="pages") as bar, ThreadPoolExecutor(workers) as pool:
        for record, note in pool.map(lambda page: _render_one(page, language), pages):
            if record is not None:
                out.append(record)
            if note is not None:
                notes[note] += 1
            bar.advance()
    return Rendered(out, notes)


# --- cleaning rendered text into a document ----------------------------------------

#: Sections that are the translation team's credits or a project colophon: the
#: same paragraphs on hundreds of pages (names, addresses, a licence notice),
#: text in no particular language that would repeat across both splits.
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
