"""Any llm-compressor recipe file, run with a calibench calibration set.

The built-in methods cover what the papers compare; a practitioner who
deploys with a recipe of their own (llm-compressor's YAML format,
``NAME_stage: NAME_modifiers: ModifierType: {...}``) should be able to measure
that recipe against calibration sets without translating it.  The file is
read and parsed into llm-compressor modifiers up front, so that a missing
file, broken YAML or a modifier llm-compressor rejects ends in one line
naming the file, before any model is loaded.  The run itself goes through
the same oneshot stage as the built-in methods (seeded, no shuffling,
padding stripped), and the record keeps the recipe's full text and sha256:
a recipe file can change after the run, the record cannot.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from calibench.compress.presets import PRESETS
from calibench.core.errors import CalibenchError
from calibench.core.fsutil import read_text
from calibench.core.text import one_line

#: what the top level of a recipe file looks like, for error messages
SHAPE = "NAME_stage: NAME_modifiers: ModifierType: {arguments}"


@dataclass(frozen=True)
class RecipeFile:
    """A validated recipe: where it came from, its exact text, and the modifiers it names."""

    path: Path
    text: str
    sha256: str
    modifier_names: tuple[str, ...]
    schemes: tuple[str, ...]  # preset scheme names its modifiers use ("W4A16"), for the dtype/device check

    def modifiers(self) -> list[Any]:
        """Fresh llm-compressor modifiers (they keep state, so each run parses its own)."""
        return _parse_modifiers(self.path, _load_yaml(self.path, self.text))

    def record(self) -> dict[str, Any]:
        return {"path": str(self.path), "sha256": self.sha256, "text": self.text}


def _problem(path: Path, message: str) -> CalibenchError:
    return CalibenchError(f"recipe {path}: {message}")


def _load_yaml(path: Path, text: str) -> dict[str, Any]:
    import yaml

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or one_line(str(exc))
        raise _problem(path, f"not valid YAML{where}: {problem}") from None
    if data is None:
        raise _problem(path, f"the file is empty: expected {SHAPE}")
    if not isinstance(data, dict):
        raise _problem(path, f"expected a mapping like {SHAPE}, got {type(data).__name__}")
    return data


def _check_shape(path: Path, data: dict[str, Any]) -> None:
    """The structure llm-compressor reads; it silently skips anything else, so say so here."""
    found = 0
    for stage, groups in data.items():
        if not str(stage).endswith("_stage") or not isinstance(groups, dict):
            continue
        for group, modifiers in groups.items():
            if not str(group).endswith("_modifiers"):
                continue
            if not isinstance(modifiers, dict):
                raise _problem(path, f"{stage}.{group} must map modifier types to their arguments ({SHAPE})")
            for name, args in modifiers.items():
                if args is not None and not isinstance(args, dict):
                    raise _problem(
                        path, f"{stage}.{group}.{name} must be a mapping of arguments, got {type(args).__name__}"
                    )
                found += 1
    if not found:
        raise _problem(
            path, f"no modifiers found: expected {SHAPE}, e.g. quant_stage: quant_modifiers: GPTQModifier: ..."
        )


def _with_empty_args(data: dict[str, Any]) -> dict[str, Any]:
    """``GPTQModifier:`` with nothing after it means no arguments; llm-compressor needs a mapping there."""
    out: dict[str, Any] = {}
    for stage, groups in data.items():
        if str(stage).endswith("_stage") and isinstance(groups, dict):
            groups = {
                group: {name: args or {} for name, args in mods.items()}
                if str(group).endswith("_modifiers") and isinstance(mods, dict)
                else mods
                for group, mods in groups.items()
            }
        out[stage] = groups
    return out


def _validation_line(exc: Any) -> str:
    """First pydantic error as 'Model: field: message'."""
    error = exc.errors()[0]
    field = ".".join(str(x) for x in error.get("loc", ()))
    message = str(error.get("msg", "")).removeprefix("Value error, ")
    return one_line(f"{exc.title}: {field + ': ' if field else ''}{message}")


def _parse_modifiers(path: Path, data: dict[str, Any]) -> list[Any]:
    """The recipe's modifiers, instantiated (so llm-compressor's pydantic validation runs now, before any load).

    llm-compressor logs while it builds them (a warning per modifier that there is no accelerator): silenced
    here, so a refused recipe prints its one error line and nothing before it.
    """
    import llmcompressor  # noqa: F401  (its import configures, and enables, its logger: first, then silence it)
    from loguru import logger

    logger.disable("llmcompressor")
    try:
        return _instantiate(path, data)
    finally:
        logger.enable("llmcompressor")


def _instantiate(path: Path, data: dict[str, Any]) -> list[Any]:
    from llmcompressor.recipe import Recipe
    from pydantic import ValidationError

    try:
        modifiers = list(Recipe.from_dict(_with_empty_args(data)).modifiers)
        for modifier in modifiers:  # schemes and config groups are resolved lazily: resolve them now
            resolve = getattr(modifier, "resolve_quantization_config", None)
            if callable(resolve):
                resolve()
    except ValidationError as exc:
        raise _problem(path, f"llm-compressor rejects it: {_validation_line(exc)}") from None
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise _problem(path, f"llm-compressor rejects it: {one_line(exc)}") from None
    for modifier in modifiers:
        _check_sparsity(path, modifier)
    return modifiers


def _sparsities(value: Any) -> list[Any]:
    """The sparsity values a modifier's ``sparsity`` holds: a number, a list of them, or a dict of them."""
    if value is None:
        return []
    if isinstance(value, dict):
        return list(value.values())
    if isinstance(value, (list, tuple)):
        return list(value)
    return [value]


def _check_sparsity(path: Path, modifier: Any) -> None:
    """A sparsity is a share of weights pruned: in [0, 1). llm-compressor accepts 2.0 and zeroes every weight."""
    for value in _sparsities(getattr(modifier, "sparsity", None)):
        number = float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
        if number is None or not 0 <= number < 1:
            raise _problem(
                path,
                f"{type(modifier).__name__}: sparsity must be a number in [0, 1) (a share of weights), got {value}",
            )


def _schemes(modifiers: list[Any]) -> tuple[str, ...]:
    """Preset scheme names the modifiers ask for by name (``scheme: NVFP4`` or ``{NVFP4: [Linear]}``)."""
    names: list[str] = []
    for modifier in modifiers:
        scheme = getattr(modifier, "scheme", None)
        keys = [scheme] if isinstance(scheme, str) else list(scheme) if isinstance(scheme, dict) else []
        names.extend(str(key).upper() for key in keys)
    return tuple(dict.fromkeys(names))


def load_recipe(path: str | Path) -> RecipeFile:
    """Read and validate an llm-compressor recipe file; one-line :class:`CalibenchError` on any problem."""
    path = Path(path).expanduser()
    if not path.exists():
        raise CalibenchError(f"no such recipe file: {path}")
    if not path.is_file():
        raise CalibenchError(f"recipe {path} is not a file")
    text = read_text(path, "recipe")
    data = _load_yaml(path, text)
    _check_shape(path, data)
    modifiers = _parse_modifiers(path, data)
    return RecipeFile(
        path=path.resolve(),
        text=text,
        sha256=hashlib.sha256(text.encode("utf-8")).hexdigest(),
        modifier_names=tuple(type(m).__name__ for m in modifiers),
        schemes=_schemes(modifiers),
    )


def recipe_presets(recipe: RecipeFile) -> list[Any]:
    """The calibench presets whose schemes the recipe names, so the same dtype and device checks apply."""
    return [preset for _, preset in PRESETS.items() if preset.scheme in recipe.schemes]
