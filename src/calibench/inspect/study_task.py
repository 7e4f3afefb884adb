"""Activation statistics as a study task (``act:outliers``): each cell's calibration set, seen by the dense model.

A study cell compresses with a calibration set and then evaluates.  With
``act:outliers`` among its tasks, the cell first runs that set through the
freshly loaded, still dense model and records what the quantizer is about to
see, so the report can put outlier statistics beside the accuracy and
perplexity the same set led to.  The rows are ordinary result rows (task
``act:outliers``, one metric each), so they are stored, resumed and tabulated
like any other task.  A dense cell has no calibration set and no such rows.

The int8 error is measured on the cell's own held-out text: that of its first
``ppl:`` task (``wiki`` when it has none), in windows of the set's size.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from calibench.core.registry import Registry
from calibench.data.builders import build_set
from calibench.evaluation.heldout import HELDOUT_TEXTS
from calibench.inspect.collect import activation_stats
from calibench.inspect.quant_error import activation_quant_error, static_scales

PREFIX = "act:"
DEFAULT_HELDOUT = "wiki"  # an offline domain, readable without the hub


def heldout_windows(other_tasks: Sequence[str], tokenizer: Any, model_spec: str, n: int, seq_len: int) -> Any:
    """Windows of the cell's perplexity text (its first ``ppl:`` task), as a set of ``n`` x ``seq_len``."""

    name = next((t.removeprefix("ppl:") for t in other_tasks if t.startswith("ppl:")), DEFAULT_HELDOUT)
    if name in HELDOUT_TEXTS:
        text = HELDOUT_TEXTS[name]
        return build_set(
            text.source, model=model_spec, tokenizer=tokenizer, n=n, seq_len=seq_len, seed=0, split=text.split
        )
    return build_set(name, model=model_spec, tokenizer=tokenizer, n=n, seq_len=seq_len, seed=0)  # a local file


def outlier_rows(model: Any, calib: Any, tokenizer: Any, model_spec: str, heldout: Any) -> list[dict[str, Any]]:
    """The set's headline activation statistics on ``model``, and the static int8 error its scales cause."""

    stats = activation_stats(model, calib)
    quant = activation_quant_error(model, heldout, {"set": static_scales(stats)})
    linear = [s for s in stats.sites if s.kind == "linear_input"]
    residual = [s for s in stats.sites if s.kind == "residual"]
    kurtosis = [s.kurtosis for s in linear if s.kurtosis is not None]
    metrics = {
        "max_abs_linear": max(s.max_abs for s in linear),
        "max_abs_residual": max((s.max_abs for s in residual), default=0.0),
        "kurtosis_linear": float(np.mean(kurtosis)) if kurtosis else float("nan"),
        "outlier_features": float(len(stats.outlier_features)),
        "massive_activations": float(sum(s.massive_total for s in residual)),
        "int8_static_error": quant.total_static["set"],
        "int8_dynamic_error": quant.total_dynamic,
        "int8_clipped": float(np.mean([row.clipped["set"] for row in quant.layers])),
    }
    return [
        {
            "task": "act:outliers",
            "metric": name,
            "value": float(value),
            "stderr": None,
            "n": stats.tokens,
            "limit": None,
        }
        for name, value in metrics.items()
    ]


#: ``act:`` tasks a study cell runs on its model, by task name.
ACTIVATION_TASKS: Registry[Callable[[Any, Any, Any, str, Any], list[dict[str, Any]]]] = Registry("activation task")
ACTIVATION_TASKS.register("act:outliers", outlier_rows)


def split_activation_tasks(tasks: Sequence[str]) -> tuple[list[str], list[str]]:
    """(activation tasks, every other task), refusing an unknown ``act:`` name with the known ones."""
    activation = [t for t in tasks if t.startswith(PREFIX)]
    for task in activation:
        ACTIVATION_TASKS.get(task)
    return activation, [t for t in tasks if not t.startswith(PREFIX)]


def activation_rows(
    tasks: Sequence[str], other_tasks: Sequence[str], model: Any, calib: Any, tokenizer: Any, model_spec: str
) -> list[dict[str, Any]]:
    """Rows of every activation task in ``tasks`` (none without a calibration set)."""
    if calib is None or not tasks:
        return []
    heldout = heldout_windows(other_tasks, tokenizer, model_spec, calib.n, calib.seq_len)
    return [row for task in tasks for row in ACTIVATION_TASKS.get(task)(model, calib, tokenizer, model_spec, heldout)]
