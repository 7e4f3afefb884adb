"""Multilingual offline text: manual pages in eight languages, one source per language.

``man-en``, ``man-de``, ``man-fr``, ``man-es``, ``man-pl``, ``man-ru``,
``man-ja`` and ``man-zh`` read the ``manpages-l10n`` asset: Debian's
translated manual pages (and the English originals of the Linux man-pages
project), rendered to text when the asset is pulled.  Every language is the
same genre (reference documentation of the same programs, translated from the
same English), so a study can vary the language of the calibration text
while holding its domain fixed; ``man-en`` is the same-domain English
control.

Documents are manual pages, cleaned by :func:`.manpages.clean_page` (no
running header or footer, no translator credits, no base indentation,
single blank lines between paragraphs).  As for the offline domains, a hash
of each document's text puts one page in ten into ``heldout`` (the rule of
:func:`.offline.is_heldout`) and the rest into ``train``; ``ppl:man-de``
evaluates on ``heldout``, so no calibration set drawn from ``train`` holds
its text.  The source record names the language (ISO 639-1) and the exact
Debian package version.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from calibench.assets import MANIFEST_NAME, asset_path
from calibench.assets.catalog import MANPAGE_LANGUAGES, MANPAGE_SETS, MANPAGES, ManPageSet, manpages_file
from calibench.core.errors import CalibenchError
from calibench.data.sources.base import CONCAT, Documents, ListDocuments, TextSource
from calibench.data.sources.local import iter_jsonl
from calibench.data.sources.manpages import clean_page
from calibench.data.sources.offline import HELDOUT, HELDOUT_MODULUS, split_documents

TRAIN = "train"
PREFIX = "man-"
#: Bumped when :func:`.manpages.clean_page` changes what a document is, so records tell the versions apart.
CLEANING = 1


def source_name(language: str) -> str:
    """``man-<language>``: the registered name of a language's source."""
    return f"{PREFIX}{language}"


def manpage_set(language: str) -> ManPageSet:
    """The package and folder of one language, or an error listing the languages there are."""
    for mset in MANPAGE_SETS:
        if mset.language == language:
            return mset
    raise CalibenchError(
        f"no manual pages for language '{language}' (have: {', '.join(MANPAGE_LANGUAGES)}): "
        f"use one of the sources {', '.join(source_name(code) for code in MANPAGE_LANGUAGES)}"
    )


def _asset_root() -> Path:

    root = asset_path(MANPAGES)
    if root is None:
        raise CalibenchError(
            f"the manual pages are not pulled (asset '{MANPAGES}'): run `calibench assets pull {MANPAGES}`"
        )
    return root


def read_pages(root: Path, language: str) -> list[dict[str, str]]:
    """The rendered pages of ``language`` stored under ``root`` (the asset directory), in stored order."""
    path = root / manpages_file(language)
    if not path.is_file():
        have = sorted(p.stem for p in root.glob("*.jsonl"))
        raise CalibenchError(
            f"no manual pages for language '{language}' in {root} (have: {', '.join(have) or 'none'}): "
            f"pull them again with `calibench assets pull --force {MANPAGES}`"
        )

    pages = []
    for line_no, record in iter_jsonl(path):
        try:
            pages.append({"page": str(record["page"]), "section": str(record["section"]), "text": str(record["text"])})
        except (KeyError, TypeError):
            raise CalibenchError(
                f"{path}:{line_no} is not a manual page record: pull again with "
                f"`calibench assets pull --force {MANPAGES}`"
            ) from None
    return pages


def page_documents(pages: list[dict[str, str]]) -> list[str]:
    """The cleaned text of each page, in order; pages left empty by cleaning are dropped."""
    texts = (clean_page(page["text"]) for page in pages)
    return [text for text in texts if text.strip()]


class ManPageSource(TextSource):
    """The manual pages of one language, split into ``train`` and ``heldout`` by a hash of each page."""

    kind = "manpages"
    splits = (TRAIN, HELDOUT)
    default_split = TRAIN
    heldout_split = HELDOUT
    default_mode = CONCAT  # many pages are shorter than a 2,048-token window

    def __init__(self, language: str, root: str | Path | None = None):
        """``root`` overrides the asset directory (tests point it at a small folder of the same layout)."""
        self.manpages = manpage_set(language)
        self.language = language
        self.name = source_name(language)
        self.description = f"{self.manpages.name} manual pages ({self.manpages.package.name})"
        self._root = Path(root) if root is not None else None
        self._docs: dict[str, Documents] = {}
        self._all: list[str] | None = None

    def root(self) -> Path:
        return self._root if self._root is not None else _asset_root()

    def _package_version(self) -> str:
        """The version the asset was pulled from (its manifest), else the pinned one."""

        try:
            manifest = json.loads((self.root() / MANIFEST_NAME).read_text(encoding="utf-8"))
            return str(manifest["languages"][self.language]["version"])
        except (OSError, ValueError, KeyError, TypeError):
            return self.manpages.package.version

    def spec(self) -> dict[str, Any]:
        return {
            "asset": MANPAGES,
            "language": self.language,
            "package": self.manpages.package.name,
            "package_version": self._package_version(),
            "man_dir": f"usr/share/man/{self.manpages.man_dir}".rstrip("/"),
            "cleaning": CLEANING,
            "heldout_rule": f"sha256(text)[:8] % {HELDOUT_MODULUS} == 0",
        }

    def documents(self, split: str) -> Documents:
        split = self.check_split(split)
        if split not in self._docs:
            if self._all is None:
                self._all = page_documents(read_pages(self.root(), self.language))
            self._docs[split] = ListDocuments(split_documents(self._all, split))
        return self._docs[split]
