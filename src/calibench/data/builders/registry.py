"""The registry of set builders: every way of making a CalibrationSet, by name.

A builder is a name, a typed parameter model and a function
``run(params, context) -> list[CalibrationSet]``.  Names resolve in this
order:

1. a registered builder (``self``, ``curated``, ``chat``, ``mix``, ``hub``,
   ``file``, ``random-vocab``, third-party ones);
2. a *pattern*: ``hub:ORG/NAME[:CONFIG]``, ``mix:A=W,B=W``, a path to a
   .txt/.jsonl/.parquet file; a pattern is a builder plus the parameters its
   name carries;
3. a registered text source (``wiki``, ``c4``, ``man-de``, ...), built by the
   generic text builder.

So ``build_sets("wiki", ...)``, ``calibench data build wiki`` and a study
spec's ``sources: [{name: wiki}]`` are one code path.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError

from calibench.errors import ParameterError, UnknownNameError, did_you_mean


@dataclass(frozen=True)
class Builder:
    """One way of making calibration sets."""

    name: str
    summary: str
    group: str  # how `data sources` groups it: text, hub, file, chat, mixture, generated, curated, baseline
    params: type[BaseModel]
    run: Callable[[Any, Any], list[Any]]
    needs_model: bool = False  # loads the model's weights, not only its tokenizer
    usage: str = ""  # how the name is written when it is a pattern, e.g. hub:ORG/NAME[:CONFIG]


@dataclass(frozen=True)
class Pattern:
    """A family of names that carry parameters, such as ``hub:ORG/NAME``."""

    usage: str
    matches: Callable[[str], bool]
    parse: Callable[[str], tuple[str, dict[str, Any]]]  # name -> (builder name, parameters it carries)


@dataclass
class _Registry:
    builders: dict[str, Builder] = field(default_factory=dict)
    patterns: list[Pattern] = field(default_factory=list)


_REGISTRY = _Registry()
CARRIED = {"source"}  # parameters only ever given by the name itself


def register_builder(builder: Builder) -> Builder:
    """Make ``builder.name`` usable from the API, ``calibench data build`` and study specs."""
    _REGISTRY.builders[builder.name] = builder
    return builder


def register_pattern(pattern: Pattern) -> None:
    _REGISTRY.patterns.append(pattern)


def builders() -> dict[str, Builder]:
    """Registered builders by name (the text builder stands for every text source)."""
    _ensure_loaded()
    return dict(_REGISTRY.builders)


def resolve(name: str) -> tuple[Builder, dict[str, Any]]:
    """The builder a name stands for and the parameters the name itself carries."""
    _ensure_loaded()
    if not isinstance(name, str) or not name:
        raise ParameterError("source", "must be a non-empty name")
    if name in _REGISTRY.builders:
        return _REGISTRY.builders[name], {}
    from calibench.data.sources import list_sources

    if name in list_sources():  # before patterns: a file named like a source must not shadow it
        return _REGISTRY.builders["text"], {"source": name}
    for pattern in _REGISTRY.patterns:
        if pattern.matches(name):
            builder_name, carried = pattern.parse(name)
            return _REGISTRY.builders[builder_name], carried
    known = sorted({n for n in _REGISTRY.builders if n != "text"} | set(list_sources()))
    usages = ", ".join(p.usage for p in _REGISTRY.patterns)
    raise UnknownNameError(f"unknown source '{name}'{did_you_mean(name, known)}; or {usages}")


def make_params(name: str, **params: Any) -> tuple[Builder, BaseModel]:
    """Validate ``params`` for the builder ``name`` stands for; errors name the parameter."""
    builder, carried = resolve(name)
    clash = sorted(set(carried) & set(params))
    if clash:
        raise ParameterError(clash[0], f"is already given by the name '{name}'")
    try:
        return builder, builder.params.model_validate({**carried, **params})
    except ValidationError as exc:
        raise parameter_error(exc, builder, name) from None


def parameter_error(exc: ValidationError, builder: Builder, name: str | None = None) -> ParameterError:
    """The first pydantic error as a ParameterError naming the field (and what is allowed)."""
    error = exc.errors()[0]
    shown = name or builder.name
    param = str(error["loc"][0]) if error["loc"] else "params"
    if error["type"] == "extra_forbidden":
        allowed = sorted(k for k in builder.params.model_fields if k not in CARRIED)
        return ParameterError(param, f"is not a parameter of '{shown}'", allowed=allowed)
    if error["type"] == "missing":
        return ParameterError(param, f"is required by '{shown}'")
    message = str(error["msg"]).removeprefix("Value error, ")
    head, sep, rest = message.partition(": ")
    if not error["loc"] and sep and " " not in head:  # a model-level check that names its own parameter
        return ParameterError(head, rest)
    return ParameterError(param, f"{message[0].lower()}{message[1:]} (got {error.get('input')!r})")


_LOADED = False


def _ensure_loaded() -> None:
    """Register the built-in builders on first use (keeps ``import calibench`` fast)."""
    global _LOADED
    if not _LOADED:
        _LOADED = True
        from calibench.data.builders import builtin  # noqa: F401  (registers)


def describe(builder: Builder) -> list[str]:
    """The builder's own parameters (beyond the sizes every builder takes), for `data sources`."""
    from calibench.data.builders.params import SetParams

    return [name for name in builder.params.model_fields if name not in SetParams.model_fields and name not in CARRIED]
