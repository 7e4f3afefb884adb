"""``calibench study``: run a grid of compress-and-evaluate cells, then report it like the papers."""

from __future__ import annotations

from pathlib import Path

import typer

study_app = typer.Typer(help="Run calibration-data studies and report them.", no_args_is_help=True)


@study_app.command("run")
def run(
    spec: Path = typer.Argument(..., help="Study spec (YAML): models, methods, sources, n, seq_len, eval."),
    out: Path = typer.Option(..., "--out", "-o", help="Study directory (SQLite store, sets, report). Rerun to resume."),
    executor: str = typer.Option("local", "--executor", help="local (this process) or ray."),
    address: str = typer.Option(None, "--address", help="Ray cluster address (default: a local Ray runtime)."),
    jobs: int = typer.Option(1, "--jobs", "-j", help="Local worker processes, cores shared between them (CPU studies: one per core is fastest)."),
    report: bool = typer.Option(True, "--report/--no-report", help="Write the report when the run ends."),
    reproducible: bool = typer.Option(False, "--reproducible", help="Pin CPU float kernels (MKL_CBWR=COMPATIBLE, ATen AVX2, one thread per process) so results match across machines; about 4-5x slower forward passes."),
) -> None:
    """Run (or resume) every cell of SPEC; finished cells are skipped, failures recorded."""
    if reproducible:  # before anything below imports torch
        from calibench import numerics

        numerics.pin()
    from calibench.cli.console import console
    from calibench.study import run_study
    from calibench.study.report import write_report

    summary = run_study(spec, out, executor=executor, address=address, jobs=jobs)
    con = console()
    con.print(
        f"{summary.done} cells run, {summary.skipped} already done, {summary.failed} failed "
        f"(of {summary.total}) in {summary.seconds:.0f}s",
        highlight=False,
    )
    if report and summary.done + summary.skipped > 0:
        written = write_report(out)
        con.print(f"report: {written.markdown} (HTML: {written.html})", highlight=False)


@study_app.command("report")
def report_command(
    directory: Path = typer.Argument(..., help="A study directory from `calibench study run`."),
) -> None:
    """Write tables (Markdown, HTML, CSV, parquet) and plots (PNG) for a study."""
    from calibench.cli.console import console
    from calibench.study.report import write_report

    written = write_report(directory)
    con = console()
    con.print(written.markdown.read_text(), markup=False, highlight=False)
    con.print(f"report: {written.markdown} (HTML: {written.html}; plots: {', '.join(p.name for p in written.plots)})", highlight=False)
