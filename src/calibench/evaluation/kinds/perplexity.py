"""The ``ppl:`` task kind: perplexity on held-out text by the papers' protocol.

``ppl:NAME`` is a text of :data:`calibench.evaluation.heldout.HELDOUT_TEXTS`,
``ppl:FILE`` a local .txt/.jsonl/.parquet file.  Prepare reads every text
(a missing pack fails, a hub text offline is skipped); run tokenizes it once,
cuts windows and scores them (:mod:`calibench.evaluation.perplexity`).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from calibench.core.connectivity import env_offline
from calibench.core.errors import CalibenchError, UnknownNameError, did_you_mean
from calibench.core.paths import home
from calibench.data.sources.local import LOCAL_SUFFIXES
from calibench.evaluation.cache import HELDOUT_DOCS, HELDOUT_IDS, tokenizer_key
from calibench.evaluation.heldout import HELDOUT_TEXTS, HeldoutText, load_heldout_texts, local_heldout
from calibench.evaluation.kinds.base import EvalContext, KindOutput, TaskKind, announce
from calibench.evaluation.mirrors import pack_root
from calibench.evaluation.perplexity import cut_windows, resolve_bos_option, score_windows, tokenize_joined
from calibench.evaluation.results import EvalResult, EvalRow, TaskRecord
from calibench.evaluation.samples import Item, ItemBlock, window_items
from calibench.evaluation.tasks import PERPLEXITY_KIND, TaskRequest

PPL_PREFIX = "ppl:"


class PerplexityKind(TaskKind):
    name = PERPLEXITY_KIND
    order = 10

    def parse(self, name: str, offline: bool | None) -> list[TaskRequest] | None:
        if name in HELDOUT_TEXTS:
            raise UnknownNameError(f"unknown task '{name}' (did you mean '{PPL_PREFIX}{name}'?)")
        if not name.startswith(PPL_PREFIX):
            return None
        dataset = name[len(PPL_PREFIX) :]
        if dataset not in HELDOUT_TEXTS and _is_file_spec(dataset):
            if not Path(dataset).is_file():
                raise CalibenchError(f"no such file for perplexity: {dataset}")
            return [TaskRequest(name, PERPLEXITY_KIND, local_heldout(dataset))]
        if dataset not in HELDOUT_TEXTS:
            raise UnknownNameError(
                f"unknown perplexity dataset '{dataset}'{did_you_mean(dataset, list(HELDOUT_TEXTS))}"
            )
        return [TaskRequest(name, PERPLEXITY_KIND, HELDOUT_TEXTS[dataset])]

    def known_names(self) -> list[str]:
        return [PPL_PREFIX + n for n in HELDOUT_TEXTS]

    def offline_names(self) -> list[str]:
        return [PPL_PREFIX + n for n, h in HELDOUT_TEXTS.items() if h.offline]

    def needs_hub(self, requests: list[TaskRequest]) -> bool:
        return any(not r.spec.offline for r in requests)

    def prepare(self, requests: list[TaskRequest], ctx: EvalContext) -> list[tuple[TaskRequest, TaskRecord, list[str]]]:
        """Every text read (a missing data pack, or an empty text, fails here, before the model loads)."""
        prepared = [(request, *load_heldout(request, ctx.conn)) for request in requests]
        for request, record, texts in prepared:
            if record.status == "ok" and not any(text.strip() for text in texts):
                raise CalibenchError(f"{request.name}: the held-out text is empty: give a file with text in it")
        return prepared

    def run(self, prepared: list[tuple[TaskRequest, TaskRecord, list[str]]], ctx: EvalContext) -> KindOutput:
        add_bos = resolve_bos_option(ctx.tokenizer, ctx.bos)
        out = KindOutput(finish=lambda result: _record_bos(result, add_bos))
        for request, record, texts in prepared:
            out.records[request.name] = record
            if record.status == "ok":
                announce(f"{request.name}: perplexity, seq_len {ctx.seq_len}")
                rows, items = run_perplexity(request.spec, record, texts, ctx.loaded_model, ctx.tokenizer,
                                             ctx.seq_len, bool(add_bos), ctx.batch_size, ctx.max_windows,
                                             items=ctx.items)  # fmt: skip
                out.rows.extend(rows)
                out.samples[request.name] = items
        return out


KIND = PerplexityKind()


def _record_bos(result: EvalResult, add_bos: bool) -> None:
    result.settings["bos_resolved"] = add_bos


def load_heldout(request: TaskRequest, conn: Any) -> tuple[TaskRecord, list[str]]:
    """The texts of a ``ppl:`` request and its record (skipped, with the reason, when they cannot be had)."""
    spec: HeldoutText = request.spec
    record = TaskRecord(task=request.name, kind=PERPLEXITY_KIND, split=spec.split, reference_split=spec.split)
    record.details.update(spec.protocol())
    started = time.perf_counter()
    # Offline by the environment, `datasets` fails fast (or reads its cache); offline because
    # the hub is unreachable (or on request), it would retry for ~25 s: do not try.
    if not spec.offline and conn.offline and not env_offline() and not os.environ.get("CALIBENCH_HUB_MIRROR"):
        record.status, record.reason = "skipped", f"{spec.name} is a hub dataset and the run is offline ({conn.reason})"
        return record, []
    if spec.kind == "pack":
        pack_root()  # a one-line error naming the pull command when the pack is missing
    try:
        texts, fingerprint = cached_heldout_texts(spec)
    except CalibenchError as exc:
        if spec.offline:
            raise
        record.status, record.reason = "skipped", str(exc)
        return record, []
    record.mode = "offline" if spec.offline else "online"
    record.data = f"{spec.kind} source {spec.source}, split {spec.split}"
    record.details["fingerprint"] = fingerprint
    record.details["documents"] = len(texts)
    record.seconds = time.perf_counter() - started
    return record, texts


def run_perplexity(
    spec: HeldoutText,
    record: TaskRecord,
    texts: list[str],
    model: Any,
    tokenizer: Any,
    seq_len: int,
    add_bos: bool,
    batch_size: int,
    max_windows: int | None,
    items: ItemBlock | None = None,
) -> tuple[list[EvalRow], list[Item]]:
    """Score one text: its row and per-window items; fills in its record.

    ``items`` scores the windows at the block's positions only (their items
    keep their window numbers and get their positions, so blocks pair across cells).
    """
    started = time.perf_counter()
    ids = cached_token_ids(spec, record.details.get("fingerprint"), texts, tokenizer)
    body = seq_len - 1 if add_bos else seq_len
    available = len(ids) // body
    if spec.max_windows is not None:
        available = min(available, spec.max_windows)  # the protocol's own cap is not a limit
    cap = available if max_windows is None else min(available, max_windows)
    chosen = None
    if items is not None:
        chosen = items.chosen(available)
        cap = available
    if cap == 0:
        raise CalibenchError(
            f"{record.task}: the held-out text has {len(ids):,} tokens, fewer than one window of {seq_len}; "
            "lower --seq-len"
        )
    windows = cut_windows(ids, seq_len, tokenizer.bos_token_id if add_bos else None, cap)
    if chosen is not None:
        windows = windows[chosen]
    scores = score_windows(model, windows, batch_size=batch_size, label=record.task)
    ppl, mean_nll, stderr = scores.perplexity, scores.mean_nll, scores.stderr
    record.n_total = available
    record.n_evaluated = len(windows)
    record.limit = max_windows if len(windows) < available else None
    record.details.update({
        "seq_len": seq_len, "bos": add_bos, "tokens": int(len(windows) * (seq_len - 1)),
        "text_tokens": int(len(ids)), "mean_nll": mean_nll,
        "stderr_method": "delta method over windows",
    })  # fmt: skip
    record.seconds += time.perf_counter() - started
    row = EvalRow(task=record.task, metric="perplexity", value=ppl, stderr=stderr, n=len(windows), limit=record.limit)
    return [row], window_items(scores.nll_per_window, scores.tokens_per_window, items, chosen)


def cached_heldout_texts(spec: HeldoutText) -> tuple[list[str], str]:
    """:func:`load_heldout_texts`, once per process for a spec, cache root and (local file) size and mtime."""
    where: Any = str(home()), os.environ.get("CALIBENCH_HUB_MIRROR")
    if spec.kind == "local":
        stat = os.stat(spec.source)
        where = (*where, os.path.abspath(spec.source), stat.st_size, stat.st_mtime_ns)
    texts, fingerprint = HELDOUT_DOCS.get_or_make((spec, where), lambda: load_heldout_texts(spec))
    return list(texts), fingerprint


def cached_token_ids(spec: HeldoutText, fingerprint: str | None, texts: list[str], tokenizer: Any) -> Any:
    """The joined text's token ids (:func:`tokenize_joined`), once per process for a text and a tokenizer.

    Keyed by the spec (joiner, document cap), the documents' fingerprint and
    the tokenizer (:func:`calibench.evaluation.cache.tokenizer_key`); the
    caller gets its own copy.  Without a fingerprint nothing is cached.
    """
    tokenizer_part = tokenizer_key(tokenizer)
    if fingerprint is None or tokenizer_part is None:
        return tokenize_joined(texts, tokenizer, spec.joiner)
    key = (spec, fingerprint, len(texts), tokenizer_part)
    return HELDOUT_IDS.get_or_make(key, lambda: tokenize_joined(texts, tokenizer, spec.joiner)).copy()


def _is_file_spec(text: str) -> bool:
    return Path(text).suffix.lower() in LOCAL_SUFFIXES or os.sep in text or Path(text).exists()
