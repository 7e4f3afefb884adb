"""The built-in set builders, each a small function over its typed parameters.

Registered on first use of the registry.  Every function takes the validated
parameters and a :class:`BuildContext` and returns ``params.sets`` sets.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from calibench.data.builders import params as P
from calibench.data.builders.context import BuildContext
from calibench.data.builders.mixture import MIX_PREFIX, build_mixture, parse_mix_name
from calibench.data.builders.registry import Builder, Pattern, register_builder, register_pattern, resolve
from calibench.data.chat import ChatFormat, require_chat_template, template_record
from calibench.data.draw import build_calibration_sets
from calibench.data.sources import get_source
from calibench.data.sources.conversations import ConversationSource
from calibench.data.sources.hub_any import HUB_PREFIX, AnyHubSource, parse_hub_name
from calibench.data.sources.local import LOCAL_SUFFIXES, LocalFileSource


def _draw(source: Any, p: Any, ctx: BuildContext, builder: dict[str, Any] | None = None) -> list[Any]:

    return build_calibration_sets(
        source,
        ctx.tokenizer,
        n=p.n,
        seq_len=p.seq_len,
        seed=p.seed,
        sets=p.sets,
        mode=getattr(p, "mode", None),
        split=getattr(p, "split", None),
        bos=P.BOS_POLICY[p.bos],
        max_seq_len=ctx.max_seq_len,
        builder=builder,
    )


def build_text(p: Any, ctx: BuildContext) -> list[Any]:
    return _draw(p.source, p, ctx)


def build_random_vocab(p: Any, ctx: BuildContext) -> list[Any]:
    return _draw("random-vocab", p, ctx)


def build_random_punct(p: Any, ctx: BuildContext) -> list[Any]:
    return _draw("random-punct", p, ctx)


def build_file(p: Any, ctx: BuildContext) -> list[Any]:

    return _draw(LocalFileSource(p.path, text_field=p.text_field), p, ctx)


def build_memory(p: Any, ctx: BuildContext) -> list[Any]:
    from calibench.data.sources.memory import memory_source

    return _draw(memory_source(p.data, text_field=p.text_field, stream_docs=p.stream_docs), p, ctx)


#: in-memory content (the Python API only: no name resolves to it, so the CLI has no such source)
MEMORY = Builder(
    "memory",
    "in-memory texts, conversations or a datasets.Dataset (Python API)",
    "memory",
    P.MemoryParams,
    build_memory,
)


def build_hub(p: Any, ctx: BuildContext) -> list[Any]:

    source = AnyHubSource(p.repo, p.config, p.text_field, p.revision, p.streaming, p.stream_docs)
    return _draw(source, p, ctx)


def build_chat(p: Any, ctx: BuildContext) -> list[Any]:

    template = Path(p.chat_template).read_text(encoding="utf-8") if p.chat_template else None
    require_chat_template(ctx.tokenizer, ctx.model_name, template=template)
    fmt = ChatFormat(
        messages_field=p.messages_field,
        instruction_field=p.instruction_field,
        input_field=p.input_field,
        response_field=p.response_field,
        system=p.system,
        enable_thinking=p.enable_thinking,
    )
    source = ConversationSource(p.data, fmt, split=p.split, revision=p.revision, template=template)
    record = {
        "builder": "chat",
        "chat_template": template_record(ctx.tokenizer, template=template, enable_thinking=p.enable_thinking),
    }
    return _draw(source, p, ctx, builder=record)


def _preflight_text(p: Any) -> None:
    get_source(p.source).preflight()


def _preflight_hub(p: Any) -> None:
    AnyHubSource(p.repo, p.config, p.text_field, p.revision, p.streaming, p.stream_docs).preflight()


def _preflight_chat(p: Any) -> None:
    if p.data.startswith(HUB_PREFIX):
        AnyHubSource(parse_hub_name(p.data)["repo"], revision=p.revision).preflight()


def _preflight_mix(p: Any) -> None:
    """Each component's own preflight, so a hub component offline is refused before any other is built."""
    for component in p.components:
        builder, carried = resolve(component)
        if builder.preflight is None:
            continue
        try:
            checked = builder.params.model_validate(carried)
        except ValidationError:
            continue  # parameters the mixture supplies later; that component is checked when it is built
        builder.preflight(checked)


def build_mix(p: Any, ctx: BuildContext) -> list[Any]:

    return build_mixture(p, ctx)


def _register() -> None:

    for builder in (
        Builder(
            "text",
            "any registered text source (hub corpus, offline domain, language)",
            "text",
            P.TextParams,
            build_text,
            usage="NAME",
            preflight=_preflight_text,
        ),
        Builder(
            "random-vocab",
            "tokens drawn uniformly from the vocabulary, special tokens excluded (baseline)",
            "baseline",
            P.RandomVocabParams,
            build_random_vocab,
        ),
        Builder(
            "random-punct",
            "tokens drawn uniformly from the punctuation tokens (Paglieri et al.'s nonsense baseline)",
            "baseline",
            P.RandomVocabParams,
            build_random_punct,
        ),
        Builder(
            "file",
            "a local .txt/.jsonl/.parquet file",
            "file",
            P.FileParams,
            build_file,
            usage="PATH.txt|.jsonl|.parquet",
        ),
        Builder(
            "hub",
            "any hub dataset through datasets.load_dataset",
            "hub",
            P.HubParams,
            build_hub,
            usage="hub:ORG/NAME[:CONFIG]",
            preflight=_preflight_hub,
        ),
        Builder(
            "chat",
            "chat/SFT conversations rendered with the model's chat template",
            "chat",
            P.ChatParams,
            build_chat,
            preflight=_preflight_chat,
        ),
        Builder(
            "mix",
            "a mixture of other sources in exact proportions",
            "mixture",
            P.MixParams,
            build_mix,
            usage="mix:A=W,B=W,...",
            preflight=_preflight_mix,
        ),
    ):
        register_builder(builder)
    register_pattern(
        Pattern(
            "hub:ORG/NAME[:CONFIG]",
            lambda name: name.startswith(HUB_PREFIX),
            lambda name: ("hub", parse_hub_name(name)),
        )
    )
    register_pattern(
        Pattern(
            "mix:A=W,B=W,...",
            lambda name: name.startswith(MIX_PREFIX),
            lambda name: ("mix", {"components": parse_mix_name(name)}),
        )
    )
    register_pattern(
        Pattern(
            "a .txt/.jsonl/.parquet file",
            lambda name: Path(name).suffix.lower() in LOCAL_SUFFIXES or Path(name).is_file(),
            lambda name: ("file", {"path": name}),
        )
    )


_register()
