"""Perplexity of a calibration set under a model, through the shared NLL function.

The perplexity is exp of the mean NLL of every unmasked token after the first
of each window, given the tokens before it in the window: exactly what
:func:`calibench.core.nll.window_nll` computes for evaluation, so the two agree.
"""

from __future__ import annotations

from typing import Any

from calibench.core.nll import NLLResult, window_nll
from calibench.core.settings import DEFAULTS
from calibench.data.calibset import CalibrationSet


def set_nll(
    calib: CalibrationSet, model: Any, batch_size: int = DEFAULTS.batch_size, progress_label: str | None = None
) -> NLLResult:
    return window_nll(
        model,
        calib.input_ids,
        calib.attention_mask,
        batch_size=batch_size,
        progress_label=progress_label or f"scoring {calib.manifest.source.name}",
    )


def set_perplexity(calib: CalibrationSet, model: Any, batch_size: int = DEFAULTS.batch_size) -> float:
    """Perplexity of the set's windows under ``model``."""
    return set_nll(calib, model, batch_size).perplexity
