"""Manual pages rendered to text once, when the ``manpages-l10n`` asset is pulled.

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

Called by the asset's prepare step (:mod:`calibench.assets.catalog`); the
cleaning the sources apply when they load a page is
:mod:`calibench.data.sources.manpages`.
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

from calibench.core.errors import CalibenchError
from calibench.core.progress import task

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
