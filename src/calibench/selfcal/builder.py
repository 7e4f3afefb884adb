"""The ``self`` set builder: the model writes its own calibration text (self-calibration).

The data layer names it lazily (``calibench.selfcal.builder:BUILDER``), so data never imports selfcal.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator

from calibench.data.builders import params as P
from calibench.data.builders.context import BuildContext
from calibench.data.builders.registry import Builder
from calibench.selfcal.api import GenerationSettings, run_generation
from calibench.selfcal.prompted import PromptedSettings, generate_prompted_set


def _prompting_options(self: BaseModel) -> BaseModel:
    """Each prompting setting takes only its own options, so none is silently ignored."""
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


def _self_params() -> type[BaseModel]:
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
    fields = set(GenerationSettings.model_fields)
    settings = GenerationSettings(**{k: v for k, v in p.model_dump().items() if k in fields})
    settings.check()  # before the weights load
    if p.prompting == "chat":
        from calibench.data.chat import require_chat_template

        require_chat_template(ctx.tokenizer, ctx.model_name)
    model = ctx.load_model()
    if p.prompting == "chat":
        chosen = {
            k: getattr(p, k)
            for k in ("t_init", "t_final", "schedule_tokens", "batch_size", "enable_thinking", "system")
        }
        if p.max_new_tokens is not None:
            chosen["max_new_tokens"] = p.max_new_tokens
        prompted = PromptedSettings(**chosen)
        return [
            generate_prompted_set(
                model,
                ctx.tokenizer,
                n=p.n,
                seq_len=p.seq_len,
                seed=p.seed + index,
                settings=prompted,
                prompts=p.prompts,
                max_seq_len=ctx.max_seq_len,
            )[0]
            for index in range(p.sets)
        ]
    return [
        run_generation(
            model,
            ctx.tokenizer,
            n=p.n,
            seq_len=p.seq_len,
            seed=p.seed + index,
            settings=settings,
            max_seq_len=ctx.max_seq_len,
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
