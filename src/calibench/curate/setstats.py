"""Coverage and diversity of any calibration sets against a pool, for ``calibench data stats --pool``.

The pool and every set are embedded the way COLA's stage 3 embeds samples
(per-layer sequence-mean activations, L2-normalised, concatenated, randomly
projected to ``dim``, seed ``seed``) under the same model; a set row that is
also a pool row (a curated or random-from-pool set) reuses the pool's
features.  Then :func:`calibench.curate.metrics.coverage` (mean distance
from pool points to the nearest set sample) and
:func:`~calibench.curate.metrics.diversity` (mean pairwise distance among
set samples).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from calibench.core.console import console as make_console
from calibench.core.errors import CalibenchError
from calibench.core.settings import DEFAULTS
from calibench.curate.activations import capture_features, layer_widths
from calibench.curate.layers import find_decoder_layers
from calibench.curate.metrics import coverage, diversity
from calibench.curate.projection import DEFAULT_DIM, RandomProjection
from calibench.data.calibset import CalibrationSet

METRIC_SEED = 0


def _row_keys(calib: CalibrationSet) -> list[bytes]:
    return [ids.tobytes() + mask.tobytes() for ids, mask in zip(calib.input_ids, calib.attention_mask)]


def pool_statistics(
    sets: Sequence[CalibrationSet],
    pool: CalibrationSet,
    model: Any,
    *,
    dim: int = DEFAULT_DIM,
    seed: int = METRIC_SEED,
    batch_size: int = DEFAULTS.batch_size,
) -> list[dict[str, Any]]:
    """One dict per set: coverage, diversity, pool size and how many of its rows are pool rows."""

    for calib in sets:
        if calib.seq_len != pool.seq_len:
            raise CalibenchError(
                f"set {calib.set_id} has windows of {calib.seq_len} tokens but the pool {pool.set_id} has "
                f"{pool.seq_len}: compare sets with a pool of the same --seq-len"
            )
        if calib.manifest.tokenizer.get("vocab_sha256") != pool.manifest.tokenizer.get("vocab_sha256"):
            raise CalibenchError(f"set {calib.set_id} and the pool {pool.set_id} were made with different tokenizers")
    layers = find_decoder_layers(model)
    projection = RandomProjection(layer_widths(model, layers), dim, seed)
    (pool_feats,) = capture_features(
        model,
        pool.input_ids,
        pool.attention_mask,
        [projection],
        batch_size=batch_size,
        layers=layers,
        label="pool activations",
    )
    index = {key: i for i, key in enumerate(_row_keys(pool))}
    out = []
    for calib in sets:
        keys = _row_keys(calib)
        in_pool = [index.get(k) for k in keys]
        feats = np.zeros((calib.n, dim), dtype=np.float32)
        known = [i for i, j in enumerate(in_pool) if j is not None]
        feats[known] = pool_feats[[j for j in in_pool if j is not None]]  # the pool rows of ``known``, in order
        missing = [i for i, j in enumerate(in_pool) if j is None]
        if missing:
            (fresh,) = capture_features(
                model,
                calib.input_ids[missing],
                calib.attention_mask[missing],
                [projection],
                batch_size=batch_size,
                layers=layers,
                label=f"set {calib.set_id} activations",
            )
            feats[missing] = fresh
        out.append(
            {
                "coverage": coverage(pool_feats, feats),
                "diversity": diversity(feats),
                "pool": pool.set_id,
                "pool_size": pool.n,
                "rows_in_pool": len(known),
                "projection_dim": dim,
                "projection_seed": seed,
            }
        )
    return out


def add_pool_statistics(
    rows: list[dict[str, Any]],
    sets: Sequence[CalibrationSet],
    pool: CalibrationSet | Path,
    model: Any,
    tokenizer: Any,
    batch_size: int = DEFAULTS.batch_size,
) -> None:
    """The ``data stats --pool`` hook: add coverage/diversity to each row and print them as a table.

    ``pool`` is a loaded set (the CLI loads it before any work, to refuse a bad one early) or its directory.
    """
    from rich.table import Table

    if model is None:
        raise CalibenchError(
            "--pool needs --model: coverage and diversity are measured in the model's activation space"
        )
    if not isinstance(pool, CalibrationSet):
        pool = CalibrationSet.load(pool, tokenizer=tokenizer)
    elif tokenizer is not None:
        pool.check_tokenizer(tokenizer)
    stats = pool_statistics(sets, pool, model, batch_size=batch_size)
    table = Table(title=f"activation coverage and diversity against pool {pool.set_id} ({pool.n} windows)")
    for col in ("set", "coverage (lower: better)", "diversity", "rows in pool"):
        table.add_column(col, justify="left" if col == "set" else "right")
    for row, stat in zip(rows, stats):
        row.update(
            {
                "activation_coverage": stat["coverage"],
                "activation_diversity": stat["diversity"],
                "activation_metrics": stat,
            }
        )
        table.add_row(
            row["path"],
            f"{stat['coverage']:.4f}",
            f"{stat['diversity']:.4f}",
            f"{stat['rows_in_pool']}/{row['shape'][0]}",
        )
    make_console().print(table)
