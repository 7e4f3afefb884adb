"""``calibench study``: run a grid of compress-and-evaluate cells, then report it like the papers."""

from __future__ import annotations

from pathlib import Path

import typer

from calibench.cli import options
from calibench.cli.derive import Deprecated, Group, with_options
from calibench.cli.settings import StudyRunSettings
from calibench.core.console import console
from calibench.core.errors import CalibenchError
from calibench.predict.settings import StudySignalsSettings
from calibench.predict.study_signals import compute_study_signals
from calibench.report.study import write_report
from calibench.study import run_study

study_app = typer.Typer(help="Run calibration-data studies and report them.", no_args_is_help=True)


def run(
    spec: Path = typer.Argument(..., help="Study spec (YAML): models, methods, sources, n, seq_len, eval."),
    *,
    out: Path,
    executor: str,
    address: str | None,
    jobs: int,
    report: bool,
    reproducible: bool,
) -> None:
    """Run (or resume) every cell of SPEC; finished cells are skipped, failures recorded.

    With eval.adaptive in the spec, cells score items in blocks until each source comparison is decided.
    Every cell is checked first (as compress, eval and the set builders would): a spec with a cell they would
    refuse is refused in one line, before anything runs or is written. Exit status: 0 when the study has
    results (failed cells are counted in a warning and retried by a rerun), 2 when every cell failed because
    of the input, 1 when every cell failed otherwise.
    """
    if reproducible:  # before anything below imports torch
        from calibench.core import numerics

        numerics.pin()

    summary = run_study(spec, out, executor=executor, address=address, jobs=jobs)
    con = console()
    con.print(
        f"{summary.done} cells run, {summary.skipped} already done, {summary.failed} failed "
        f"(of {summary.total}) in {summary.seconds:.0f}s",
        highlight=False,
    )
    if summary.all_failed:  # nothing to report: say why in one line; exit 2 when the input caused every failure
        message = (
            f"all {summary.failed} cells of the study failed (the 'failed' lines above say why; "
            f"`calibench study report {out}` lists them): fix the cause and rerun to retry them"
        )
        if summary.input_failures == summary.failed:
            raise CalibenchError(message)
        import sys

        sys.stderr.write(f"error: {message}\n")
        raise typer.Exit(1)
    if summary.failed:  # some failed: the study still stands (exit 0), and says so on stderr
        console(stderr=True).print(
            f"warning: {summary.failed} of {summary.total} cells failed; the report leaves them out and lists them. "
            f"Rerun `calibench study run` on {out} to retry only those",
            highlight=False,
            markup=False,
        )
    if report and summary.done + summary.skipped > 0:
        written = write_report(out)
        for line in written.resolved:
            con.print(f"resolved: {line}" if "better than" in line else line, highlight=False)
        con.print(f"report: {written.markdown} (HTML: {written.html})", highlight=False)


study_app.command("run")(
    with_options(
        run,
        [
            options.common(
                "out",
                command="study run",
                required=("out",),
                detail={"out": "A study directory (SQLite store, sets, report). Rerun to resume."},
            ),  # fmt: skip
            Group(StudyRunSettings),
        ],
    )
)


@study_app.command("report")
def report_command(
    directory: Path = typer.Argument(..., help="A study directory from `calibench study run`."),
) -> None:
    """Write tables (Markdown, HTML, CSV, parquet) and plots (PNG) for a study."""

    written = write_report(directory)
    con = console()
    con.print(written.markdown.read_text(), markup=False, highlight=False)
    con.print(
        f"report: {written.markdown} (HTML: {written.html}; plots: {', '.join(p.name for p in written.plots)})",
        highlight=False,
    )


def signals_command(
    directory: Path = typer.Argument(..., help="A finished study directory from `calibench study run`."),
    *,
    signals: str | None,
    k_layers: int,
    max_windows: int,
    batch_size: int,
    recompute: bool,
) -> None:
    """Compute cheap predictors (signals) for every (model, method, set) of a finished study; the report "
    "then shows which predict."""
    import os

    os.environ.setdefault("LLM_COMPRESSOR_LOG_LEVEL", "WARNING")
    check_signals_request(directory, signals, k_layers=k_layers, batch_size=batch_size)

    summary = compute_study_signals(
        directory,
        signals,
        k_layers=k_layers,
        heldout_windows=max_windows,
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


def check_signals_request(directory: Path, signals: str | None, *, k_layers: int, batch_size: int) -> None:
    """What `study signals` would refuse only after writing to the store or loading a model, refused first."""
    from calibench.models import load_config
    from calibench.predict.study_signals import study_cells
    from calibench.study.store import Store

    if signals is not None and not [name for name in signals.split(",") if name.strip()]:
        raise CalibenchError("--signals names no signal: give names or groups (e.g. outliers), or leave it out for all")
    if batch_size < 1:
        raise CalibenchError(f"--batch-size must be at least 1, got {batch_size}")
    store = Store(directory, read_only=True)  # a missing, empty or foreign store: one line, the file untouched
    try:
        store.validate()
    finally:
        store.close()
    for model in sorted({cell.model for cell in study_cells(directory)}):
        config = load_config(model)
        text = config.get_text_config() if callable(getattr(config, "get_text_config", None)) else config
        layers = getattr(text, "num_hidden_layers", None)
        if isinstance(layers, int) and k_layers > layers:
            raise CalibenchError(f"--k-layers {k_layers} is more than the {layers} decoder layers of {model}")


study_app.command("signals")(
    with_options(
        signals_command,
        [
            options.common(
                "max_windows",
                "batch_size",
                command="study signals",
                detail={"max_windows": "Of the evaluation text the signals are measured on."},
            ),  # fmt: skip
            Group(StudySignalsSettings),
        ],
        deprecated=[Deprecated("--heldout-windows", "max_windows")],
    )
)
