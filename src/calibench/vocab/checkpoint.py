"""A pruned model on disk, loading it back, and restoring the original bit for bit.

The directory is an ordinary Hugging Face checkpoint of the *compact* model
(``config.vocab_size`` = K, the kept rows of the embedding and head, the
tie as it was, the config's BOS/EOS/PAD ids renumbered), so plain
transformers loads it, compressed-tensors checkpoints included, as a K-token
model over compact ids.  Beside it:

* ``vocab.json``: the :class:`PruneRecord` (mode, kept ids, tokenizer
  identity, original ids and hashes, memory report);
* ``vocab-dropped.safetensors``: the dropped rows (embedding, untied head,
  head bias), unless ``dropped="reference"``: then restore reads them from
  the original checkpoint named in the record and checks their sha256.
  Exact-input mode always stores them: its head is full;
* the original tokenizer, unchanged: the model takes tokenizer ids.

:func:`load` (what calibench uses everywhere a model spec is a directory
with a ``vocab.json``) is ``from_pretrained`` + :func:`calibench.vocab.prune.attach`.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from calibench.compress.checkpoint import write_record
from calibench.core.errors import CalibenchError, CorruptArtifactError
from calibench.core.fsutil import atomic_dir
from calibench.core.settings import DEFAULTS, accepts_settings
from calibench.core.text import one_line
from calibench.models import _load, load_tokenizer, verify_checkpoint
from calibench.vocab.modes import get_mode
from calibench.vocab.prune import (
    ATTR,
    PrunedVocab,
    PruneRecord,
    attach,
    compact_special_ids,
    embedding_of,
    head_of,
    reassemble,
    set_special_ids,
    tensor_sha256,
    text_config,
)  # fmt: skip
from calibench.vocab.settings import VocabRestoreSettings

RECORD_FILE = "vocab.json"
DROPPED_FILE = "vocab-dropped.safetensors"
DROPPED_CHOICES = ("stored", "reference")


def is_pruned_dir(path: str | Path) -> bool:
    return (Path(path) / RECORD_FILE).is_file()


def read_record(path: str | Path) -> PruneRecord:
    path = Path(path)
    record_path = path / RECORD_FILE
    if not path.is_dir():
        raise CalibenchError(f"{path} is not a directory: give the --out directory of `calibench vocab prune`")
    if not record_path.is_file():
        raise CalibenchError(f"{path} was never vocabulary-pruned (no {RECORD_FILE}): there is nothing to restore")
    try:
        record = PruneRecord.model_validate_json(record_path.read_text(encoding="utf-8"))
    except (ValidationError, ValueError, OSError) as exc:
        raise CorruptArtifactError(f"{record_path} is corrupt ({str(exc).splitlines()[0]}): prune again") from None
    _check_record(record, record_path)
    return record


def _check_record(record: PruneRecord, where: Path) -> None:
    """What a valid JSON record can still get wrong: the mode, the kept ids, the sizes."""
    from calibench.core.errors import UnknownNameError
    from calibench.vocab.keepset import ids_sha256

    def corrupt(problem: str) -> CorruptArtifactError:
        return CorruptArtifactError(f"{where} is corrupt ({problem}): the file was edited after it was written; "
                                    "prune again")  # fmt: skip

    try:
        get_mode(record.mode)
    except UnknownNameError:
        raise corrupt(f"unknown mode '{record.mode}'") from None
    kept = record.kept
    if not kept or record.vocab_size < 1 or record.hidden_size < 1:
        raise corrupt("no kept ids" if not kept else "sizes are not positive")
    if any(b <= a for a, b in zip(kept, kept[1:])) or kept[0] < 0 or kept[-1] >= record.vocab_size:
        bad = next((i for i in kept if not 0 <= i < record.vocab_size), None)
        problem = f"kept id {bad} is outside the vocabulary of {record.vocab_size}" if bad is not None else (
            "kept ids are not sorted and unique")  # fmt: skip
        raise corrupt(problem)
    if ids_sha256(kept) != record.kept_sha256:
        raise corrupt("the kept ids do not match their sha256")
    if record.fallback is not None and record.fallback not in kept:
        raise corrupt(f"fallback token {record.fallback} is not kept")
    size = record.tokenizer.get("vocab_size") if isinstance(record.tokenizer, dict) else None
    if not isinstance(size, int) or size > record.vocab_size:
        raise corrupt(f"tokenizer size {size} does not fit the vocabulary of {record.vocab_size}")
    if record.dropped_rows not in DROPPED_CHOICES:
        raise corrupt(f"dropped_rows '{record.dropped_rows}' is not one of {', '.join(DROPPED_CHOICES)}")


def check_content(path: Path, checkpoint: Any) -> None:
    """The pruned directory's own checks (a ``CONTENT_CHECKS`` entry of :mod:`calibench.compress.checkpoint`).

    Called after the file hashes matched: the record against the config, the tokenizer and the dropped rows.
    """
    from calibench.compress.checkpoint import safetensors_shapes

    record = read_record(path)
    if checkpoint.vocab_size != record.num_kept:
        raise CorruptArtifactError(
            f"{path}: the config's vocab_size is {checkpoint.vocab_size} but {RECORD_FILE} keeps "
            f"{record.num_kept} ids: the directory is inconsistent; prune again"
        )
    if checkpoint.embedding is not None and checkpoint.embedding.shape[1] != record.hidden_size:
        raise CorruptArtifactError(
            f"{path}: the embedding is {checkpoint.embedding.shape[1]} wide but {RECORD_FILE} says "
            f"{record.hidden_size}: the directory is inconsistent; prune again"
        )
    ours = (checkpoint.tokenizer or {}).get("vocab_sha256")
    if ours is not None and ours != record.tokenizer.get("vocab_sha256"):
        raise CorruptArtifactError(
            f"{path}: its tokenizer is not the one {RECORD_FILE} was pruned for: the directory is inconsistent; "
            "prune again"
        )
    file = path / DROPPED_FILE
    if record.dropped_rows == "stored":
        if not file.is_file():
            raise CorruptArtifactError(f"{path} has no {DROPPED_FILE} though its record says the rows are stored: "
                                       "prune again")  # fmt: skip
        try:
            shapes = safetensors_shapes(file)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise CorruptArtifactError(f"{file} is not readable ({exc}): prune again") from None
        rows = record.vocab_size - record.num_kept
        for name, shape in sorted(shapes.items()):
            if not shape or shape[0] != rows:
                raise CorruptArtifactError(
                    f"{file}: {name} has shape {shape}, but {rows} rows were dropped: prune again"
                )
        if "embedding" not in shapes:
            raise CorruptArtifactError(f"{file} has no dropped embedding rows: prune again")


@contextlib.contextmanager
def _compact_view(model: Any, state: PrunedVocab) -> Iterator[None]:
    """The in-memory pruned model temporarily in its compact on-disk form (K rows, compact ids in the config)."""
    import torch

    record = state.record
    emb = model.get_input_embeddings()
    head = model.get_output_embeddings() if record.has_head else None
    kept = torch.tensor(record.kept, dtype=torch.long, device=emb.weight.device)
    swapped: list[tuple[Any, str, Any]] = []

    def swap(module: Any, name: str) -> None:
        param = getattr(module, name)
        if param.shape[0] != record.num_kept:
            swapped.append((param, "data", param.data))
            param.data = param.data[kept].clone()

    full_head = not get_mode(record.mode).head_pruned
    if full_head:  # exact-input: the head (the shared matrix, if tied) is full in memory; K rows on disk
        if record.tied:
            swap(emb, "weight")
        elif head is not None:
            swap(head, "weight")
        if head is not None and record.head_bias:
            swap(head, "bias")
    config = text_config(model.config)
    config.vocab_size = record.num_kept
    set_special_ids(model, compact_special_ids(record))
    try:
        yield
    finally:
        for param, _, data in swapped:
            param.data = data
        config.vocab_size = record.vocab_size
        set_special_ids(model, record.special_ids)


def _write_config_fields(directory: Path, vocab_size: int, ids: dict[str, Any]) -> None:
    """Set ``vocab_size`` and the special ids in the written config files.

    llm-compressor's ``save_pretrained`` rewrites config.json from the
    *original* model's file (for vLLM), which would undo the compact view.
    """
    config_file = directory / "config.json"
    data = json.loads(config_file.read_text(encoding="utf-8"))
    text = data["text_config"] if isinstance(data.get("text_config"), dict) else data
    text["vocab_size"] = vocab_size
    generation_file = directory / "generation_config.json"
    generation = json.loads(generation_file.read_text(encoding="utf-8")) if generation_file.is_file() else None
    for name, value in ids.items():
        where, key = name.split(".", 1)
        if where == "config":
            text[key] = value
        elif generation is not None:
            generation[key] = value
    config_file.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    if generation is not None:
        generation_file.write_text(json.dumps(generation, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _save_weights(model: Any, directory: Path) -> None:
    if _is_quantized(model):
        model.save_pretrained(directory, save_compressed=True)
    else:
        model.save_pretrained(directory)


def _is_quantized(model: Any) -> bool:
    return any(hasattr(m, "quantization_scheme") for m in model.modules())


def save(
    model: Any, out: str | Path, tokenizer: Any = None, *, dropped: str = "stored", extra: dict[str, Any] | None = None
) -> Path:
    """Write a pruned model (see the module doc), atomically."""
    from safetensors.torch import save_file

    state: PrunedVocab | None = getattr(model, ATTR, None)
    if state is None:
        raise CalibenchError("the model's vocabulary is not pruned: prune it first")
    if dropped not in DROPPED_CHOICES:
        raise CalibenchError(f"--dropped must be one of {', '.join(DROPPED_CHOICES)}, got '{dropped}'")
    record = state.record.model_copy(deep=True)
    exact = not get_mode(record.mode).head_pruned
    if dropped == "reference" and exact:
        raise CalibenchError("exact-input mode needs the dropped head rows to run: use --dropped stored")
    if dropped == "reference" and not record.original.get("model"):
        raise CalibenchError("--dropped reference needs the original model's spec (prune(..., source=SPEC))")
    if state.dropped is None and (dropped == "stored"):
        raise CalibenchError("the dropped rows were released (keep_dropped=False): prune again with keep_dropped=True")
    record.dropped_rows = dropped
    with atomic_dir(out) as tmp:
        with _compact_view(model, state):
            _save_weights(model, tmp)
        _write_config_fields(tmp, record.num_kept, compact_special_ids(record))
        if dropped == "stored":
            assert state.dropped is not None  # released rows were refused above
            tensors = {k: v.detach().contiguous().cpu() for k, v in state.dropped.items()}
            save_file(tensors, str(tmp / DROPPED_FILE), metadata={"format": "calibench-vocab-dropped"})
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        body = record.model_dump(mode="json")
        if extra:
            body["extra"] = extra
        (tmp / RECORD_FILE).write_text(json.dumps(body, indent=1) + "\n", encoding="utf-8")
        write_record(tmp, "vocab-pruned", tokenizer)
    return Path(out)


def _dropped_rows(path: Path, record: PruneRecord, original: str | None = None) -> dict[str, Any]:
    """The dropped rows: from the directory, or from the original checkpoint (checked against the record's hashes)."""
    if record.dropped_rows == "stored":
        from safetensors.torch import load_file

        file = path / DROPPED_FILE
        if not file.is_file():
            raise CorruptArtifactError(f"{path} has no {DROPPED_FILE} though its record says the rows are stored: "
                                       "prune again")  # fmt: skip
        try:
            return load_file(str(file))
        except Exception as exc:  # safetensors' own error type: a damaged file the hashes did not cover
            raise CorruptArtifactError(f"{file} is not readable ({one_line(exc)}): prune again") from None
    spec = original or record.original.get("model")
    if not spec:
        raise CalibenchError(f"{path} references its original model for the dropped rows: give it with --original")

    full = _check_original(spec, record, path)
    emb = embedding_of(full)
    head = head_of(full, emb.weight.shape[0]) if record.has_head else None
    import torch

    mask = torch.ones(record.vocab_size, dtype=torch.bool)
    mask[torch.tensor(record.kept)] = False
    rows = {"embedding": emb.weight.detach()[mask].clone()}
    if head is not None and not record.tied:
        rows["head"] = head.weight.detach()[mask].clone()
    if head is not None and record.head_bias:
        rows["head_bias"] = head.bias.detach()[mask].clone()
    return rows


def _check_original(spec: str, record: PruneRecord, path: Path) -> Any:
    """The original model ``spec`` names, loaded on the CPU; refused unless its embedding is the recorded one."""
    from calibench.models import load_config, load_model

    rows = text_config(load_config(spec)).vocab_size  # cheap: a model of another size is refused unloaded
    if rows != record.vocab_size:
        raise CalibenchError(f"{spec} is not the model {path} was pruned from (its vocabulary has {rows} tokens, "
                             f"the original's {record.vocab_size}): give the original with --original")  # fmt: skip
    full = load_model(spec, dtype=record.dtype, device="cpu")
    if tensor_sha256(embedding_of(full).weight) != record.original.get("embedding_sha256"):
        raise CalibenchError(f"{spec} is not the model {path} was pruned from (embedding sha256 differs): "
                             "give the original with --original")  # fmt: skip
    return full


def _load_compact(path: Path, dtype: Any) -> Any:
    """The compact model as plain transformers sees it (K tokens, compact ids), on the CPU."""
    from transformers import AutoModelForCausalLM

    return _load(AutoModelForCausalLM, path, dtype=dtype).eval()


def load(path: str | Path, dtype: Any = DEFAULTS.dtype, device: Any = DEFAULTS.device) -> Any:
    """The pruned model saved at ``path``, in memory: tokenizer ids in, full-width logits out.

    The same as :func:`calibench.models.load_model`, which recognises a pruned
    directory by its ``vocab.json``.
    """
    from calibench.models import load_model

    read_record(path)  # one clear line if it is not a pruned directory
    return load_model(path, dtype=dtype, device=device)


def attach_if_pruned(model: Any, path: str | Path) -> None:
    """Called by every calibench model load: a directory with ``vocab.json`` gets its id maps (else a no-op)."""
    if not isinstance(path, (str, Path)) or not is_pruned_dir(path):
        return
    attach_dir(model, path)


def attach_dir(model: Any, path: str | Path) -> PrunedVocab:
    """For a model loaded with plain ``from_pretrained(DIR)``: make it take tokenizer ids (see :func:`attach`)."""
    path = Path(path)
    record = read_record(path)
    dropped = _dropped_rows(path, record) if not get_mode(record.mode).head_pruned else None
    return attach(model, record, dropped)


@accepts_settings(VocabRestoreSettings)
def restore(
    path: str | Path,
    out: str | Path,
    *,
    original: str | None = None,
    tokenizer: Any = None,
    settings: VocabRestoreSettings | None = None,
) -> Path:
    """The original model back from a pruned directory, bit for bit (checked against the record's sha256).

    ``settings`` gives ``original`` as a :class:`~calibench.vocab.settings.VocabRestoreSettings` (what
    ``calibench vocab restore`` takes); the keyword overrides it.
    """
    import torch

    from calibench.core.fsutil import check_new_output

    path = Path(path)
    record = read_record(path)
    verify_checkpoint(path)  # every file as written, before anything is loaded
    check_new_output(out)
    if original is not None and record.dropped_rows == "stored":
        _check_original(original, record, path)  # the rows come from the directory, but a wrong name is a mistake
    model = _load_compact(path, getattr(torch, record.dtype))
    dropped = _dropped_rows(path, record, original)
    emb = embedding_of(model)
    head = head_of(model, record.num_kept) if record.has_head else None
    rows = record.vocab_size
    reassemble(emb, head, record, dropped, torch.tensor(record.kept, dtype=torch.long))
    checks = {"embedding_sha256": emb.weight}
    if head is not None and not record.tied:
        checks["head_sha256"] = head.weight
    if head is not None and record.head_bias:
        checks["head_bias_sha256"] = head.bias
    for key, tensor in checks.items():
        if key in record.original and tensor_sha256(tensor) != record.original[key]:
            raise CorruptArtifactError(
                f"{path}: the restored {key.removesuffix('_sha256')} does not match the original's "
                "sha256 (the directory was edited): restore from the original checkpoint"
            )
    text_config(model.config).vocab_size = rows
    set_special_ids(model, record.special_ids)
    tok = tokenizer if tokenizer is not None else load_tokenizer(path)
    with atomic_dir(out) as tmp:
        _save_weights(model, tmp)
        _write_config_fields(tmp, rows, record.special_ids)
        tok.save_pretrained(tmp)
        for extra in ("calibench.json",):  # a compression record travels with the weights it describes
            if (path / extra).is_file():
                (tmp / extra).write_bytes((path / extra).read_bytes())
        write_record(tmp, "restored", tok)
    return Path(out)
