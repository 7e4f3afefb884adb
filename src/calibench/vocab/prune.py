"""Pruning a causal LM's vocabulary in memory: the kept rows, the id maps, the tie.

:func:`prune` works on any model whose ``get_input_embeddings()`` is an
``nn.Embedding`` (subclasses included: Gemma's scaled one) and whose
``get_output_embeddings()`` is a linear head or ``None``, found by those
accessors, never by attribute names.  Tied matrices stay one matrix.  The
model keeps ``config.vocab_size`` (its logits are still that wide); the
record on ``model.calibench_vocab`` says what was done, and holds the dropped
rows until they are saved (``keep_dropped=False`` frees them at once, for
in-memory use such as a study cell).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, Field

from calibench.core.errors import CalibenchError
from calibench.vocab.hooks import attach_remap, attach_scatter, detach, remap_hook
from calibench.vocab.keepset import Vocabulary, check_ids, ids_sha256
from calibench.vocab.memory import MemoryReport, measure
from calibench.vocab.modes import get_mode

RECORD_FORMAT = "calibench-vocab-pruned"
ATTR = "calibench_vocab"


class PruneRecord(BaseModel):
    """What was pruned, how, and what is needed to undo it (``vocab.json`` in a saved directory)."""

    format: str = RECORD_FORMAT
    format_version: int = 1
    mode: str
    mode_summary: str
    tokenizer: dict[str, Any]
    vocab_size: int  # rows of the full embedding (the width of the logits)
    kept: list[int]
    kept_sha256: str
    tied: bool
    has_head: bool
    head_bias: bool
    hidden_size: int
    dtype: str
    fallback: int | None = None
    padding_idx: int | None = None  # the full embedding's (a compact table renumbers it)
    special_ids: dict[str, Any] = Field(default_factory=dict)  # config and generation-config ids, tokenizer space
    original: dict[str, Any] = Field(default_factory=dict)  # sha256 of the full embedding/head/bias, the model spec
    dropped_rows: str = "stored"  # "stored": vocab-dropped.safetensors; "reference": read from original["model"]
    memory: dict[str, Any] | None = None
    keep_inputs: list[dict[str, Any]] = Field(default_factory=list)
    coverage: list[dict[str, Any]] = Field(default_factory=list)

    @property
    def num_kept(self) -> int:
        return len(self.kept)


@dataclass
class PrunedVocab:
    """The record plus the dropped rows (None once released or never kept)."""

    record: PruneRecord
    dropped: dict[str, Any] | None = None
    report: MemoryReport | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def fallbacks(self) -> int:
        """How many input tokens were replaced by the fallback so far."""
        return self._remap.fallbacks if self._remap is not None else 0

    _remap: Any = None


def tensor_sha256(tensor: Any) -> str:
    import torch

    data = tensor.detach().contiguous().cpu().reshape(-1).view(torch.uint8).numpy()
    return hashlib.sha256(memoryview(data)).hexdigest()


def text_config(config: Any) -> Any:
    get = getattr(config, "get_text_config", None)
    return get() if callable(get) else config


def embedding_of(model: Any) -> Any:
    """The input embedding, refused in one line when the model has none calibench can prune."""
    import torch

    try:
        emb = model.get_input_embeddings()
    except (AttributeError, NotImplementedError):
        emb = None
    if not isinstance(emb, torch.nn.Embedding):
        what = "none" if emb is None else type(emb).__name__
        raise CalibenchError(
            f"{type(model).__name__} has no input embedding to prune (get_input_embeddings() gives "
            f"{what}, not an nn.Embedding): vocabulary pruning needs a token embedding table"
        )
    if emb.weight.dim() != 2 or not emb.weight.is_floating_point():
        raise CalibenchError(
            f"the input embedding of {type(model).__name__} is not a dense float matrix "
            f"({emb.weight.dtype}, shape {tuple(emb.weight.shape)}): prune the vocabulary before quantizing it"
        )
    return emb


def head_of(model: Any, rows: int) -> Any:
    """The output head (``None`` when the model has none), refused if it is not a dense (V, d) matrix."""
    try:
        head = model.get_output_embeddings()
    except (AttributeError, NotImplementedError):
        return None
    if head is None:
        return None
    weight = getattr(head, "weight", None)
    if weight is None or weight.dim() != 2 or not weight.is_floating_point() or weight.shape[0] != rows:
        shape = None if weight is None else tuple(weight.shape)
        raise CalibenchError(
            f"the output head of {type(model).__name__} is not a dense ({rows}, d) matrix "
            f"(shape {shape}): vocabulary pruning needs a float head; prune before quantizing it"
        )
    return head


def is_pruned(model: Any) -> bool:
    return getattr(model, ATTR, None) is not None


def prune(
    model: Any,
    vocab: Vocabulary,
    mode: str = "restricted",
    *,
    fallback: int | None = None,
    tokenizer: Any = None,
    keep_dropped: bool = True,
    source: str | None = None,
) -> PrunedVocab:
    """Keep only ``vocab.kept`` rows of ``model``'s embedding (and head, in restricted mode), in place.

    ``fallback`` (a kept token id) replaces dropped ids at the input instead
    of raising.  Returns (and sets ``model.calibench_vocab`` to) the record.
    """
    import torch

    spec = get_mode(mode)
    if tokenizer is not None:
        vocab.check_tokenizer(tokenizer)
    if is_pruned(model):
        raise CalibenchError("the model's vocabulary is pruned already: restore it first (`calibench vocab restore`)")
    emb = embedding_of(model)
    rows, hidden = emb.weight.shape
    head = head_of(model, rows)
    check_ids(vocab.kept, rows, "the keep set")
    tied = head is not None and head.weight is emb.weight
    if spec.head_pruned and head is None:
        raise CalibenchError(f"{type(model).__name__} has no output head: restricted mode has nothing to restrict; "
                             "use --mode exact-input")  # fmt: skip
    softcap = getattr(text_config(model.config), "final_logit_softcapping", None)
    if spec.head_pruned and softcap:
        raise CalibenchError(f"restricted mode cannot mask logits after final_logit_softcapping={softcap} "
                             "(-inf would become -cap): use --mode exact-input")  # fmt: skip
    device = emb.weight.device
    kept = torch.tensor(vocab.kept, dtype=torch.long, device=device)
    count = kept.numel()
    if fallback is not None:
        position = int(torch.searchsorted(kept, torch.tensor(fallback, device=device)))
        if position >= count or int(kept[position]) != fallback:
            raise CalibenchError(f"--fallback {fallback} is not in the keep set: choose a kept token (e.g. the unk "
                                 "or eos id) or add it to the vocabulary")  # fmt: skip
    before = measure(model)
    padding_idx = emb.padding_idx
    original = {"embedding_sha256": tensor_sha256(emb.weight), "model": source}
    bias = getattr(head, "bias", None) if head is not None else None
    if head is not None and not tied:
        original["head_sha256"] = tensor_sha256(head.weight)
    if bias is not None:
        original["head_bias_sha256"] = tensor_sha256(bias)
    mask = torch.ones(rows, dtype=torch.bool, device=device)
    mask[kept] = False
    dropped_ids = torch.nonzero(mask).flatten()
    dropped: dict[str, Any] | None = None
    if keep_dropped:
        dropped = {"embedding": emb.weight.detach()[dropped_ids].clone()}
        if head is not None and not tied:
            dropped["head"] = head.weight.detach()[dropped_ids].clone()
        if bias is not None:
            dropped["head_bias"] = bias.detach()[dropped_ids].clone()

    with torch.no_grad():
        if spec.head_pruned or not tied:  # the input table keeps K rows (exact-input tied keeps the shared one)
            _shrink_embedding(emb, kept)
        if spec.head_pruned:
            if tied:
                head.weight = emb.weight
            else:
                head.weight = torch.nn.Parameter(
                    head.weight.detach()[kept].clone(), requires_grad=head.weight.requires_grad
                )
            if bias is not None:
                head.bias = torch.nn.Parameter(bias.detach()[kept].clone(), requires_grad=bias.requires_grad)
            if hasattr(head, "out_features"):
                head.out_features = count
            attach_scatter(head, kept, rows)
    slot = torch.full((rows,), -1, dtype=torch.int32, device=device)
    shrunk = spec.head_pruned or not tied
    slot[kept] = torch.arange(count, dtype=torch.int32, device=device) if shrunk else kept.to(torch.int32)
    fallback_slot = None if fallback is None else int(slot[fallback])
    describe = tokenizer.convert_ids_to_tokens if tokenizer is not None else None
    remap = attach_remap(emb, slot, fallback_slot, describe)
    report = MemoryReport(before=before, after=measure(model))
    record = PruneRecord(
        mode=spec.name, mode_summary=spec.summary, tokenizer=vocab.tokenizer, vocab_size=rows, kept=vocab.kept,
        kept_sha256=ids_sha256(vocab.kept), tied=tied, has_head=head is not None, head_bias=bias is not None,
        hidden_size=hidden, dtype=str(emb.weight.dtype).removeprefix("torch."), fallback=fallback, original=original,
        padding_idx=padding_idx, special_ids=special_ids(model),
        memory=report.summary(), keep_inputs=vocab.inputs, coverage=[c.model_dump() for c in vocab.coverage],
    )  # fmt: skip
    state = PrunedVocab(record, dropped, report)
    state._remap = remap
    if tied and not spec.head_pruned:
        state.notes.append("exact-input on a tied model saves nothing: the head keeps the full matrix, which the input "
                           "lookup shares; only the guard against dropped ids is added")  # fmt: skip
    setattr(model, ATTR, state)
    return state


def _shrink_embedding(emb: Any, kept: Any) -> None:
    import torch

    old = emb.weight
    emb.weight = torch.nn.Parameter(old.detach()[kept].clone(), requires_grad=old.requires_grad)
    emb.num_embeddings = kept.numel()
    if emb.padding_idx is not None:
        where = torch.nonzero(kept == emb.padding_idx).flatten()
        emb.padding_idx = int(where[0]) if where.numel() else None


def attach(
    model: Any, record: PruneRecord, dropped: dict[str, Any] | None = None, *, tokenizer: Any = None
) -> PrunedVocab:
    """Turn a *compact* model (K-row embedding and head, as saved) into the pruned model of ``record``.

    This is what loading a saved directory does after ``from_pretrained``; it
    is also the smallest custom code for a user of plain transformers::

        model = AutoModelForCausalLM.from_pretrained(DIR)   # K-token model over compact ids
        calibench.vocab.attach_dir(model, DIR)              # tokenizer ids in, full-width logits out

    Exact-input mode needs ``dropped`` (the head's dropped rows) to rebuild the
    full head.
    """
    import torch

    spec = get_mode(record.mode)
    emb = embedding_of(model)
    count, rows = record.num_kept, record.vocab_size
    if emb.weight.shape[0] != count:
        raise CalibenchError(f"the model's embedding has {emb.weight.shape[0]} rows, the vocabulary record {count}: "
                             "this is not the directory the record was written with")  # fmt: skip
    head = head_of(model, count) if record.has_head else None
    device = emb.weight.device
    kept = torch.tensor(record.kept, dtype=torch.long, device=device)
    with torch.no_grad():
        if not spec.head_pruned and head is not None:  # exact-input: the full head back
            if dropped is None or "head" not in dropped and "embedding" not in dropped:
                raise CalibenchError("exact-input mode needs the dropped head rows (vocab-dropped.safetensors)")
            part = dropped["embedding"] if record.tied else dropped["head"]
            full = _assemble(head.weight.detach(), part.to(device), kept, rows)
            if record.tied:
                emb.weight = torch.nn.Parameter(full, requires_grad=False)
                emb.num_embeddings = rows
                head.weight = emb.weight
            else:
                head.weight = torch.nn.Parameter(full, requires_grad=False)
            if record.head_bias:
                head.bias = torch.nn.Parameter(
                    _assemble(head.bias.detach(), dropped["head_bias"].to(device), kept, rows), requires_grad=False
                )
            if hasattr(head, "out_features"):
                head.out_features = rows
        elif head is not None:
            attach_scatter(head, kept, rows)
    text_config(model.config).vocab_size = rows
    set_special_ids(model, record.special_ids)
    emb.padding_idx = record.padding_idx if not shrunk_table(record) else _slot_of(record.kept, record.padding_idx)
    slot = torch.full((rows,), -1, dtype=torch.int32, device=device)
    shrunk = spec.head_pruned or not record.tied
    slot[kept] = torch.arange(count, dtype=torch.int32, device=device) if shrunk else kept.to(torch.int32)
    fallback_slot = None if record.fallback is None else int(slot[record.fallback])
    describe = tokenizer.convert_ids_to_tokens if tokenizer is not None else None
    state = PrunedVocab(record, dropped)
    state._remap = attach_remap(emb, slot, fallback_slot, describe)
    setattr(model, ATTR, state)
    return state


def _assemble(kept_rows: Any, dropped_rows: Any, kept: Any, rows: int) -> Any:
    """The full (rows, ...) tensor from its kept and dropped rows, in tokenizer order."""
    import torch

    full = kept_rows.new_empty((rows, *kept_rows.shape[1:]))
    mask = torch.ones(rows, dtype=torch.bool, device=kept_rows.device)
    mask[kept] = False
    full[kept] = kept_rows
    full[mask] = dropped_rows
    return full


def reassemble(
    emb: Any, head: Any | None, record: Any, dropped: dict[str, Any], kept: Any, *, embedding: bool = True
) -> None:
    """Scatter the kept rows and the dropped ones back into full matrices: the input embedding (unless
    ``embedding`` is False), and the head with its bias when ``head`` is given (tied: the same matrix)."""
    import torch

    rows = record.vocab_size

    def full(current: Any, name: str) -> Any:
        return torch.nn.Parameter(_assemble(current.detach(), dropped[name], kept, rows), requires_grad=False)

    with torch.no_grad():
        if embedding:
            emb.weight = full(emb.weight, "embedding")
            emb.num_embeddings = rows
            emb.padding_idx = record.padding_idx
        if head is not None:
            head.weight = emb.weight if record.tied else full(head.weight, "head")
            if record.head_bias:
                head.bias = full(head.bias, "head_bias")
            if hasattr(head, "out_features"):
                head.out_features = rows


def unprune(model: Any, dropped: dict[str, Any] | None = None) -> None:
    """Put the full matrices back in memory (from ``dropped`` or the rows kept at pruning) and remove the hooks."""
    import torch

    state: PrunedVocab | None = getattr(model, ATTR, None)
    if state is None:
        raise CalibenchError("the model's vocabulary was never pruned: there is nothing to restore")
    dropped = dropped if dropped is not None else state.dropped
    record = state.record
    emb = model.get_input_embeddings()
    head = model.get_output_embeddings() if record.has_head else None
    spec = get_mode(record.mode)
    kept = torch.tensor(record.kept, dtype=torch.long, device=emb.weight.device)
    shrunk = spec.head_pruned or not record.tied
    if (shrunk or spec.head_pruned) and dropped is None:
        raise CalibenchError("the dropped rows were released (keep_dropped=False): reload the original model instead")
    # with nothing shrunk (tied, head kept whole) no dropped row is read, so released rows are fine there
    reassemble(emb, head if spec.head_pruned else None, record, dropped or {}, kept, embedding=shrunk)
    detach(emb)
    detach(head)
    setattr(model, ATTR, None)
    delattr(model, ATTR)


def fallbacks_used(model: Any) -> int:
    emb = model.get_input_embeddings()
    hook = remap_hook(emb) if emb is not None else None
    return hook.fallbacks if hook is not None else 0


SPECIAL_KEYS = ("bos_token_id", "eos_token_id", "pad_token_id", "decoder_start_token_id")


def special_ids(model: Any) -> dict[str, Any]:
    """The token ids the config and generation config name (tokenizer space), to map and to restore."""
    found: dict[str, Any] = {}
    for where, config in (
        ("config", text_config(model.config)),
        ("generation", getattr(model, "generation_config", None)),
    ):
        if config is None:
            continue
        for key in SPECIAL_KEYS:
            if getattr(config, key, None) is not None:
                found[f"{where}.{key}"] = getattr(config, key)
    return found


def set_special_ids(model: Any, ids: dict[str, Any]) -> None:
    targets = {"config": text_config(model.config), "generation": getattr(model, "generation_config", None)}
    for name, value in ids.items():
        where, key = name.split(".", 1)
        if targets.get(where) is not None:
            setattr(targets[where], key, value)


def _slot_of(kept: list[int], token: Any) -> Any:
    import bisect

    if token is None:
        return None
    if isinstance(token, list):
        mapped = [_slot_of(kept, t) for t in token]
        return [m for m in mapped if m is not None] or None
    i = bisect.bisect_left(kept, int(token))
    return i if i < len(kept) and kept[i] == int(token) else None


def compact_special_ids(record: PruneRecord) -> dict[str, Any]:
    """The same ids in the compact model's numbering (None for an id not kept)."""
    return {name: _slot_of(record.kept, value) for name, value in record.special_ids.items()}


def shrunk_table(record: PruneRecord) -> bool:
    """Whether the input table in memory has K rows (all but exact-input on a tied model)."""
    return get_mode(record.mode).head_pruned or not record.tied
