"""``calibench compare``: pair evaluation runs per item against the first (the dense model).

Today it pairs summarization runs (``summ:`` tasks evaluated with
``--log-samples``) per document: every metric's mean in each run and the
difference to the base with its paired bootstrap 95% CI.  Pairing matters:
the same documents are summarized by every model, so document difficulty
cancels and the CI is the one of the difference, not of two separate means.
Consistency metrics show their judge's validated AUC; a judge not validated
on this machine is refused unless ``--allow-unvalidated``
(:func:`calibench.summarize.compare.check_judges`).
"""

from __future__ import annotations

from pathlib import Path

import typer

from calibench.cli import options
from calibench.cli.derive import with_options
from calibench.core.errors import CalibenchError
from calibench.core.fsutil import atomic_write_bytes, check_output_file, read_text
from calibench.report.summarization_plots import overlap_consistency_plot
from calibench.summarize.compare import check_judges, compare_table, load_run


def _compare(
    runs: list[Path] = typer.Argument(
        ..., help="EvalResult JSON files (`calibench eval ... --log-samples -o X.json`); the first is the base."
    ),
    task: str = typer.Option(None, "--task", help="The summ: task, when a file holds several."),
    labels: str = typer.Option(None, "--labels", help="Comma-separated labels, one per file (default: file names)."),
    plot: Path = typer.Option(
        None, "--plot", help="Also write the source-overlap vs consistency scatter plot (PNG), one colour per run."
    ),
    allow_unvalidated: bool = typer.Option(
        False,
        "--allow-unvalidated",
        help="Show consistency metrics whose judge is not validated on this machine (marked so) instead of refusing.",
    ),
    *,
    out: Path | None,
    force: bool,
) -> None:
    """Pair summarization runs per document against the first and print every metric's difference with its paired CI."""

    names: list[str | None] = [n.strip() for n in labels.split(",")] if labels else [None] * len(runs)
    if len(runs) < 2:
        raise CalibenchError("compare needs at least two result files: the base (dense) run first, then the others")
    if len(names) != len(runs):
        raise CalibenchError(f"--labels gives {len(names)} labels for {len(runs)} files: give one label per file")
    given = [n for n in names if n is not None]
    if any(not n for n in given):
        raise CalibenchError("--labels has an empty label: give one non-empty label per file")
    repeated = sorted({n for n in given if given.count(n) > 1})
    if repeated:
        raise CalibenchError(f"--labels repeats {', '.join(repeated)}: give each file its own label")
    for dest, example, option in ((out, "table.md", "--out"), (plot, "overlap.png", "--plot")):
        if dest is not None:
            check_output_file(dest, example, force=force, option=option)
    if out is not None and plot is not None and out.absolute() == plot.absolute():
        raise CalibenchError(f"--out and --plot are the same file {out}: give two files")
    for path in runs:
        read_text(path, "result file")  # missing, a directory or not UTF-8: one line, not a traceback
    loaded = [load_run(p, task, n) for p, n in zip(runs, names)]
    table = compare_table(loaded, allow_unvalidated=allow_unvalidated)  # refuses before anything is printed
    typer.echo(table)
    if out is not None:
        atomic_write_bytes(out, table.encode("utf-8"))
    if plot is not None:
        judges = check_judges(loaded, allow_unvalidated)
        written = overlap_consistency_plot(
            [(r.label, list(r.items.values())) for r in loaded], plot, validity={m: j.text() for m, j in judges.items()}
        )
        typer.echo(f"wrote {written}" if written else "no metrics to plot")


compare_command = with_options(
    _compare, [options.common("out", "force", command="compare", detail={"out": "Also the table, as Markdown."})]
)
