"""Chat and SFT conversations as a calibration source, rendered with the model's chat template.

Calibrate in the format the model was fine-tuned on: each conversation (a
``messages`` column of role/content lists, or instruction/response fields of
SFT rows) is rendered by ``tokenizer.apply_chat_template``, so the special
tokens and turn markers are exactly those the model saw in training (see
:mod:`calibench.data.chat`).  The default length mode is one conversation per
window (``sample``: truncated or padded, with an attention mask); ``concat``
packs whole rendered conversations back to back.  The template's hash and the
thinking-mode choice are recorded in the manifest.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from calibench.core.errors import CalibenchError, CorpusTooShortError, ParameterError
from calibench.core.fsutil import file_sha256
from calibench.data.chat import render_conversations
from calibench.data.sampling import max_disjoint_windows, place_disjoint_windows
from calibench.data.sources.base import CONCAT, SAMPLE, Documents, Indices, ListDocuments, Sampled, TextSource
from calibench.data.sources.hub_any import HUB_PREFIX, load_hub_rows, parse_hub_name

CHAT_SUFFIXES = (".jsonl", ".json", ".parquet")


def read_rows(data: str, split: str | None, revision: str | None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Rows of a local file or of ``hub:ORG/NAME[:CONFIG]``, and a record of where they came from."""

    if data.startswith(HUB_PREFIX):
        where = parse_hub_name(data)
        dataset = load_hub_rows(where["repo"], where["config"], split or "train", revision, False, 0)
        return [dict(row) for row in dataset], {**where, "split": split or "train", "revision": revision}
    if revision is not None:
        raise ParameterError("revision", "applies to hub datasets only, not to a local file")
    path = Path(data)
    if path.suffix.lower() not in CHAT_SUFFIXES:
        raise ParameterError("data", f"'{data}' is neither hub:ORG/NAME nor a {'/'.join(CHAT_SUFFIXES)} file")
    if not path.is_file():
        raise ParameterError("data", f"{data} does not exist or is not a file")
    return _read_file(path), {"path": str(path), "file_sha256": file_sha256(path)}


def _read_file(path: Path) -> list[dict[str, Any]]:
    try:
        if path.suffix.lower() == ".parquet":
            import pyarrow.parquet as pq

            return pq.read_table(path).to_pylist()
        text = path.read_text(encoding="utf-8")
        if path.suffix.lower() == ".json":
            rows = json.loads(text)
            if not isinstance(rows, list):
                raise CalibenchError(f"{path} holds a JSON {type(rows).__name__}, not a list of rows")
            return rows
        from calibench.data.sources.local import iter_jsonl

        return [record for _, record in iter_jsonl(path)]
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        if isinstance(exc, CalibenchError):
            raise
        raise CalibenchError(f"cannot read {path} ({(str(exc).splitlines() or [type(exc).__name__])[0]})") from None


class ConversationSource(TextSource):
    """Rendered conversations; a document is one conversation (kept as JSON for the fingerprint)."""

    kind = "chat"
    modes = (SAMPLE, CONCAT)
    default_mode = SAMPLE

    def __init__(
        self, data: str, fmt: Any, split: str | None = None, revision: str | None = None, template: str | None = None
    ):
        self.data, self.fmt, self.revision, self.template = data, fmt, revision, template
        self.name = f"chat:{data}"
        self.description = f"conversations from {data}"
        self._split = split
        self._docs: Documents | None = None
        self._conversations: list[list[dict[str, Any]]] = []
        self._origin: dict[str, Any] = {}

    def check_split(self, split: str | None) -> str:
        return split or self._split or "train"

    def spec(self) -> dict[str, Any]:
        return {"data": self.data, "format": self.fmt.model_dump(mode="json"), **self._origin}

    def documents(self, split: str) -> Documents:
        if self._docs is None:
            from calibench.data.chat import conversations_from_rows

            rows, self._origin = read_rows(self.data, split, self.revision)
            self._conversations = conversations_from_rows(rows, self.fmt)
            self._docs = ListDocuments([json.dumps(c, ensure_ascii=False, sort_keys=True) for c in self._conversations])
        return self._docs

    def encode(self, docs: Documents, indices: Indices, tokenizer: Any) -> list[list[int]]:

        return render_conversations(
            [self._conversations[int(i)] for i in indices],
            tokenizer,
            enable_thinking=self.fmt.enable_thinking,
            template=self.template,
        )

    def _sample_concat(
        self, docs: Documents, tokenizer: Any, count: int, length: int, rng: np.random.Generator
    ) -> Sampled:
        """Whole rendered conversations back to back (their turn markers delimit them), cut into disjoint windows."""

        stream = np.concatenate(
            [np.asarray(ids, dtype=np.int32) for ids in self.encode(docs, range(len(docs)), tokenizer)]
            or [np.zeros(0, np.int32)]
        )
        possible = max_disjoint_windows(len(stream), length)
        if possible < count:
            raise CorpusTooShortError(
                f"{self.data} renders to {len(stream):,} tokens: room for {possible} windows of "
                f"{length} tokens, but {count} were asked for; lower --n, --seq-len or --sets"
            )
        starts = place_disjoint_windows(len(stream), count, length, rng)
        return Sampled(
            np.stack([stream[s : s + length] for s in starts]).astype(np.int32), [(-1, int(s), length) for s in starts]
        )
