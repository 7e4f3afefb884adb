"""Work-arounds for llm-compressor 0.14 on machines without an accelerator.

AWQ pins its cached activations (``IntermediatesCache.pin_memory``) before
the scale search, to speed up host-to-device copies.  ``Tensor.pin_memory``
raises on a machine with no accelerator, so AWQ cannot run on CPU at all.
Pinning is only an optimisation, so on such machines it is skipped while
calibench's oneshot runs, and restored afterwards.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


@contextlib.contextmanager
def cpu_safe_oneshot() -> Iterator[None]:
    if torch.cuda.is_available():
        yield
        return
    from llmcompressor.pipelines.cache import IntermediatesCache

    original = IntermediatesCache.pin_memory
    IntermediatesCache.pin_memory = lambda self, *args, **kwargs: None
    try:
        yield
    finally:
        IntermediatesCache.pin_memory = original
