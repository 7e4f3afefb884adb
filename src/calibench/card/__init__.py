"""Set cards: a Markdown datasheet for a calibration set (``calibench data card``, and beside every export).

* :mod:`.contamination`: n-gram overlap of the set's text with evaluation items (pure);
* :mod:`.benchmarks`: the offline evaluation text it is checked against (I/O);
* :mod:`.datasheet`: gathers provenance, statistics, activation metrics and contamination;
* :mod:`.markdown`: renders it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from calibench.card.datasheet import Contamination, Datasheet, declared_overlaps, gather
from calibench.card.markdown import render
from calibench.core.fsutil import atomic_write_bytes

CARD_NAME = "README.md"  # inside an exported folder (what the hub shows)


def card_text(calib: Any, tokenizer: Any, extra: list[str] | None = None, **options: Any) -> str:
    """The Markdown card of ``calib`` (``options`` go to :func:`gather`)."""
    return render(gather(calib, tokenizer, **options), extra)


def write_card(path: str | Path, text: str) -> Path:
    """Write a card atomically."""

    atomic_write_bytes(path, text.encode("utf-8"))
    return Path(path)


__all__ = [
    "CARD_NAME",
    "Contamination",
    "Datasheet",
    "card_text",
    "declared_overlaps",
    "gather",
    "render",
    "write_card",
]
