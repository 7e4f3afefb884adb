"""The options every command shares, each declared once: one name, one type, one default, one help text.

They are the fields of :class:`calibench.core.settings.CommonSettings` (read its
docstring for why ``--dtype`` and ``--device`` default to ``auto`` and
``--offline/--online`` to deciding by itself), turned into typer options by
:mod:`calibench.cli.derive`:

==================  ==========================================================
``--model/-m``      the model (a positional MODEL is deprecated where it was one)
``--out/-o``        where the command writes
``--dtype``         auto, float32, bfloat16, float16
``--device``        auto, cpu, cuda, cuda:N
``--batch-size``    sequences per forward pass
``--seed``          random seed
``--offline``       ``--offline/--online`` task data
``--max-windows``   perplexity windows per held-out text (was ``--ppl-max-windows``,
                    ``--heldout-windows``, ``--heldout-n``, ``--proxy-windows``)
``--force``         replace an existing output instead of refusing it
``--pool``          a pool or reference set (was ``--reference`` in ``data card``)
==================  ==========================================================

A command takes a subset with :func:`common`.  Where a command needs another
default than the shared one, it is listed in :data:`COMMAND_DEFAULTS` with the
reason, and nowhere else (``tests/cli/test_cli_options.py`` holds every command to
this table).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from calibench.cli.derive import Deprecated, Group
from calibench.core.settings import API_DEFAULTS, CommonSettings

SHARED = tuple(CommonSettings.model_fields)

# (command path, field) -> (default, why). Every other command uses CommonSettings' default.
COMMAND_DEFAULTS: dict[tuple[str, str], tuple[Any, str]] = {
    # the command runs inspect_model: its API default and reason
    ("inspect activations", "batch_size"): API_DEFAULTS["calibench.inspect.run.inspect_model:batch_size"],
    ("study signals", "max_windows"): (
        32,
        "stored signal values are keyed by their settings: another default would recompute every study's signals",
    ),
    ("data curate", "max_windows"): (8, "the proxy evaluation is a quick check, 8 windows per capability"),
    ("demo", "out"): (Path("demo-study"), "the demo runs with no arguments at all, into ./demo-study"),
}

# Old spellings that still work for one release, with a warning (see derive.Deprecated).
MODEL_POSITIONAL = Deprecated("MODEL", "model")


def common(
    *fields: str,
    command: str,
    required: tuple[str, ...] = (),
    detail: dict[str, str] | None = None,
    types: dict[str, Any] | None = None,
) -> Group:
    """The shared options ``fields`` for ``command`` (its path, e.g. ``"data card"``)."""
    unknown = [f for f in fields if f not in SHARED]
    if unknown:
        raise ValueError(f"not a shared option: {unknown}")
    defaults = {f: COMMAND_DEFAULTS[(command, f)][0] for f in fields if (command, f) in COMMAND_DEFAULTS}
    return Group(
        CommonSettings,
        fields=fields,
        required=required,
        defaults=defaults,
        detail=detail or {},
        types=types or {},
    )
