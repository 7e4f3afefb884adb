"""Local text files: .txt (documents separated by blank lines), .jsonl and .parquet."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from calibench.core.errors import CalibenchError
from calibench.core.fsutil import file_sha256, read_text
from calibench.data.sources.base import CONCAT, Documents, ListDocuments, TextSource

LOCAL_SUFFIXES = (".txt", ".jsonl", ".parquet")


def _read_txt(path: Path, text_field: str) -> list[str]:
    text = read_text(path, "text file")
    return [part for part in re.split(r"\n\s*\n", text) if part.strip()]


def iter_jsonl(path: Path) -> Iterator[tuple[int, Any]]:
    """(line number, record) for every non-blank line; a line that is not JSON is one clear error."""
    with path.open(encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                yield line_no, json.loads(line)
            except json.JSONDecodeError as exc:
                raise CalibenchError(
                    f"{path}:{line_no} is not valid JSON ({exc.msg}): fix or remove that line"
                ) from None


def _read_jsonl(path: Path, text_field: str) -> list[str]:
    texts = []
    for line_no, record in iter_jsonl(path):
        if not isinstance(record, dict) or text_field not in record:
            raise CalibenchError(f"{path}:{line_no} has no '{text_field}' field: pass --text-field with the right name")
        texts.append(str(record[text_field]))
    return texts


def _read_parquet(path: Path, text_field: str) -> list[str]:
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    if text_field not in table.column_names:
        raise CalibenchError(
            f"{path} has no '{text_field}' column (columns: {', '.join(table.column_names)}): pass --text-field"
        )
    return [str(t) for t in table.column(text_field).to_pylist() if t is not None]


_READERS = {".txt": _read_txt, ".jsonl": _read_jsonl, ".parquet": _read_parquet}


class LocalFileSource(TextSource):
    kind = "local"
    splits = ("all",)
    default_split = "all"
    default_mode = CONCAT

    def __init__(self, path: str | Path, text_field: str = "text"):
        self.path = Path(path)
        self.name = self.path.name
        self.text_field = text_field
        self.description = f"local file {self.path}"
        self._docs: ListDocuments | None = None

    def spec(self) -> dict[str, Any]:
        return {"path": str(self.path.resolve()), "text_field": self.text_field, "file_sha256": file_sha256(self.path)}

    def documents(self, split: str) -> Documents:
        if self._docs is None:
            reader = _READERS.get(self.path.suffix.lower())
            if reader is None:
                raise CalibenchError(
                    f"{self.path}: unsupported file type '{self.path.suffix}' (use {', '.join(LOCAL_SUFFIXES)})"
                )
            if not self.path.is_file():
                raise CalibenchError(f"{self.path} does not exist or is not a file: check the path")
            try:
                texts = reader(self.path, self.text_field)
            except CalibenchError:
                raise
            except UnicodeDecodeError as exc:
                raise CalibenchError(
                    f"{self.path} is not UTF-8 text (0x{exc.object[exc.start]:02x} cannot start a character); "
                    "save it as UTF-8"
                ) from None
            except (OSError, ValueError) as exc:
                reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                raise CalibenchError(
                    f"cannot read {self.path} ({reason}): check that it is a readable {self.path.suffix} file"
                ) from None
            self._docs = ListDocuments(texts)
        return self._docs
