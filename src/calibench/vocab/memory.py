"""Bytes a model holds, counted by tensor storage rather than by parameter count.

Parameter counts lie about tied embeddings (one matrix, two names) and about
quantized weights (packed int4 in int32 words, scales beside them).  What a
user pays for is storage, so every tensor (parameters *and* buffers, the
vocabulary id maps included) is counted once per distinct storage.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


def _storages(tensors: Any) -> dict[tuple[str, int], int]:
    seen: dict[tuple[str, int], int] = {}
    for tensor in tensors:
        if tensor is None or tensor.device.type == "meta":
            continue
        storage = tensor.untyped_storage()
        seen[(str(tensor.device), storage.data_ptr())] = storage.nbytes()
    return seen


def storage_bytes(tensors: Any) -> int:
    """Bytes of the distinct storages behind ``tensors`` (a shared matrix counts once)."""
    return sum(_storages(tensors).values())


def model_tensors(model: Any) -> list[Any]:
    return [*model.parameters(), *model.buffers()]


def vocab_tensors(model: Any) -> list[Any]:
    """The embedding and head tensors (weights, biases, id maps): what vocabulary pruning changes."""
    found = []
    for module in (model.get_input_embeddings(), model.get_output_embeddings()):
        if module is not None:
            found.extend(module.parameters(recurse=False))
            found.extend(module.buffers(recurse=False))
    return found


class MemorySide(BaseModel):
    model_bytes: int
    vocab_bytes: int  # input embedding + output head (+ id maps), shared storage once


class MemoryReport(BaseModel):
    """Before and after, in bytes of tensor storage; ``saved_*`` are percentages of ``before``."""

    before: MemorySide
    after: MemorySide

    @property
    def saved_model_pct(self) -> float:
        return 100.0 * (1 - self.after.model_bytes / self.before.model_bytes) if self.before.model_bytes else 0.0

    @property
    def saved_vocab_pct(self) -> float:
        return 100.0 * (1 - self.after.vocab_bytes / self.before.vocab_bytes) if self.before.vocab_bytes else 0.0

    def summary(self) -> dict[str, Any]:
        return {**self.model_dump(), "saved_model_pct": round(self.saved_model_pct, 3),
                "saved_vocab_pct": round(self.saved_vocab_pct, 3)}  # fmt: skip

    def line(self) -> str:
        mb = 1 / 2**20
        return (f"embedding+head {self.before.vocab_bytes * mb:.1f} -> {self.after.vocab_bytes * mb:.1f} MiB "
                f"({self.saved_vocab_pct:.1f}% saved); model {self.before.model_bytes * mb:.1f} -> "
                f"{self.after.model_bytes * mb:.1f} MiB ({self.saved_model_pct:.1f}% saved)")  # fmt: skip


def measure(model: Any) -> MemorySide:
    return MemorySide(model_bytes=storage_bytes(model_tensors(model)), vocab_bytes=storage_bytes(vocab_tensors(model)))
