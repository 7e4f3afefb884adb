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
from unittest import mock

import torch


@contextlib.contextmanager
def cpu_safe_oneshot() -> Iterator[None]:
    if torch.cuda.is_available():
        yield
        return
    from llmcompressor.pipelines.cache import IntermediatesCache

    # patch.object puts the original method back on the way out, also when the oneshot raises
    with mock.patch.object(IntermediatesCache, "pin_memory", lambda self, *args, **kwargs: None):
        yield
