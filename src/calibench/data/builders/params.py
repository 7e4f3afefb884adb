"""Typed parameters of every set builder, validated by pydantic.

Each builder declares one model; the fields are what a user may set, with
their defaults and a description.  The same models validate the Python API,
study-spec ``params`` and the CLI, whose options are derived from these fields
(:mod:`calibench.cli.builder_options`), so nothing is restated.  A field is
documented where it is declared; subclasses inherit it.
"""

from __future__ import annotations

from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator, model_validator

from calibench.core.settings import DEFAULTS, CommonSettings
from calibench.data.draw import MAX_N
from calibench.data.tokenizer import BosPolicy

Bos = Literal["auto", "always", "never"]
BOS_POLICY: dict[str, BosPolicy] = {"auto": "auto", "always": True, "never": False}

Params = TypeVar("Params", bound=BaseModel)


class SetParams(BaseModel):
    """Sizes and seed: what every builder takes."""

    model_config = ConfigDict(extra="forbid")
    n: int = Field(128, description=f"Windows per set (1..{MAX_N}).")
    seq_len: int = Field(2048, description="Tokens per window, at most the model's maximum.")
    seed: int = Field(
        DEFAULTS.seed, ge=0, description=f"{CommonSettings.model_fields['seed'].description} Sets are byte-identical."
    )
    sets: int = Field(1, description="Number of sets to draw at once (pairwise disjoint for text sources).")

    @model_validator(mode="after")
    def _sizes(self) -> SetParams:
        """The one size check (:func:`validate_sizes`), so API, CLI and specs say the same thing."""
        from calibench.core.errors import ParameterError
        from calibench.data.draw import validate_sizes

        try:
            validate_sizes(self.n, self.seq_len, self.sets, None)
        except ParameterError as exc:
            raise ValueError(f"{exc.param}: {exc.problem}") from None
        return self


class WindowParams(SetParams):
    """How windows are cut from text."""

    bos: Bos = Field("auto", description="Prefix each window with BOS: auto follows the tokenizer.")
    mode: Literal["document", "concat", "sample"] | None = Field(
        None,
        description="document: a random window inside a long enough document (c4 convention); concat: "
        "windows of the packed stream (wikitext convention); sample: one document or conversation per window "
        "from its start, truncated or padded with an attention mask. Default per source.",
    )


class TextParams(WindowParams):
    """A registered text source (hub corpus, offline domain, language)."""

    source: str = Field(..., description="The registered source name (carried by the name itself).")
    split: str | None = Field(None, description="Source split; defaults to the calibration split.")


class RandomVocabParams(SetParams):
    """The random-vocabulary baseline has no text, so only sizes and BOS."""

    bos: Bos = Field("auto", description="Prefix each window with BOS: auto follows the tokenizer.")


class FileParams(WindowParams):
    """A local .txt/.jsonl/.parquet file."""

    path: str = Field(..., description="The file: .txt (blank-line separated documents), .jsonl or .parquet.")
    text_field: str = Field("text", description="Text field of .jsonl/.parquet rows (or of hub dataset rows).")


class MemoryParams(WindowParams):
    """In-memory data given to the Python API: texts, conversations or a ``datasets`` dataset."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)
    data: Any = Field(..., description="The in-memory content (the object given as the source).")
    text_field: str = Field("text", description="Text field of .jsonl/.parquet rows (or of hub dataset rows).")
    stream_docs: int = Field(
        10000, ge=1, description="Items read from an iterable without a length (an IterableDataset, a generator)."
    )


class HubParams(WindowParams):
    """Any hub dataset, through ``datasets.load_dataset``."""

    repo: str = Field(..., description="Hub dataset id ORG/NAME.")
    config: str | None = Field(None, description="Dataset configuration (subset) name.")
    split: str | None = Field(None, description="Source split; defaults to the calibration split.")
    text_field: str = Field("text", description="Text field of .jsonl/.parquet rows (or of hub dataset rows).")
    revision: str | None = Field(
        None, description="Hub dataset revision (branch, tag or commit); recorded in the manifest."
    )
    streaming: bool = Field(
        False, description="Stream the hub dataset instead of downloading it; reads the first --stream-docs rows."
    )
    stream_docs: int = Field(10000, ge=1, description="Rows read from a streamed hub dataset.")


class ChatParams(WindowParams):
    """Conversations (a messages column, or instruction/response fields) rendered with the chat template."""

    data: str = Field(..., description="Conversations: a .jsonl/.json/.parquet file or hub:ORG/NAME[:CONFIG].")
    split: str | None = Field(None, description="Source split; defaults to the calibration split.")
    revision: str | None = Field(
        None, description="Hub dataset revision (branch, tag or commit); recorded in the manifest."
    )
    messages_field: str = Field("messages", description="Column of role/content message lists.")
    instruction_field: str | None = Field(
        None, description="Instead of messages: the instruction column of SFT rows (with --response-field)."
    )
    input_field: str | None = Field(
        None, description="Optional input column appended to the instruction (Alpaca style)."
    )
    response_field: str | None = Field(None, description="The response column of SFT rows.")
    system: str | None = Field(None, description="A system message for conversations that have none.")
    enable_thinking: bool | None = Field(
        None, description="Render in thinking mode (where the chat template supports it)."
    )
    chat_template: str | None = Field(None, description="A Jinja chat template file to use instead of the tokenizer's.")


class MixParams(SetParams):
    """A mixture of other builders in exact proportions."""

    components: dict[str, float] = Field(
        ..., description="Mixture weights NAME=W,... (summing to 1), e.g. wiki=0.5,code=0.25,self=0.25."
    )
    bos: Bos = Field("auto", description="Prefix each window with BOS: auto follows the tokenizer.")

    @field_validator("components")
    @classmethod
    def _valid_components(cls, value: dict[str, float]) -> dict[str, float]:
        """Weights sum to 1 and every component is a known, non-mixture source: checked before any build."""
        from calibench.data.builders.mixture import _component_builder, check_weights

        check_weights(value)
        for component in value:
            _component_builder(component)
        return value


def extend(
    name: str,
    base: type[Params],
    settings: type[BaseModel],
    exclude: set[str],
    doc: str,
    validators: dict[str, Any] | None = None,
    **extra: Any,
) -> type[Params]:
    """``base`` plus the fields of an existing settings model (minus ``exclude``) plus ``extra`` ones.

    The generator and curation settings already are typed, documented models;
    their builders' parameters are derived from them rather than restated.
    """
    # (annotation, FieldInfo) pairs, as create_model takes them
    fields: dict[str, Any] = {
        key: (info.annotation, info) for key, info in settings.model_fields.items() if key not in exclude
    }
    model = create_model(name, __base__=base, __doc__=doc, __validators__=validators or {}, **fields, **extra)
    return model
