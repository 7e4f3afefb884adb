"""Counting the token ids a workload uses: calibration sets, text, sources and evaluation tasks.

Each kind of input is one entry of :data:`INPUT_KINDS` (a function from the
tokenizer and a spec to token sequences plus a description), so adding one
is one function.  :func:`collect` adds the counts up, applies the optional
minimum count and top-k, adds the always-kept ids (:mod:`.always`) and, given
held-out text, reports how much of it the keep set covers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from calibench.core import progress
from calibench.core.errors import CalibenchError
from calibench.core.settings import DEFAULTS
from calibench.data.calibset import CalibrationSet
from calibench.data.sources import get_source
from calibench.data.tokenizer import identify
from calibench.evaluation.heldout import HELDOUT_TEXTS, load_heldout_texts, local_heldout
from calibench.evaluation.perplexity import tokenize_joined
from calibench.vocab.always import always_kept
from calibench.vocab.keepset import Coverage, Vocabulary
from calibench.vocab.lmeval_tokens import task_token_ids

TokenIds = Sequence[int] | np.ndarray  # one text's token ids: a list or an integer array
Sequences = Sequence[TokenIds]


def _texts_ids(tokenizer: Any, texts: list[str], label: str) -> Sequences:
    out: list[TokenIds] = []
    step = 256
    with progress.task(f"tokenizing {label}", total=len(texts), unit="docs") as bar:
        for start in range(0, len(texts), step):
            out.extend(tokenizer(texts[start : start + step], add_special_tokens=True)["input_ids"])
            bar.advance(min(step, len(texts) - start))
    return out


def _calib(tokenizer: Any, spec: str, **_: Any) -> tuple[Sequences, dict[str, Any]]:

    calib = CalibrationSet.load(spec, tokenizer=tokenizer)
    mask = calib.attention_mask.astype(bool)
    rows = [row[m] for row, m in zip(calib.input_ids, mask)]
    return rows, {"kind": "calib", "spec": str(spec), "set_id": calib.set_id, "tokens": int(mask.sum())}


def _source_texts(spec: str) -> tuple[list[str], dict[str, Any]]:
    """``NAME[:SPLIT]`` of the source registry, or a .txt/.jsonl/.parquet file (all of it)."""

    name, _, split = spec.partition(":") if not _looks_like_path(spec) else (spec, "", "")
    source = get_source(name)
    split = source.check_split(split or None)
    documents = getattr(source, "documents", None)
    if documents is None:
        raise CalibenchError(f"source '{name}' has no text to count (it draws windows, not documents)")
    docs = documents(split)
    texts = list(getattr(docs, "texts", None) or docs.batch(range(len(docs))))
    return [t or "" for t in texts], {"spec": spec, "split": split, "fingerprint": docs.fingerprint(),
                                      "documents": len(texts)}  # fmt: skip


def _looks_like_path(spec: str) -> bool:
    from pathlib import Path

    return Path(spec).suffix.lower() in (".txt", ".jsonl", ".parquet") or Path(spec).exists()


def _text(tokenizer: Any, spec: str, **_: Any) -> tuple[Sequences, dict[str, Any]]:
    from pathlib import Path

    if not Path(spec).is_file():
        raise CalibenchError(f"--text {spec} does not exist or is not a file: give a .txt, .jsonl or .parquet file")
    texts, info = _source_texts(spec)
    ids = _texts_ids(tokenizer, texts, spec)
    return ids, {"kind": "text", **info, "tokens": sum(len(s) for s in ids)}


def _source(tokenizer: Any, spec: str, **_: Any) -> tuple[Sequences, dict[str, Any]]:
    texts, info = _source_texts(spec)
    ids = _texts_ids(tokenizer, texts, spec)
    return ids, {"kind": "source", **info, "tokens": sum(len(s) for s in ids)}


def _tasks(
    tokenizer: Any,
    spec: str,
    *,
    config: Any = None,
    limit: int | None = None,
    num_fewshot: int | None = 0,
    apply_chat_template: bool | str = False,
    offline: bool | None = DEFAULTS.offline,
    **_: Any,
) -> tuple[Sequences, dict[str, Any]]:

    if config is None:
        raise CalibenchError("counting lm-eval tasks needs the model's config: collect(..., model=SPEC)")
    ids, notes = task_token_ids(tokenizer, config, spec, limit=limit, num_fewshot=num_fewshot,
                                apply_chat_template=apply_chat_template, offline=offline)  # fmt: skip
    return ids, {"kind": "tasks", "spec": spec, "limit": limit, "num_fewshot": num_fewshot,
                 "apply_chat_template": apply_chat_template, "tasks": notes,
                 "tokens": sum(len(s) for s in ids)}  # fmt: skip


INPUT_KINDS: dict[str, Callable[..., tuple[Sequences, dict[str, Any]]]] = {
    "calib": _calib,
    "text": _text,
    "source": _source,
    "tasks": _tasks,
}


@dataclass
class Inputs:
    """What to count: lists of specs per input kind (the CLI's repeated options)."""

    calib: list[str] = field(default_factory=list)
    text: list[str] = field(default_factory=list)
    source: list[str] = field(default_factory=list)
    tasks: list[str] = field(default_factory=list)

    def items(self) -> Iterable[tuple[str, str]]:
        for kind in INPUT_KINDS:
            for spec in getattr(self, kind):
                yield kind, str(spec)

    def empty(self) -> bool:
        return not any(True for _ in self.items())


def bincount(sequences: Iterable[TokenIds], size: int) -> np.ndarray:
    counts = np.zeros(size, dtype=np.int64)
    for seq in sequences:
        arr = np.asarray(seq, dtype=np.int64)
        if arr.size:
            if arr.min() < 0 or arr.max() >= size:
                bad = int(arr.min()) if arr.min() < 0 else int(arr.max())
                raise CalibenchError(f"token id {bad} is outside the tokenizer's vocabulary of {size}")
            counts += np.bincount(arr, minlength=size)
    return counts


def select(counts: np.ndarray, min_count: int = 1, top_k: int | None = None) -> np.ndarray:
    """Ids seen at least ``min_count`` times, the ``top_k`` most frequent of them (ties: lower id first)."""
    if min_count < 1:
        raise CalibenchError(f"--min-count must be at least 1, got {min_count}")
    if top_k is not None and top_k < 1:
        raise CalibenchError(f"--top-k must be at least 1, got {top_k}")
    ids = np.flatnonzero(counts >= min_count)
    if top_k is not None and len(ids) > top_k:
        order = np.lexsort((ids, -counts[ids]))  # by count descending, then id
        ids = np.sort(ids[order[:top_k]])
    return ids


def coverage(vocab_ids: np.ndarray, sequences: Sequences, size: int, name: str) -> Coverage:
    counts = bincount(sequences, size)
    kept = np.zeros(size, dtype=bool)
    kept[vocab_ids] = True
    return Coverage(heldout=name, tokens=int(counts.sum()), kept_tokens=int(counts[kept].sum()),
                    distinct=int((counts > 0).sum()), distinct_kept=int(((counts > 0) & kept).sum()))  # fmt: skip


def heldout_sequences(tokenizer: Any, spec: str) -> Sequences:
    """Held-out text for coverage: a ``ppl:`` name (``wiki``, ``wikitext2``...) or a file."""

    name = spec.removeprefix("ppl:")
    if name in HELDOUT_TEXTS:
        held = HELDOUT_TEXTS[name]
    else:
        from pathlib import Path

        if not Path(name).is_file():
            known = ", ".join(HELDOUT_TEXTS)
            raise CalibenchError(f"--heldout {spec}: not a held-out text ({known}) nor a file")
        held = local_heldout(name)
    texts, _ = load_heldout_texts(held)
    return [tokenize_joined(texts, tokenizer, held.joiner)]


def collect(
    tokenizer: Any,
    inputs: Inputs,
    *,
    model: Any = None,
    min_count: int = 1,
    top_k: int | None = None,
    heldout: Sequence[str] = (),
    limit: int | None = None,
    num_fewshot: int | None = 0,
    apply_chat_template: bool | str = False,
    offline: bool | None = DEFAULTS.offline,
) -> Vocabulary:
    """The keep set of ``inputs`` for ``tokenizer``.

    ``model`` (a spec or config) is needed for lm-eval tasks only: lm-eval's
    encoding reads the model's config (context length, architecture).
    ``heldout`` texts are not counted; their coverage is reported.
    """
    if inputs.empty():
        raise CalibenchError("nothing to count: give at least one --calib, --text, --source or --tasks")
    size = len(tokenizer)
    select(np.zeros(1, dtype=np.int64), min_count, top_k)  # option checks before any work
    config = None
    if inputs.tasks:
        from calibench.models import load_config

        config = load_config(model) if isinstance(model, (str, bytes)) or hasattr(model, "__fspath__") else model
        config = getattr(config, "config", config)
    counts = np.zeros(size, dtype=np.int64)
    described = []
    for kind, spec in inputs.items():
        sequences, info = INPUT_KINDS[kind](tokenizer, spec, config=config, limit=limit, num_fewshot=num_fewshot,
                                            apply_chat_template=apply_chat_template, offline=offline)  # fmt: skip
        counts += bincount(sequences, size)
        described.append(info)
    if counts.sum() == 0:
        raise CalibenchError("the inputs hold no tokens: the keep set would be empty; give text to count")
    chosen = select(counts, min_count, top_k)
    if chosen.size == 0:
        raise CalibenchError(f"no token is seen --min-count {min_count} times (the most frequent is seen "
                             f"{int(counts.max())} times): the keep set would be empty; lower --min-count")  # fmt: skip
    always = always_kept(tokenizer, size)
    kept = np.union1d(chosen, np.asarray(sorted({i for ids in always.values() for i in ids}), dtype=np.int64))
    seen = np.flatnonzero(counts)
    vocab = Vocabulary(
        tokenizer=identify(tokenizer).to_dict(), kept=[int(i) for i in kept], counted_ids=[int(i) for i in seen],
        counts=[int(c) for c in counts[seen]], always=always, inputs=described, min_count=min_count, top_k=top_k,
    )  # fmt: skip
    for spec in heldout:
        vocab.coverage.append(coverage(kept, heldout_sequences(tokenizer, spec), size, spec))
    return vocab


def from_ids(tokenizer: Any, ids: Iterable[int], *, with_always: bool = True, note: str = "ids") -> Vocabulary:
    """A keep set from explicit ids (tests, or a list made elsewhere), with the always-kept ids added."""
    size = len(tokenizer)
    chosen = np.unique(np.asarray(list(ids), dtype=np.int64))
    always = always_kept(tokenizer, size) if with_always else {}
    extra = np.asarray(sorted({i for v in always.values() for i in v}), dtype=np.int64)
    kept = np.union1d(chosen, extra) if extra.size else chosen
    return Vocabulary(tokenizer=identify(tokenizer).to_dict(), kept=[int(i) for i in kept], always=always,
                      inputs=[{"kind": note, "tokens": int(chosen.size)}])  # fmt: skip
