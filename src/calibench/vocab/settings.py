"""The options of :func:`calibench.vocab.checkpoint.restore` beyond its paths, typed.

``calibench vocab restore`` derives its options from :class:`VocabRestoreSettings`;
``restore(path, out, settings=VocabRestoreSettings(...))`` takes the same model.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class VocabRestoreSettings(BaseModel):
    """Where the dropped rows come from when they were saved by reference (``calibench vocab restore``)."""

    model_config = ConfigDict(extra="forbid")

    original: str | None = Field(
        None, description="The original model, when the dropped rows were saved by reference (--dropped reference)."
    )
