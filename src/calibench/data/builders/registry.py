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
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from calibench.core.errors import ParameterError, UnknownNameError, did_you_mean
from calibench.core.registry import Registry
from calibench.data.builders.params import SetParams
from calibench.data.sources import list_sources

if TYPE_CHECKING:
    from calibench.data.builders.params import SetParams


@dataclass(frozen=True)
class Builder:
    """One way of making calibration sets."""

    name: str
    summary: str
    group: str  # how `data sources` groups it: text, hub, file, chat, mixture, generated, curated, baseline
    params: type[SetParams]  # every builder takes the sizes and seed
    run: Callable[[Any, Any], list[Any]]
    needs_model: bool = False  # loads the model's weights, not only its tokenizer
    usage: str = ""  # how the name is written when it is a pattern, e.g. hub:ORG/NAME[:CONFIG]
    # refuses at once, after validation and before any tokenizer loads, what cannot work (a hub source offline)
    preflight: Callable[[Any], None] | None = None


@dataclass(frozen=True)
class Pattern:
    """A family of names that carry parameters, such as ``hub:ORG/NAME``."""

    usage: str
    matches: Callable[[str], bool]
    parse: Callable[[str], tuple[str, dict[str, Any]]]  # name -> (builder name, parameters it carries)


BUILDERS: Registry[Builder] = Registry("builder")
# builders that higher layers define, named here so that data never imports them
BUILDERS.register_lazy("self", "calibench.selfcal.builder:BUILDER")
BUILDERS.register_lazy("curated", "calibench.curate.builder:BUILDER")
_PATTERNS: list[Pattern] = []
CARRIED = {"source"}  # parameters only ever given by the name itself


def register_builder(builder: Builder) -> Builder:
    """Make ``builder.name`` usable from the API, ``calibench data build`` and study specs."""
    return BUILDERS.register(builder.name, builder)


def register_pattern(pattern: Pattern) -> None:
    _PATTERNS.append(pattern)


def builders() -> dict[str, Builder]:
    """Registered builders by name (the text builder stands for every text source)."""
    _ensure_loaded()
    return dict(BUILDERS.items())


def resolve(name: str) -> tuple[Builder, dict[str, Any]]:
    """The builder a name stands for and the parameters the name itself carries."""
    _ensure_loaded()
    if not isinstance(name, str) or not name:
        raise ParameterError("source", "must be a non-empty name")
    if name in BUILDERS:
        return BUILDERS.get(name), {}

    if name in list_sources():  # before patterns: a file named like a source must not shadow it
        return BUILDERS.get("text"), {"source": name}
    for pattern in _PATTERNS:
        if pattern.matches(name):
            builder_name, carried = pattern.parse(name)
            return BUILDERS.get(builder_name), carried
    known = sorted({n for n in BUILDERS if n != "text"} | set(list_sources()))
    usages = ", ".join(p.usage for p in _PATTERNS)
    raise UnknownNameError(f"unknown source '{name}'{did_you_mean(name, known)}; or {usages}")


def make_params(name: str, **params: Any) -> tuple[Builder, SetParams]:
    """Validate ``params`` for the builder ``name`` stands for; errors name the parameter."""
    builder, carried = resolve(name)
    clash = sorted(set(carried) & set(params))
    if clash:
        raise ParameterError(clash[0], f"is already given by the name '{name}'")
    try:
        checked = builder.params.model_validate({**carried, **params})
    except ValidationError as exc:
        raise parameter_error(exc, builder, name) from None
    if builder.preflight is not None:
        builder.preflight(checked)
    return builder, checked


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

    return [name for name in builder.params.model_fields if name not in SetParams.model_fields and name not in CARRIED]
