"""The options of :func:`calibench.predict.recommend.recommend` and of
:func:`calibench.predict.study_signals.compute_study_signals` beyond the shared ones, typed.

``calibench recommend`` derives its options from :class:`RecommendSettings`;
``recommend(model, settings=RecommendSettings(...))`` takes the same model,
its keywords overriding the settings' fields.  ``params`` is the method's
parameters as ``KEY=VALUE,...`` text here (:func:`parse_params`); ``recommend``
also takes them as a dict.  ``calibench study signals`` and
``compute_study_signals(directory, settings=StudySignalsSettings(...))`` take
:class:`StudySignalsSettings` alike.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from calibench.core.errors import CalibenchError


def parse_params(text: str | None) -> dict[str, Any]:
    """``bits=4,group_size=64`` -> {"bits": 4, "group_size": 64} (values read as YAML scalars)."""
    import yaml

    params: dict[str, Any] = {}
    for part in (text or "").split(","):
        if not part.strip():
            continue
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            raise CalibenchError(f"--params entry '{part.strip()}' is not KEY=VALUE (e.g. bits=4,group_size=64)")
        params[key.strip()] = yaml.safe_load(value.strip()) if value.strip() else None
    return params


class RecommendSettings(BaseModel):
    """What to recommend and within what budget, beyond the shared settings (``calibench recommend``'s options)."""

    model_config = ConfigDict(extra="forbid")

    method: str = Field(..., description="Compression method (gptq, wanda, sparsegpt, awq, ...).")
    params: str | None = Field(
        None, description="Method parameters as KEY=VALUE,... e.g. bits=4,group_size=64 or sparsity=0.5."
    )
    candidates: str = Field(
        ..., description="Comma-separated set builders or sources: wiki,code,self,curated, a file, mix:..."
    )
    budget: float = Field(
        ..., description="Compute budget in minutes, for everything: building, signals and full evaluations."
    )
    n: int = Field(16, description="Windows per calibration set.")
    seq_len: int = Field(128, description="Tokens per window.")
    sets: int = Field(1, description="Sets per candidate (disjoint draws), each ranked on its own.")
    tasks: str = Field(
        "ppl:wiki",
        description="Evaluation tasks of a full run, as in `calibench eval`.",
        json_schema_extra={"short": "-t"},
    )
    objective: str = Field(
        "auto",
        description="What the choice maximises: auto (average accuracy if there are accuracy tasks, else the first "
        "ppl: task), 'average acc' or a ppl: task.",
    )
    signal: str | None = Field(
        None, description="The cheap signal to rank by (default: the validated one; see `calibench.predict.signals`)."
    )
    study: Path | None = Field(
        None,
        description="A study directory with `calibench study signals` computed: its validation of the signal goes "
        "on the card (and picks the signal).",
    )
    k_layers: int = Field(2, description="Decoder layers the reconstruction signal compresses.")
    top: int | None = Field(
        None, description="Evaluate at most this many candidates in full (default: as many as the budget allows)."
    )
    limit: int | None = Field(None, description="Items per lm-eval task (and perplexity windows) of a full run.")
    ppl_seq_len: int | None = Field(None, description="Perplexity window length of a full run.")


class StudySignalsSettings(BaseModel):
    """Which signals of a study to compute (``calibench study signals``' options beyond the shared ones)."""

    model_config = ConfigDict(extra="forbid")

    signals: str | None = Field(
        None,
        description="Signals or groups to compute, comma-separated (default: all): reconstruction, coverage, "
        "outliers, stats, or names such as outliers.kurtosis.",
    )
    k_layers: int = Field(2, description="Decoder layers the reconstruction signal compresses.")
    recompute: bool = Field(
        False, description="Compute every value again (default: only missing ones or ones with other settings)."
    )
