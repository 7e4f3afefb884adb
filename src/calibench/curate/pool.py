"""The candidate pool: processed windows from the selected sources, as a CalibrationSet.

The pool is an artifact of its own (source ``curation-pool``) so that a curated
set can name it as its parent, random baselines can be drawn from exactly the
same windows, and ``calibench data stats --pool`` can measure any set against
it.  Its rows are the sources' windows in source order; the manifest records
each row's source and documents.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from calibench.core.errors import CalibenchError
from calibench.core.settings import DEFAULTS
from calibench.curate.processing import ProcessingSettings, process_documents
from calibench.data.calibset import CalibrationSet, SamplingRecord, SourceRecord
from calibench.data.sources import get_text_source

POOL_SOURCE = "curation-pool"
CURATED = "curated"


def split_evenly(total: int, parts: int) -> list[int]:
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


def build_pool(
    sources: Sequence[str],
    tokenizer: Any,
    pool_size: int,
    seq_len: int,
    *,
    seed: int = DEFAULTS.seed,
    add_bos: bool = False,
    settings: ProcessingSettings | None = None,
    split: str | None = None,
    extra: dict[str, Any] | None = None,
) -> CalibrationSet:
    """``pool_size`` windows of ``seq_len`` tokens, split evenly over ``sources`` (their calibration split)."""
    settings = settings or ProcessingSettings()
    if not sources:
        raise CalibenchError("no source selected for the pool")
    if pool_size < len(sources):
        raise CalibenchError(f"--pool-size {pool_size} is smaller than the {len(sources)} selected sources")
    body = seq_len - 1 if add_bos else seq_len
    quotas = split_evenly(pool_size, len(sources))
    tokens: list[np.ndarray] = []
    masks: list[np.ndarray] = []
    rows: list[list[Any]] = []  # per pool row: [source name, its document indices]
    per_source: dict[str, dict[str, Any]] = {}
    specs: dict[str, dict[str, Any]] = {}
    for index, (name, quota) in enumerate(zip(sources, quotas)):
        source = get_text_source(name)
        source_split = source.check_split(split)
        docs = source.documents(source_split)
        rng = np.random.default_rng([seed, index])
        windows = process_documents(docs, tokenizer, quota, body, rng, settings, label=name)
        tokens.append(windows.tokens)
        masks.append(windows.mask)
        rows.extend([name, d] for d in windows.documents)
        per_source[name] = {"windows": quota, "split": source_split, **windows.stats}
        specs[name] = {"kind": source.kind, "split": source_split, "fingerprint": docs.fingerprint(), **source.spec()}
    ids = np.concatenate(tokens)
    mask = np.concatenate(masks)
    if add_bos:
        ids = np.concatenate([np.full((len(ids), 1), tokenizer.bos_token_id, dtype=np.int32), ids], axis=1)
        mask = np.concatenate([np.ones((len(mask), 1), dtype=np.uint8), mask], axis=1)
    fingerprint = hashlib.sha256(repr(sorted((k, v["fingerprint"]) for k, v in specs.items())).encode()).hexdigest()
    record = SourceRecord(
        name=POOL_SOURCE, kind=CURATED, split="calibration", spec={"sources": specs}, fingerprint=fingerprint
    )
    generator = {
        "method": "cola-pool",
        "pool_size": pool_size,
        "pool_seed": seed,
        "stage2": settings.record(),
        "per_source": per_source,
        "rows": rows,  # per pool row: [source, [document indices in its split]]
        **(extra or {}),
    }
    sampling = SamplingRecord(mode="packed" if settings.pack else "document-padded", bos=add_bos)
    return CalibrationSet.create(
        ids, tokenizer, source=record, sampling=sampling, seed=seed, attention_mask=mask, generator=generator
    )


def subset(
    pool: CalibrationSet,
    indices: Sequence[int],
    tokenizer: Any,
    *,
    seed: int,
    name: str,
    mode: str,
    generator: dict[str, Any],
) -> CalibrationSet:
    """The pool rows ``indices`` (in that order) as a set whose parent is the pool."""
    idx = np.asarray(list(indices), dtype=np.int64)
    pool_gen = pool.manifest.generator or {}
    rows = pool_gen.get("rows", [])
    spec = {"pool": pool.set_id, "sources": sorted((pool.manifest.source.spec or {}).get("sources", {}))}
    record = SourceRecord(
        name=name,
        kind=CURATED,
        split=pool.manifest.source.split,
        spec=spec,
        fingerprint=pool.manifest.source.fingerprint,
    )
    generator = {**generator, "chosen_rows": [rows[i] for i in idx] if rows else []}
    sampling = SamplingRecord(mode=mode, bos=pool.manifest.sampling.bos)
    return CalibrationSet.create(
        pool.input_ids[idx],
        tokenizer,
        source=record,
        sampling=sampling,
        seed=seed,
        attention_mask=pool.attention_mask[idx],
        generator=generator,
        parents=[pool.set_id],
    )
