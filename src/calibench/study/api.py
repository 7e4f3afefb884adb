"""run_study: expand the spec, skip finished cells, run the rest, store each as it finishes."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from calibench.core import progress as inner_progress
from calibench.core.errors import CalibenchError
from calibench.core.fsutil import check_writable_location
from calibench.data.calibset import CalibrationSet
from calibench.study.cells import Cell, expand
from calibench.study.executors import EXECUTORS, Outcome
from calibench.study.runner import base_model, quiet_libraries, tokenizer_for
from calibench.study.sets import sets_for, verify_cached_sets
from calibench.study.spec import StudySpec, load_spec
from calibench.study.store import DB_NAME, Store
from calibench.tracking.base import open_tracking

SPEC_COPY = "spec.yaml"


@dataclass
class StudyRun:
    directory: Path
    total: int
    skipped: int
    done: int
    failed: int
    seconds: float


def _progress(total: int, completed: int, enabled: bool) -> Any:
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        SpinnerColumn(),
        TextColumn("cells"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        TextColumn("{task.description}"),
        console=Console(stderr=True),
        disable=not enabled,
        transient=False,
    )


def check_study_output(out: str | Path) -> None:
    """A study directory is new, empty, or an earlier run of a study (to resume); nothing else."""

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise CalibenchError(f"{out} is a file: give a directory for the study (new, or an earlier study to resume)")
    if out.is_dir() and any(out.iterdir()) and not (out / DB_NAME).is_file():
        raise CalibenchError(f"{out} holds files but no {DB_NAME}: it is not a study to resume; choose another --out")
    check_writable_location(out / DB_NAME)


def run_study(
    spec: str | Path | StudySpec,
    out: str | Path,
    executor: str = "local",
    address: str | None = None,
    progress: bool = True,
    jobs: int = 1,
) -> StudyRun:
    """Run (or resume) a study into ``out``; safe to kill and rerun at any moment.

    ``jobs`` > 1 runs local cells in that many worker processes (cores shared
    equally between them); results can differ from ``jobs=1`` in the last
    float bits, since thread counts change reduction orders.
    """
    import time

    runner = EXECUTORS.get(executor)
    if jobs < 1:
        raise CalibenchError(f"--jobs must be at least 1, got {jobs}")
    if jobs > 1 and executor != "local":
        raise CalibenchError("--jobs applies to the local executor; Ray schedules its own workers")
    spec_path = None if isinstance(spec, StudySpec) else Path(spec)
    spec = spec if isinstance(spec, StudySpec) else load_spec(spec)
    if executor == "local":  # a CUDA device on a machine without one fails here, before any work
        from calibench.models import resolve_device

        resolve_device(spec.device)
    check_study_output(out)
    tracking = open_tracking(spec.tracking, out, spec.name)  # a tracker that cannot start fails before any write
    store = Store(out)
    verify_cached_sets(store)
    if spec_path is not None and not (store.directory / SPEC_COPY).exists():
        shutil.copyfile(spec_path, store.directory / SPEC_COPY)
    store.set_meta("spec", spec.model_dump(mode="json"))
    tracking.start(store)  # cells finished before tracking was on (or before a kill) are logged first

    cells = expand(spec)
    finished = store.done_keys()
    pending = [c for c in cells if c.key not in finished]
    counts = {"done": 0, "failed": 0}
    started = time.perf_counter()
    previous_inner = inner_progress.enabled()
    inner_progress.set_enabled(False)  # one live display: the study's

    def calib_for(cell: Cell) -> CalibrationSet | None:
        if cell.is_dense:
            return None
        with quiet_libraries():
            return sets_for(cell, store, tokenizer_for(cell.model), base_model)[cell.set_index]

    with _progress(len(cells), len(cells) - len(pending), progress) as bar:
        task = bar.add_task("", total=len(cells), completed=len(cells) - len(pending))

        def step(text: str) -> None:
            bar.update(task, description=text)

        def on_done(cell: Cell, calib: CalibrationSet | None, outcome: Outcome) -> None:
            if "error" in outcome:
                store.record_failure(cell, outcome["error"], outcome.get("seconds", 0.0))
                counts["failed"] += 1
                bar.console.print(f"[red]failed[/] {cell.describe()}: {outcome['error']}", highlight=False)
            else:
                store.record_success(
                    cell,
                    outcome["rows"],
                    calib.set_id if calib else None,
                    outcome["record"],
                    outcome["seconds"],
                    outcome.get("samples"),
                )
                tracking.log_cell(cell, calib.set_id if calib else None, outcome["rows"], outcome["seconds"])
                counts["done"] += 1
                finished_cells = bar.tasks[0].completed + 1
                bar.console.print(
                    f"[{finished_cells:.0f}/{len(cells)}] {cell.describe()}: {outcome['seconds']:.0f}s", highlight=False
                )
            bar.advance(task)

        try:
            if executor == "ray":
                runner(pending, calib_for, on_done, step, address=address)
            else:
                runner(pending, calib_for, on_done, step, jobs=jobs)
        finally:
            step(f"{counts['done']} done, {counts['failed']} failed")
            inner_progress.set_enabled(previous_inner)
            tracking.close()
            store.close()
    return StudyRun(
        Path(out),
        len(cells),
        len(cells) - len(pending),
        counts["done"],
        counts["failed"],
        time.perf_counter() - started,
    )
