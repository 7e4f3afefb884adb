"""A quick description of calibration sets: what a user checks before compressing.

Cheap token statistics only; the statistics of the self-calibration paper
(perplexity under the model, n-gram diversity, Zipf fit) belong to
``calibench data stats``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from calibench.data.calibset import CalibrationSet


def token_summary(calib: CalibrationSet, vocab_size: int) -> dict[str, float]:
    """Distinct tokens, vocabulary coverage and the share of the most frequent token."""
    tokens = calib.input_ids[calib.attention_mask.astype(bool)]
    counts = np.bincount(tokens, minlength=vocab_size)
    distinct = int((counts > 0).sum())
    return {
        "tokens": int(tokens.size),
        "distinct": distinct,
        "coverage": distinct / vocab_size,
        "top_share": float(counts.max() / tokens.size) if tokens.size else 0.0,
    }


def summary_table(built: list[tuple[Path, CalibrationSet]], tokenizer: Any, title: str) -> Any:
    from rich.table import Table

    table = Table(title=title)
    for col in ("source", "set id", "tokens", "distinct", "coverage", "top token"):
        table.add_column(col, no_wrap=True)
    table.add_column("first words", no_wrap=True, overflow="ellipsis", max_width=28)
    for path, calib in built:
        stats = token_summary(calib, len(tokenizer))
        preview = tokenizer.decode(calib.input_ids[0, :12].tolist()).replace("\n", " ")[:40]
        table.add_row(
            calib.manifest.source.name,
            calib.set_id,
            f"{stats['tokens']:,}",
            f"{stats['distinct']:,}",
            f"{stats['coverage']:.1%}",
            f"{stats['top_share']:.1%}",
            preview,
        )
    return table
