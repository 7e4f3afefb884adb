"""Stage 2: processing source text into pool windows.

Per document, in this order:

1. **reformat** (optional): worked math and question-answer text becomes
   ``Question: ...\\nReasoning: ...\\nAnswer: ...``.  Recognised forms:
   ``Problem: ... Solution: ... \\boxed{A}`` (MATH) and
   ``Question: ... Answer: ... #### A`` (GSM8K); other text is unchanged;
2. **length filter**: documents under ``min_tokens`` tokens are dropped;
3. **truncation at a paragraph boundary**: a document longer than the window
   is cut at the last blank line (else the last line break) that keeps it
   within the window; only a document whose first paragraph alone is too long
   is cut mid-paragraph (counted as ``hard_cuts``).

Windows: with ``pack`` (the default), every window starts at the start of a
document and is filled to exactly the window length with the following
documents (joined by a blank line), the last one cut where the window ends, so
no padding reaches the compression algorithm (llm-compressor's GPTQ and Wanda
accumulate statistics over every position, padding included).  Without
``pack``, a window is one document, right-padded with attention mask 0.
Documents are taken in a seeded random order and none is used twice.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from calibench.core.errors import CorpusTooShortError
from calibench.core.progress import task

JOINER = "\n\n"
DEFAULT_MIN_TOKENS = 32

_MATH = re.compile(r"^Problem:\s*\n(?P<q>.*?)\n\s*\nSolution:\s*\n(?P<s>.*)$", re.S)
_GSM = re.compile(r"^Question:\s*(?P<q>.*?)\nAnswer:\s*(?P<s>.*?)\n####\s*(?P<a>.+?)\s*$", re.S)


def boxed_answer(text: str) -> str | None:
    """The content of the last ``\\boxed{...}`` (nested braces allowed), or None."""
    start = text.rfind("\\boxed{")
    if start < 0:
        return None
    i = start + len("\\boxed{")
    depth = 1
    for j in range(i, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return text[i:j].strip()
    return None


def reformat_text(text: str) -> str | None:
    """Question/reasoning/answer form of a recognised math or QA text, else None."""
    m = _GSM.match(text)
    if m:
        return f"Question: {m['q'].strip()}\nReasoning: {m['s'].strip()}\nAnswer: {m['a'].strip()}"
    m = _MATH.match(text)
    if m:
        answer = boxed_answer(m["s"])
        if answer is not None:
            return f"Question: {m['q'].strip()}\nReasoning: {m['s'].strip()}\nAnswer: {answer}"
    return None


def truncate_at_paragraph(text: str, tokenizer: Any, max_tokens: int) -> tuple[list[int], str]:
    """Token ids of ``text`` cut to at most ``max_tokens`` at a paragraph boundary; and how it was cut.

    The second value is ``"none"``, ``"paragraph"``, ``"line"`` or ``"hard"``.
    """
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids = enc["input_ids"]
    if len(ids) <= max_tokens:
        return list(ids), "none"
    limit = enc["offset_mapping"][max_tokens][0]  # first character that does not fit
    for boundary, how in ((JOINER, "paragraph"), ("\n", "line")):
        cut = text.rfind(boundary, 0, limit + 1)
        if cut > 0:
            kept = tokenizer(text[:cut].rstrip(), add_special_tokens=False)["input_ids"]
            if 0 < len(kept) <= max_tokens:
                return list(kept), how
    return list(ids[:max_tokens]), "hard"


@dataclass
class ProcessingSettings:
    min_tokens: int = DEFAULT_MIN_TOKENS
    reformat: bool = True
    pack: bool = True

    def record(self) -> dict[str, Any]:
        return {
            "min_tokens": self.min_tokens,
            "reformat": self.reformat,
            "pack": self.pack,
            "joiner": JOINER,
            "truncation": "last paragraph (blank line), else line break, that fits",
        }


@dataclass
class ProcessedWindows:
    tokens: np.ndarray  # (count, length) int32
    mask: np.ndarray  # (count, length) uint8
    documents: list[list[int]]  # per window, the document indices it holds (first one starts the window)
    stats: dict[str, int] = field(default_factory=dict)


def process_documents(
    docs: Any,
    tokenizer: Any,
    count: int,
    length: int,
    rng: np.random.Generator,
    settings: ProcessingSettings,
    label: str = "source",
) -> ProcessedWindows:
    """``count`` windows of ``length`` tokens from ``docs`` (a :class:`~calibench.data.sources.base.Documents`)."""

    joiner = tokenizer(JOINER, add_special_tokens=False)["input_ids"]
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
    stats = {
        "documents_read": 0,
        "too_short": 0,
        "reformatted": 0,
        "truncated_paragraph": 0,
        "truncated_line": 0,
        "hard_cuts": 0,
    }
    rows: list[np.ndarray] = []
    masks: list[np.ndarray] = []
    provenance: list[list[int]] = []
    current: list[int] = []
    current_docs: list[int] = []

    def close(row: list[int]) -> None:
        arr = np.full(length, pad_id, dtype=np.int32)
        arr[: len(row)] = row[:length]
        m = np.zeros(length, dtype=np.uint8)
        m[: min(len(row), length)] = 1
        rows.append(arr)
        masks.append(m)
        provenance.append(list(current_docs))

    order = rng.permutation(len(docs))
    chunk = 64
    with task(f"stage 2: processing {label}", total=count, unit="windows") as bar:
        for begin in range(0, len(order), chunk):
            indices = [int(i) for i in order[begin : begin + chunk]]
            for doc_index, text in zip(indices, docs.batch(indices)):
                stats["documents_read"] += 1
                if settings.reformat:
                    reformatted = reformat_text(text)
                    if reformatted is not None:
                        text = reformatted
                        stats["reformatted"] += 1
                ids, how = truncate_at_paragraph(text, tokenizer, length)
                if len(ids) < settings.min_tokens:
                    stats["too_short"] += 1
                    continue
                if how != "none":
                    stats[{"paragraph": "truncated_paragraph", "line": "truncated_line", "hard": "hard_cuts"}[how]] += 1
                if not settings.pack:
                    current_docs[:] = [doc_index]
                    close(ids)
                else:
                    if current:
                        current.extend(joiner)
                    current.extend(ids)
                    current_docs.append(doc_index)
                    if len(current) >= length:
                        close(current)
                        current.clear()
                        current_docs.clear()
                    else:
                        continue
                bar.advance()
                if len(rows) == count:
                    return ProcessedWindows(np.stack(rows), np.stack(masks), provenance, stats)
    raise CorpusTooShortError(
        f"source '{label}' gives only {len(rows)} windows of {length} tokens after processing (documents of at "
        f"least {settings.min_tokens} tokens), but {count} were asked for; lower --pool-size, --seq-len or --min-tokens"
    )
