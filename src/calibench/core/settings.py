"""The settings every command shares: one name, one type, one default and one description each.

:class:`CommonSettings` is the single declaration of the concepts that many
commands, the Python API and study specs take: the model, the output path, the
dtype and device a model loads in, the forward-pass batch size, the seed,
online or offline task data, how many perplexity windows to score, and a pool
(reference) set.  The CLI derives its shared options from these fields
(:mod:`calibench.cli.options`); study specs take their dtype and device
defaults from here.

Defaults, and why:

* ``dtype="auto"`` and ``device="auto"``: the first CUDA GPU if there is one,
  else the CPU; on the CPU ``auto`` is float32, on a GPU the checkpoint's own
  dtype.  This is what transformers and llm-compressor users expect, what
  ``compress``, ``eval``, ``inspect``, ``recommend`` and study specs always
  did, and on a CPU-only machine it is exactly the float32/CPU that
  ``data build``, ``data generate``, ``data curate``, ``data stats`` and
  ``data card`` used to default to (give ``--device cpu --dtype float32`` for
  that on a GPU machine).
* ``offline=None``: offline when ``HF_HUB_OFFLINE`` is set or the hub is
  unreachable, online otherwise, as ``calibench eval`` always decided;
  ``True`` forces the offline mirrors, ``False`` the hub.
* ``batch_size=8`` and ``seed=0``: what every command but one already used.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

Dtype = Literal["auto", "float32", "bfloat16", "float16"]
DEVICE_FORM = r"auto|cpu|cuda(:\d+)?"


class CommonSettings(BaseModel):
    """The shared settings; a command takes the subset it needs (see :mod:`calibench.cli.options`)."""

    model_config = ConfigDict(extra="forbid")

    model: str | None = Field(
        None,
        description="Bundled model name (see `calibench assets list`), local model or checkpoint directory, or hub id.",
        json_schema_extra={"short": "-m"},
    )
    out: Path | None = Field(None, description="Where to write the result.", json_schema_extra={"short": "-o"})
    dtype: Dtype = Field(
        "auto",
        description="Model dtype: auto (float32 on CPU, the checkpoint's own on a GPU), float32, bfloat16 or float16.",
    )
    device: str = Field("auto", description="auto (the first CUDA GPU if any, else CPU), cpu, cuda or cuda:N.")
    batch_size: int = Field(8, ge=1, description="Sequences per forward pass.")
    seed: int = Field(0, description="Random seed: the same seed gives the same result.")
    offline: bool | None = Field(
        None,
        description="Task data from the offline mirrors (--offline) or the hub (--online); default: offline when "
        "HF_HUB_OFFLINE is set or the hub is unreachable.",
        json_schema_extra={"off": "--online"},
    )
    max_windows: int | None = Field(
        None, ge=1, description="How many perplexity windows to score, at most, per held-out text."
    )
    pool: Path | None = Field(
        None,
        description="A pool or reference set directory (e.g. OUT/pool of `data curate`): activation coverage and "
        "diversity against it (needs --model).",
    )

    @field_validator("device")
    @classmethod
    def _device_form(cls, value: str) -> str:
        import re

        # availability is checked where a model loads (a Ray cluster may have GPUs this machine lacks)
        if not re.fullmatch(DEVICE_FORM, value.strip().lower()):
            raise ValueError(f"invalid device '{value}': use auto, cpu, cuda or cuda:N")
        return value.strip().lower()


DEFAULTS = CommonSettings()
