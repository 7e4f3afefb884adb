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
    jobs: int = typer.Option(
        1,
        "--jobs",
        "-j",
        help="Local worker processes, cores shared between them (CPU studies: one per core is fastest).",
    ),
    report: bool = typer.Option(True, "--report/--no-report", help="Write the report when the run ends."),
    reproducible: bool = typer.Option(
        False,
        "--reproducible",
        help="Pin CPU float kernels (MKL_CBWR=COMPATIBLE, ATen AVX2, one thread per process) so results match across machines; about 4-5x slower forward passes.",
    ),
) -> None:
    """Run (or resume) every cell of SPEC; finished cells are skipped, failures recorded."""
    if reproducible:  # before anything below imports torch
        from calibench.core import numerics

        numerics.pin()
    from calibench.core.console import console
    from calibench.report.study import write_report
    from calibench.study import run_study

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
    from calibench.core.console import console
    from calibench.report.study import write_report

    written = write_report(directory)
    con = console()
    con.print(written.markdown.read_text(), markup=False, highlight=False)
    con.print(
        f"report: {written.markdown} (HTML: {written.html}; plots: {', '.join(p.name for p in written.plots)})",
        highlight=False,
    )


@study_app.command("signals")
def signals_command(
    directory: Path = typer.Argument(..., help="A finished study directory from `calibench study run`."),
    signals: str = typer.Option(
        None,
        "--signals",
        help="Signals or groups to compute, comma-separated (default: all): reconstruction, coverage, outliers, stats, or names such as outliers.kurtosis.",
    ),
    k_layers: int = typer.Option(2, "--k-layers", help="Decoder layers the reconstruction signal compresses."),
    heldout_windows: int = typer.Option(
        32, "--heldout-windows", help="Windows of the evaluation text the signals are measured on."
    ),
    batch_size: int = typer.Option(8, "--batch-size", help="Forward-pass batch size."),
    recompute: bool = typer.Option(
        False, "--recompute", help="Compute every value again (default: only missing ones or ones with other settings)."
    ),
) -> None:
    """Compute cheap predictors (signals) for every (model, method, set) of a finished study; the report then shows which predict."""
    import os

    os.environ.setdefault("LLM_COMPRESSOR_LOG_LEVEL", "WARNING")
    from calibench.core.console import console
    from calibench.predict.study_signals import compute_study_signals

    summary = compute_study_signals(
        directory,
        signals,
        k_layers=k_layers,
        heldout_windows=heldout_windows,
        batch_size=batch_size,
        recompute=recompute,
    )
    console().print(
        f"{summary.computed} signal values computed, {summary.skipped} already stored, in "
        f"{summary.seconds:.0f}s (table `signals` of {directory / 'study.sqlite'}); "
        "`calibench study report` shows which predict",
        highlight=False,
        markup=False,
    )
