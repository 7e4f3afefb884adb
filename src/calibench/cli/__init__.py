"""The ``calibench`` command: a thin layer over the Python API.

Errors the user can cause arrive as :class:`CalibenchError` and leave as one
line on stderr with exit code 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import errno
import sys

import typer

from calibench import __version__
from calibench.cli import usage
from calibench.cli.assets_cmd import assets_app
from calibench.cli.clean_cmd import clean_command
from calibench.cli.compare_cmd import compare_command
from calibench.cli.compress_cmd import compress_command
from calibench.cli.data_cmd import data_app
from calibench.cli.demo_cmd import demo
from calibench.cli.eval_cmd import eval_command
from calibench.cli.inspect_cmd import inspect_app
from calibench.cli.recommend_cmd import recommend_command
from calibench.cli.study_cmd import study_app
from calibench.cli.summ_cmd import summ_app
from calibench.cli.vocab_cmd import vocab_app
from calibench.core import progress
from calibench.core.errors import CalibenchError, ParameterError

app = typer.Typer(
    name="calibench",
    help="Build, inspect and compare calibration data for post-training LLM compression.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(assets_app, name="assets")
app.add_typer(data_app, name="data")
app.add_typer(study_app, name="study")
app.add_typer(vocab_app, name="vocab")
app.add_typer(inspect_app, name="inspect")
app.add_typer(summ_app, name="summ")
app.command("demo")(demo)
app.command("eval")(eval_command)
app.command("compress")(compress_command)
app.command("clean")(clean_command)
app.command("recommend")(recommend_command)
app.command("compare")(compare_command)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"calibench {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """calibench: which calibration data, and what does it do to my model?"""

    progress.set_enabled(True)


def fail(message: str, code: int = 2) -> None:
    """Print one error line and exit: the contract for every user error."""

    progress.discard_deferred()
    first = " ".join(str(message).split("\n")).strip()
    sys.stderr.write(f"error: {first}\n")
    sys.exit(code)


def main(argv: list[str] | None = None) -> None:

    try:
        app(args=argv, standalone_mode=False)
        progress.flush_deferred()
    except ParameterError as exc:  # the API names parameters; the CLI shows its flags
        from calibench.cli.builder_options import cli_message

        fail(cli_message(exc))
    except CalibenchError as exc:
        fail(str(exc))
    except usage.NO_ARGS_IS_HELP as exc:
        # typer's vendored click has printed the help already; the separate click prints it in show()
        if not str(type(exc).__module__).startswith("typer."):
            getattr(exc, "show", lambda: None)()
        sys.exit(0)
    except usage.USAGE_ERRORS as exc:
        fail(usage.usage_line(exc))
    except usage.EXIT as exc:
        sys.exit(getattr(exc, "exit_code", 0))
    except usage.ABORT + (KeyboardInterrupt,):
        fail("interrupted", code=130)
    except OSError as exc:
        if exc.errno != errno.ENAMETOOLONG:
            raise
        fail(name_too_long(exc))


def name_too_long(exc: OSError) -> str:
    """A path (a model, a source, an output) longer than the file system allows, as one line."""
    name = str(exc.filename or "")
    shown = name if len(name) <= 80 else f"{name[:40]}...{name[-30:]}"
    return f"name too long for the file system ({len(name)} characters): {shown}; give a shorter name or path"


# the data subcommands that import `app` from here register themselves on import
from calibench.cli import curate_cmd, selfcal_cmd  # noqa: E402, F401
