"""Perturbations that should not matter, for a study's numerical noise floor.

A cell's result is a float computation: change the torch thread count or the
evaluation batch size, and reduction orders change, rounding differs in the
last bits, and after GPTQ's error feedback or a pruning mask's ties those bits
can move a 4-bit code or a kept weight, and so the perplexity.  A different
CPU (AVX2 against AVX-512 kernels) does the same.  How far a result moves
under such perturbations is the *noise floor*: a difference between
calibration sets no larger than it is float-order noise, not a finding.

Each perturbation is registered by name with what it changes: a context that
wraps the whole cell (compression and evaluation) and overrides of the
evaluation settings.  A study's ``noise_floor`` section reruns a few cells
under each.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from calibench.core import numerics
from calibench.core.registry import Registry


@dataclass(frozen=True)
class Perturbation:
    name: str
    description: str
    context: Callable[[], contextlib.AbstractContextManager[None]] = contextlib.nullcontext
    eval_overrides: Callable[[dict[str, Any]], dict[str, Any]] = field(default=lambda ev: {})


def _other_thread_count() -> contextlib.AbstractContextManager[None]:
    """One thread where the cell would have several, two where it would have one."""
    import torch

    return numerics.torch_threads(1 if torch.get_num_threads() > 1 else 2)


def _other_eval_batch(ev: dict[str, Any]) -> dict[str, Any]:
    """Batch 1 where the study batches, else 4: the same windows and items through other matmul shapes."""
    batch = int(ev.get("batch_size", 8))
    return {"batch_size": 1 if batch > 1 else 4}


PERTURBATIONS: Registry[Perturbation] = Registry("perturbation")


def register(perturbation: Perturbation) -> Perturbation:
    return PERTURBATIONS.register(perturbation.name, perturbation)


register(
    Perturbation(
        "threads",
        "torch thread count changed (1 <-> more): reduction order of every matmul",
        context=_other_thread_count,
    )
)
register(
    Perturbation(
        "eval_batch",
        "evaluation batch size changed (batch 1, or 4 where the study uses 1)",
        eval_overrides=_other_eval_batch,
    )
)


def get(name: str) -> Perturbation:
    return PERTURBATIONS.get(name)
