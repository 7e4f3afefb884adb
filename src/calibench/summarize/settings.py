"""The options of :func:`calibench.summarize.judges.validate_judge`, typed, as one model.

``calibench summ validate`` derives its options from :class:`SummValidateSettings` (the field name is the
flag, the default the option's default, the description its help).  The shared concepts (batch size, dtype,
device, offline) are :class:`calibench.core.settings.CommonSettings`' fields.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from calibench.summarize.prompts import ChatMode, check_style


class SummValidateSettings(BaseModel):
    """Which judge to validate on which labelled pairs datasets, with which model and prompt."""

    model_config = ConfigDict(extra="forbid")

    judge: str = Field(
        "all",
        description="The judge to validate: lexical (coverage, density, novel n-gram shares), nli (SummaC-ZS), "
        "harim (HaRiM+) or all.",
    )
    pairs: str = Field(
        "all",
        description="Comma-separated pairs datasets (fsp, xsum-swap, xsum-corrupt, multilexsum-long; see "
        "`calibench summ pairs`) or all.",
    )
    judge_model: str | None = Field(
        None,
        description="The judge's model: for harim a bundled model, directory or hub id (default smollm2-135m, "
        "as a summ: task uses the dense model under test); for nli aegis or a hub id/directory (default aegis). "
        "With one --judge only.",
    )
    style: str = Field(
        "sentences",
        description="HaRiM+'s prompt style, as the summ: task's style option (paragraph, sentences, summary).",
    )
    chat: ChatMode = Field(
        "auto",
        description="HaRiM+'s prompts through the judge's chat template: auto (when it has one), yes or no. A "
        "summ: task uses it when both the judge and the model under test have one.",
    )
    limit: int | None = Field(
        None, ge=1, description="Only the first N rows of each dataset (a quick check; summ: tasks use a full run)."
    )

    @field_validator("judge")
    @classmethod
    def _judge(cls, value: str) -> str:
        from calibench.summarize.heldout import validate_choices

        if value not in validate_choices():
            raise ValueError(f"must be one of {', '.join(validate_choices())}, got '{value}'")
        return value

    @field_validator("pairs")
    @classmethod
    def _pairs(cls, value: str) -> str:
        from calibench.summarize.pairsets import parse_pairsets

        try:
            return ",".join(parse_pairsets(value))
        except Exception as exc:
            raise ValueError(str(exc)) from None

    @field_validator("style")
    @classmethod
    def _style(cls, value: str) -> str:
        return check_style(value)


class SummPairsSettings(BaseModel):
    """How many rows of a labelled pairs dataset to write."""

    model_config = ConfigDict(extra="forbid")

    limit: int | None = Field(None, ge=1, description="Only the first N rows (an even N keeps the labels balanced).")


class SummScoreSettings(BaseModel):
    """Which judges score a pairs file, and how many of its rows."""

    model_config = ConfigDict(extra="forbid")

    judges: str = Field(
        "lexical,nli",
        description="Comma-separated judges: lexical (fragment coverage/density, novel n-gram shares; no model), "
        "nli (SummaC-ZS with the aegis NLI model), harim (HaRiM+ with smollm2-135m; slow, so opt-in).",
    )
    limit: int | None = Field(None, ge=1, description="Only the first N rows of the pairs file.")

    @field_validator("judges")
    @classmethod
    def _judges(cls, value: str) -> str:
        from calibench.summarize.score import parse_judges

        return ",".join(parse_judges(value))


class SummTableSettings(BaseModel):
    """How the per-judge table of a labelled scores file is computed."""

    model_config = ConfigDict(extra="forbid")

    bootstrap: int = Field(1000, ge=1, description="Bootstrap replicates for the 95% CIs.")
