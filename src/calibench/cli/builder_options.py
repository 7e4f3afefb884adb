"""CLI options derived from the builders' parameter models, and parameter names mapped to flags.

``calibench data build NAME`` takes the union of every builder's fields as
options (``seq_len`` -> ``--seq-len``, a bool -> ``--x/--no-x``), grouped in
``--help`` by the builder that declares them.  An option left out is not
passed at all, so the builder's own default applies; an option the named
builder does not take is refused by the same validation the Python API and
study specs go through.  Nothing here restates a parameter: add a field to a
model and it is a flag.
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Callable, Sequence
from typing import Any, Literal

import typer
from pydantic import BaseModel

from calibench.cli.derive import _UNSET, field_default
from calibench.core.errors import ParameterError
from calibench.data.builders.params import SetParams

SIZES_PANEL = "sizes (every builder)"
# API parameter -> CLI flag where the flag is not simply --name-with-dashes
FLAG_OVERRIDES: dict[str, str] = {"source": "SOURCE"}


def flag_for(param: str) -> str:
    """The one place where an API parameter name becomes a CLI flag."""
    return FLAG_OVERRIDES.get(param, "--" + param.replace("_", "-"))


def cli_message(exc: ParameterError) -> str:
    return exc.render(flag_for)


def _base(annotation: Any) -> Any:
    """``X | None`` -> X."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return args[0] if len(args) == 1 else str
    return annotation


def _click_type(annotation: Any) -> tuple[type, str]:
    base = _base(annotation)
    if typing.get_origin(base) is Literal:
        return str, " Choices: " + ", ".join(str(a) for a in typing.get_args(base)) + "."
    if base in (bool, int, float, str):
        return base, ""
    if typing.get_origin(base) is dict:
        return str, " Give NAME=VALUE,NAME=VALUE."
    if typing.get_origin(base) is list:
        return str, " Comma-separated."
    return str, ""


def convert(annotation: Any, value: Any) -> Any:
    """A CLI string to what the model field takes (pydantic validates the result)."""
    base = _base(annotation)
    if typing.get_origin(base) is dict and isinstance(value, str):
        from calibench.data.builders.mixture import parse_mix_name

        return parse_mix_name("mix:" + value)
    if typing.get_origin(base) is list and isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


def derived_fields(models: Sequence[tuple[str, type[BaseModel]]], skip: set[str]) -> dict[str, dict[str, Any]]:
    """Field name -> {annotation, help, panel, users} over the given (builder name, model) pairs."""

    fields: dict[str, dict[str, Any]] = {}
    for builder, model in models:
        for name, info in model.model_fields.items():
            if name in skip:
                continue
            entry = fields.setdefault(
                name,
                {
                    "annotation": info.annotation,
                    "helps": [],
                    "users": [],
                    "defaults": [],
                    "panel": SIZES_PANEL if name in SetParams.model_fields else builder,
                },
            )
            entry["users"].append(builder)
            default = field_default(model, name)
            if default not in entry["defaults"]:
                entry["defaults"].append(default)
            text = info.description or ""
            if text and text not in entry["helps"]:
                entry["helps"].append(text)
    return fields


def options_signature(fields: dict[str, dict[str, Any]], all_builders: int) -> list[inspect.Parameter]:
    params = []
    for name, entry in fields.items():
        kind, extra = _click_type(entry["annotation"])
        users = "" if len(entry["users"]) >= all_builders else f" [{', '.join(entry['users'])}]"
        help_text = " / ".join(entry["helps"]) + extra + users
        decl = f"{flag_for(name)}/--no-{name.replace('_', '-')}" if kind is bool else flag_for(name)
        # not given -> not passed (the builder's default applies); the help shows it when every builder agrees
        defaults = entry.get("defaults", [])
        shown = str(defaults[0]) if len(defaults) == 1 and defaults[0] not in (None, _UNSET) else False
        option = typer.Option(None, decl, help=help_text, rich_help_panel=entry["panel"], show_default=shown)
        params.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=kind | None))
    return params


def with_builder_options(
    command: Callable[..., Any], fields: dict[str, dict[str, Any]], all_builders: int
) -> Callable[..., Any]:
    """``command`` (taking its own parameters and ``builder_params: dict``) with the derived options added."""
    own = [p for p in inspect.signature(command, eval_str=True).parameters.values() if p.name != "builder_params"]

    def wrapper(**kwargs: Any) -> Any:
        given = {
            k: convert(fields[k]["annotation"], kwargs.pop(k))
            for k in list(kwargs)
            if k in fields and kwargs[k] is not None
        }
        for k in [k for k in kwargs if k in fields]:
            kwargs.pop(k)
        return command(**kwargs, builder_params=given)

    derived = options_signature(fields, all_builders)
    wrapper.__signature__ = inspect.Signature(own + derived)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in own + derived}
    wrapper.__doc__ = command.__doc__
    wrapper.__name__ = command.__name__
    return wrapper
