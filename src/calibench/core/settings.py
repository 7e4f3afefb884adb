"""The settings every command shares: one name, one type, one default and one description each.

:class:`CommonSettings` is the single declaration of the concepts that many
commands, the Python API and study specs take: the model, the output path, the
dtype and device a model loads in, the forward-pass batch size, the seed,
online or offline task data, how many perplexity windows to score, and a pool
(reference) set.  The CLI derives its shared options from these fields
(:mod:`calibench.cli.options`); study specs take their dtype and device
defaults from here.

Defaults, and why:

* ``dtype="auto"`` and ``device="auto"``: the first CUDA GPU if there is one,
  else the CPU; on the CPU ``auto`` is float32, on a GPU the checkpoint's own
  dtype.  This is what transformers and llm-compressor users expect, what
  ``compress``, ``eval``, ``inspect``, ``recommend`` and study specs always
  did, and on a CPU-only machine it is exactly the float32/CPU that
  ``data build``, ``data generate``, ``data curate``, ``data stats`` and
  ``data card`` used to default to (give ``--device cpu --dtype float32`` for
  that on a GPU machine).
* ``offline=None``: offline when ``HF_HUB_OFFLINE`` is set or the hub is
  unreachable, online otherwise, as ``calibench eval`` always decided;
  ``True`` forces the offline mirrors, ``False`` the hub.
* ``batch_size=8`` and ``seed=0``: what every command but one already used.
* ``force=False``: an existing output is refused, in every command (a study's
  ``--out`` is the exception: it resumes the study there).

The Python API takes the same defaults (``dtype: str = DEFAULTS.dtype``);
where a function needs another one, :data:`API_DEFAULTS` lists it with the
reason, as :data:`calibench.cli.options.COMMAND_DEFAULTS` does for commands
(``tests/core/test_api_defaults.py`` holds the API to this table).
:func:`accepts_settings` lets a function take a command's settings model as
``settings=`` besides its keywords.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

from calibench.core.errors import ParameterError

Dtype = Literal["auto", "float32", "bfloat16", "float16"]
DEVICE_FORM = r"auto|cpu|cuda(:\d+)?"


class CommonSettings(BaseModel):
    """The shared settings; a command takes the subset it needs (see :mod:`calibench.cli.options`)."""

    model_config = ConfigDict(extra="forbid")

    model: str | None = Field(
        None,
        description="Bundled model name (see `calibench assets list`), local model or checkpoint directory, or hub id.",
        json_schema_extra={"short": "-m"},
    )
    out: Path | None = Field(None, description="Where to write the result.", json_schema_extra={"short": "-o"})
    dtype: Dtype = Field(
        "auto",
        description="Model dtype: auto (float32 on CPU, the checkpoint's own on a GPU), float32, bfloat16 or float16.",
    )
    device: str = Field("auto", description="auto (the first CUDA GPU if any, else CPU), cpu, cuda or cuda:N.")
    batch_size: int = Field(8, ge=1, description="Sequences per forward pass.")
    seed: int = Field(0, ge=0, description="Random seed: the same seed gives the same result.")
    offline: bool | None = Field(
        None,
        description="Task data from the offline mirrors (--offline) or the hub (--online); default: offline when "
        "HF_HUB_OFFLINE is set or the hub is unreachable.",
        json_schema_extra={"off": "--online"},
    )
    max_windows: int | None = Field(
        None, ge=1, description="How many perplexity windows to score, at most, per held-out text."
    )
    force: bool = Field(
        False,
        description="Replace an existing output instead of refusing it (the old one goes only once the new one "
        "is complete).",
    )
    pool: Path | None = Field(
        None,
        description="A pool or reference set directory (e.g. OUT/pool of `data curate`): activation coverage and "
        "diversity against it (needs --model).",
    )

    @field_validator("device")
    @classmethod
    def _device_form(cls, value: str) -> str:
        import re

        # availability is checked where a model loads (a Ray cluster may have GPUs this machine lacks)
        if not re.fullmatch(DEVICE_FORM, value.strip().lower()):
            raise ValueError(f"invalid device '{value}': use auto, cpu, cuda or cuda:N")
        return value.strip().lower()


DEFAULTS = CommonSettings()


def regex_problem(pattern: str) -> str | None:
    """Why ``pattern`` is not a usable regular expression (None when it is): a syntax error, or nesting so deep
    that compiling it exhausts the stack (``RecursionError``), said in one line."""
    import re

    try:
        re.compile(pattern)
    except re.error as exc:
        return f"not a valid regular expression: {exc}"
    except (RecursionError, OverflowError, MemoryError):
        return f"too deeply nested or too large to compile ({len(pattern)} characters); give a simpler pattern"
    return None


# "module.function:param" -> (default, why), for the public API functions whose default for a shared concept
# (a CommonSettings field) is not CommonSettings' default. Every other one takes DEFAULTS' value.
API_DEFAULTS: dict[str, tuple[Any, str]] = {
    # inspect: as `calibench inspect activations` (COMMAND_DEFAULTS)
    **{
        f"calibench.inspect.{name}:batch_size": (
            4,
            "the capture holds every site's activations of a batch at once; 4 windows kept its memory bounded",
        )
        for name in (
            "run.inspect_model",
            "collect.activation_stats",
            "quant_error.activation_quant_error",
            "stream.stream_activations",
        )
    },
    # self-generation: the batch is part of the sampling
    **{
        f"calibench.selfcal.{name}:batch_size": (
            16,
            "samples generated together: it changes the tokens drawn (so it is recorded), and another default "
            "would change every generated set",
        )
        for name in ("sampler.sample_streams", "sampler.sample_turns", "prompted.sample_prompted_streams")
    },
    # the curation proxy: a quick check needs a cap (None would score every window of the held-out text)
    **{
        f"calibench.curate.proxy.{name}:max_windows": (
            16,
            "the proxy evaluation is a quick check; 16 windows per capability is what the API always used "
            "(`data curate` uses 8, see COMMAND_DEFAULTS)",
        )
        for name in ("proxy_evaluate", "reference_perplexity")
    },
}

F = TypeVar("F", bound=Callable[..., Any])


def accepts_settings(model: type[BaseModel], renames: Mapping[str, str] | None = None) -> Callable[[F], F]:
    """Let the decorated function take its options as one ``settings: model | None = None`` as well.

    The function declares the keyword-only parameter ``settings`` and one
    parameter per field of ``model`` (same name, or the one ``renames`` maps
    the field to, e.g. ``ppl_seq_len`` to ``seq_len``).  A field fills its
    parameter unless that argument is given by keyword or position: keywords
    override the settings.  Without ``settings`` the function runs exactly as
    before.  A keyword the function does not take is refused with
    :class:`ParameterError` naming it (a function with ``**kwargs`` checks
    those itself).
    """
    renames = dict(renames or {})

    def decorate(fn: F) -> F:
        signature = inspect.signature(fn)
        params = signature.parameters
        to_param = {field: renames.get(field, field) for field in model.model_fields}
        missing = [p for p in [*to_param.values(), "settings"] if p not in params]
        if missing:
            raise TypeError(f"{fn.__qualname__} lacks parameters for {model.__name__}: {missing}")
        allowed = sorted(params)
        open_ended = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())  # checks its own

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            unknown = [] if open_ended else sorted(k for k in kwargs if k not in params)
            if unknown:
                raise ParameterError(
                    unknown[0],
                    f"is not a parameter of {fn.__name__}() (unknown: {', '.join(unknown)})",
                    allowed=allowed,
                )
            settings = kwargs.get("settings")
            if settings is None:
                return fn(*args, **kwargs)
            if not isinstance(settings, model):
                raise ParameterError("settings", f"must be a {model.__name__}, got {type(settings).__name__}")
            bound = signature.bind_partial(*args, **kwargs)
            del bound.arguments["settings"]
            for field, param in to_param.items():
                if param not in bound.arguments:
                    bound.arguments[param] = getattr(settings, field)
            return fn(*bound.args, **bound.kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate
