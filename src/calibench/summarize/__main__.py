"""``python -m calibench.summarize compare BASE.json OTHER.json ... [--task T] [--plot FILE.png] [--out FILE.md]``.

Pairs summarization runs per document against the first (the dense model)
and prints every metric's difference with its paired bootstrap CI.
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True)


@app.callback()
def _root() -> None:
    """Summarization runs: paired comparisons."""


@app.command()
def compare(
    runs: list[Path] = typer.Argument(..., help="EvalResult JSON files (--log-samples); the first is the base."),
    task: str = typer.Option(None, "--task", help="The summ: task, when a file holds several."),
    labels: str = typer.Option(None, "--labels", help="Comma-separated labels, one per file (default: file names)."),
    plot: Path = typer.Option(None, "--plot", help="Also write the overlap-vs-consistency scatter plot (PNG)."),
    out: Path = typer.Option(None, "--out", help="Also write the table (Markdown) to this file."),
) -> None:
    from calibench.errors import CalibenchError
    from calibench.fsutil import atomic_write_bytes
    from calibench.summarize.compare import compare_table, load_run
    from calibench.summarize.plot import overlap_consistency_plot

    names = labels.split(",") if labels else [None] * len(runs)
    if len(runs) < 2 or len(names) != len(runs):
        raise CalibenchError("compare needs at least two result files (and one label per file with --labels)")
    loaded = [load_run(p, task, n) for p, n in zip(runs, names)]
    table = compare_table(loaded)
    typer.echo(table)
    if out is not None:
        atomic_write_bytes(out, table.encode("utf-8"))
    if plot is not None:
        written = overlap_consistency_plot([(r.label, list(r.items.values())) for r in loaded], plot)
        typer.echo(f"wrote {written}" if written else "no metrics to plot")


def main() -> None:
    from calibench.errors import CalibenchError

    try:
        app(standalone_mode=False)
    except CalibenchError as exc:
        sys.stderr.write(f"error: {exc}\n")
        raise SystemExit(2) from None
    except Exception as exc:  # click usage errors
        import click

        if isinstance(exc, click.ClickException):
            sys.stderr.write(f"error: {exc.format_message()}\n")
            raise SystemExit(2) from None
        raise


if __name__ == "__main__":
    main()
