"""The ``self`` set builder: the model writes its own calibration text (self-calibration).

The data layer names it lazily (``calibench.selfcal.builder:BUILDER``), so data never imports selfcal.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from calibench.data.builders import params as P
from calibench.data.builders.context import BuildContext
from calibench.data.builders.registry import Builder
from calibench.selfcal.api import GenerationSettings
from calibench.selfcal.pipeline import STRATEGIES, generate


def _prompting_options(self: Any) -> Any:
    """Each prompting setting takes only its own options, so none is silently ignored.

    ``self`` is a :data:`SelfParams`, a model made by ``create_model``: its fields are not known statically.
    """
    chat_only = [k for k in ("prompts", "system", "enable_thinking") if getattr(self, k) is not None]
    bos_only = [
        k
        for k, default in (("first_token", "any"), ("start_token", "auto"), ("backend", "torch"), ("stopwords", None))
        if getattr(self, k) != default
    ]
    if self.prompting == "bos" and chat_only:
        raise ValueError(f"{chat_only[0]}: applies to prompting chat only (this is prompting bos)")
    if self.prompting == "chat" and bos_only:
        raise ValueError(f"{bos_only[0]}: applies to prompting bos only (this is prompting chat)")
    return self


def _self_params() -> type[P.SetParams]:
    return P.extend(
        "SelfParams",
        P.SetParams,
        GenerationSettings,
        set(),
        "Self-calibration: the model writes its own calibration text.",
        validators={"_prompting_options": model_validator(mode="after")(_prompting_options)},
        prompting=(
            Literal["bos", "chat"],
            Field(
                "bos",
                description="bos: generate from the start token alone "
                "(the paper's setting); chat: answer generic prompts through the chat template.",
            ),
        ),
        prompts=(
            str | None,
            Field(
                None,
                description="Prompt file (one prompt a line) for --prompting chat instead of "
                "the shipped generic prompts.",
            ),
        ),
        system=(str | None, Field(None, description="A system message for conversations that have none.")),
        enable_thinking=(
            bool | None,
            Field(None, description="Render in thinking mode (where the chat template supports it)."),
        ),
    )


SelfParams = _self_params()


def build_self(p: Any, ctx: BuildContext) -> list[Any]:
    """Every set through the one pipeline, with the strategy ``prompting`` names."""
    values = p.model_dump()
    # every generator knob of the parameters is checked, whatever the prompting, before the weights load
    GenerationSettings(**{k: v for k, v in values.items() if k in GenerationSettings.model_fields}).check()
    strategy = STRATEGIES.get(p.prompting)
    # the strategy's own settings and inputs; one left unset keeps the strategy's default
    keys = [*strategy.settings_model.model_fields, *strategy.builder_inputs]
    options = {k: values[k] for k in keys if values[k] is not None}
    strategy.precheck(ctx.tokenizer, ctx.model_name)  # before the weights load
    model = ctx.load_model()
    return [
        generate(
            strategy,
            model,
            ctx.tokenizer,
            n=p.n,
            seq_len=p.seq_len,
            seed=p.seed + index,
            max_seq_len=ctx.max_seq_len,
            **options,
        )[0]
        for index in range(p.sets)
    ]


BUILDER = Builder(
    "self",
    "the model generates its own calibration text (self-calibration)",
    "generated",
    SelfParams,
    build_self,
    needs_model=True,
)
