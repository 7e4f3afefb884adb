"""Typer options derived from pydantic models: add a field to a model and it is a flag.

A command declares its positional arguments by hand and takes every option
from one or more :class:`Group`\\ s, each a pydantic model (or a subset of its
fields).  A field becomes an option by one rule:

* the name: ``seq_len`` -> ``--seq-len``; ``json_schema_extra={"short": "-m"}``
  adds a short flag;
* the type: ``bool`` -> ``--x/--no-x`` (``{"off": "--online"}`` names the
  negative flag), ``Literal[...]`` -> a choice, ``list[...]`` -> a repeatable
  option, ``X | None`` -> X;
* the default and the help: the field's own default and ``description``.

A group with ``given_only`` passes only the options the user gave, as one dict
(so a method's or builder's own default applies to the rest, and a parameter
the chosen method does not take can be refused); the help then shows the
field's default.  Any other group is validated by its model, and a bad value
leaves as one line naming the flag.

Old spellings (:class:`Deprecated`) are hidden options, or a hidden
positional argument, that still work for one release: each prints one
``warning:`` line on stderr and maps to the new option.
"""

from __future__ import annotations

import inspect
import sys
import types
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import typer
from pydantic import BaseModel, ValidationError
from pydantic_core import PydanticUndefined

from calibench.core.errors import CalibenchError

_UNSET: Any = object()


def flag(name: str) -> str:
    """A field name as its CLI flag: ``seq_len`` -> ``--seq-len``."""
    return "--" + name.replace("_", "-")


def base_type(annotation: Any) -> Any:
    """``X | None`` -> X."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return args[0] if len(args) == 1 else str
    return annotation


def field_default(model: type[BaseModel], name: str) -> Any:
    """The default a field declares (a factory's product for list fields); _UNSET when it has none."""
    info = model.model_fields[name]
    if info.default_factory is not None:
        return info.default_factory()  # type: ignore[call-arg]
    return _UNSET if info.default is PydanticUndefined else info.default


@dataclass(frozen=True)
class Group:
    """The options one model gives a command.

    ``fields``: the subset to expose (default: all but ``skip``). ``required``:
    fields the user must give. ``given_only``: pass the given options as one
    dict under ``name`` instead of validated keyword arguments. ``defaults``:
    a command's own default for a field, only where a table says why
    (:data:`calibench.cli.options.COMMAND_DEFAULTS`). ``detail``: a sentence
    added to a field's help for this command. ``types``: another annotation for
    a field in this command (a repeatable ``--model``).
    """

    model: type[BaseModel]
    fields: tuple[str, ...] | None = None
    skip: tuple[str, ...] = ()
    required: tuple[str, ...] = ()
    given_only: bool = False
    name: str | None = None
    defaults: dict[str, Any] = field(default_factory=dict)
    detail: dict[str, str] = field(default_factory=dict)
    types: dict[str, Any] = field(default_factory=dict)
    panel: str | None = None

    def is_required(self, name: str) -> bool:
        return name in self.required or (self.default(name) is _UNSET and not self.given_only)

    def names(self) -> list[str]:
        chosen = list(self.fields) if self.fields is not None else list(self.model.model_fields)
        return [n for n in chosen if n not in self.skip]

    def default(self, name: str) -> Any:
        return self.defaults[name] if name in self.defaults else field_default(self.model, name)

    def help(self, name: str) -> str:
        text = self.model.model_fields[name].description or ""
        extra = self.detail.get(name)
        return f"{text} {extra}".strip() if extra else text


@dataclass(frozen=True)
class Deprecated:
    """An old spelling accepted for one release: ``old`` (a flag, or ``MODEL`` for a positional) -> ``field``.

    ``value``: what a bare old flag sets (``--asym`` -> ``symmetric=False``);
    without it the old option takes a value of the field's type.
    """

    old: str
    field: str
    value: Any = _UNSET

    @property
    def dest(self) -> str:
        return "deprecated_" + self.old.strip("-").replace("-", "_").lower()

    @property
    def positional(self) -> bool:
        return not self.old.startswith("-")


def _decls(name: str, info: Any, base: Any) -> list[str]:
    extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
    decls = [flag(name)]
    if base is bool:
        decls = [f"{flag(name)}/{extra.get('off', '--no-' + name.replace('_', '-'))}"]
    if extra.get("short"):
        decls.append(str(extra["short"]))
    return decls


def _param(group: Group, name: str) -> inspect.Parameter:
    info = group.model.model_fields[name]
    annotation = group.types.get(name, info.annotation)
    base = base_type(annotation)
    default = group.default(name)
    required = name in group.required or (default is _UNSET and not group.given_only)
    show_default: bool | str = True
    if group.given_only:  # not given -> not passed: the model's (or method's) own default applies
        shown = default
        default = None
        show_default = False if shown in (_UNSET, None) else str(shown)
    elif default is _UNSET or default is None:
        default, show_default = None, False
    is_list = typing.get_origin(base) is list
    if is_list and not required and default is None:
        default = []
    option = typer.Option(
        ... if required else default,
        *_decls(name, info, base),
        help=group.help(name),
        show_default=show_default if not is_list else False,
        rich_help_panel=group.panel,
    )
    kind = base if (required or default is not None) and not group.given_only else base | None
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=kind)


def _deprecated_param(dep: Deprecated, target: inspect.Parameter, new: str) -> inspect.Parameter:
    if dep.positional:
        argument = typer.Argument(None, hidden=True, metavar=dep.old, help=f"Deprecated: use {new}.")
        return inspect.Parameter(dep.dest, inspect.Parameter.KEYWORD_ONLY, default=argument, annotation=str | None)
    if dep.value is not _UNSET:
        option = typer.Option(False, dep.old, hidden=True, help=f"Deprecated: use {new}.")
        return inspect.Parameter(dep.dest, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=bool)
    base = base_type(target.annotation)
    option = typer.Option(None, dep.old, hidden=True, help=f"Deprecated: use {new}.")
    return inspect.Parameter(dep.dest, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=base | None)


def warn(message: str) -> None:
    sys.stderr.write(f"warning: {message}\n")


def validation_message(exc: ValidationError) -> str:
    """A model's first validation error as one line naming the flag."""
    error = exc.errors()[0]
    name = str(error["loc"][0]) if error["loc"] else "value"
    ctx = error.get("ctx") or {}
    got = error.get("input")
    if error["type"] == "greater_than_equal":
        return f"{flag(name)} must be at least {ctx['ge']}, got {got}"
    if error["type"] == "less_than_equal":
        return f"{flag(name)} must be at most {ctx['le']}, got {got}"
    if error["type"] == "greater_than":
        return f"{flag(name)} must be more than {ctx['gt']}, got {got}"
    if error["type"] == "less_than":
        return f"{flag(name)} must be less than {ctx['lt']}, got {got}"
    if error["type"] == "finite_number":
        return f"{flag(name)} must be a finite number, got {got}"
    message = str(error["msg"]).removeprefix("Value error, ")
    return f"{flag(name)}: {message[0].lower()}{message[1:]}"


def with_options(
    command: Callable[..., Any], groups: Sequence[Group], deprecated: Sequence[Deprecated] = ()
) -> Callable[..., Any]:
    """``command`` with every group's options (and the deprecated spellings) added to its signature.

    ``command`` takes its own hand-written parameters (positional arguments),
    every field of the non-``given_only`` groups as keyword arguments, and a
    dict per ``given_only`` group under the group's ``name``.
    """
    derived: dict[str, tuple[Group, inspect.Parameter]] = {}
    for group in groups:
        for name in group.names():
            if name in derived:
                raise ValueError(f"option {name} is declared twice for {command.__name__}")
            derived[name] = (group, _param(group, name))
    dict_names = {g.name for g in groups if g.given_only}
    own = [
        p
        for p in inspect.signature(command, eval_str=True).parameters.values()
        if p.name not in derived and p.name not in dict_names
    ]
    old = [_deprecated_param(d, derived[d.field][1], _new_spelling(derived[d.field][1])) for d in deprecated]
    # a positional model that is deprecated makes --model optional for click; the wrapper still requires it
    relaxed = {d.field for d in deprecated if d.positional}
    params = []
    for name, (group, param) in derived.items():
        if name in relaxed:
            param = _param(_without_required(group, name), name)
        params.append(param)

    def wrapper(**kwargs: Any) -> Any:
        for dep in deprecated:
            _apply_deprecated(dep, kwargs, derived[dep.field][1])
        for name in relaxed:
            group = derived[name][0]
            if kwargs.get(name) in (None, []):
                raise CalibenchError(f"Missing option {_new_spelling(derived[name][1])}")
        for group in groups:
            values = {name: kwargs.pop(name) for name in group.names()}
            if group.given_only:
                kwargs[group.name] = {k: v for k, v in values.items() if v is not None}  # type: ignore[index]
                continue
            check = {k: v for k, v in values.items() if k in group.model.model_fields and not isinstance(v, list)}
            try:
                group.model(**{k: v for k, v in check.items() if v is not None or _nullable(group, k)})
            except ValidationError as exc:
                raise CalibenchError(validation_message(exc)) from None
            kwargs.update(values)
        return command(**kwargs)

    signature = own + params + [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in old]
    positional = [p for p in signature if isinstance(p.default, typer.models.ArgumentInfo)]
    options = [p for p in signature if not isinstance(p.default, typer.models.ArgumentInfo)]
    ordered = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in positional + options]
    wrapper.__signature__ = inspect.Signature(ordered)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in ordered}
    wrapper.__doc__ = command.__doc__
    wrapper.__name__ = command.__name__
    wrapper.__wrapped_command__ = command  # type: ignore[attr-defined]
    return wrapper


def _nullable(group: Group, name: str) -> bool:
    info = group.model.model_fields[name]
    return typing.get_origin(info.annotation) in (typing.Union, types.UnionType) and type(None) in typing.get_args(
        info.annotation
    )


def _without_required(group: Group, name: str) -> Group:
    from dataclasses import replace

    return replace(group, required=tuple(r for r in group.required if r != name))


def _new_spelling(param: inspect.Parameter) -> str:
    decls = param.default.param_decls
    return " / ".join(f"'{d}'" for d in decls)


def _apply_deprecated(dep: Deprecated, kwargs: dict[str, Any], target: inspect.Parameter) -> None:
    given = kwargs.pop(dep.dest)
    if given is None or given is False:
        return
    value = dep.value if dep.value is not _UNSET else given
    new = _new_spelling(target)
    if isinstance(value, bool) and "/" in new:  # --asym -> '--no-symmetric'
        on, off = new.strip("'").split("/", 1)
        new = f"'{on if value else off}'"
    current = kwargs.get(dep.field)
    if isinstance(current, list):
        if current and current != [value]:
            raise CalibenchError(f"give the model once, as {new} (a positional {dep.old} is deprecated)")
        kwargs[dep.field] = [value]
    else:
        default = target.default.default
        if current is not None and current != default and current != value:
            what = f"a positional {dep.old}" if dep.positional else dep.old
            raise CalibenchError(f"{what} and {new} both given: give only {new} ({what} is deprecated)")
        kwargs[dep.field] = value
    what = f"{dep.old} as a positional argument" if dep.positional else dep.old
    warn(f"{what} is deprecated and goes in the next release: use {new}")
