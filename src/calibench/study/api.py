"""run_study: expand the spec, skip finished cells, run the rest, store each as it finishes."""

from __future__ import annotations

import contextlib
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from calibench.core import progress as inner_progress
from calibench.core.errors import CalibenchError
from calibench.core.fsutil import check_writable_location
from calibench.data.calibset import CalibrationSet
from calibench.study import adaptive as adaptive_eval
from calibench.study.cells import Cell, expand
from calibench.study.executors import EXECUTORS, Outcome, check_ray, ray_runtime
from calibench.study.preflight import check_cells
from calibench.study.runner import base_model, quiet_libraries, tokenizer_for, weights_record
from calibench.study.sets import sets_for, verify_cached_sets
from calibench.study.spec import StudySpec, load_spec
from calibench.study.store import DB_NAME, Store, check_store
from calibench.tracking.base import open_tracking

SPEC_COPY = "spec.yaml"
# compressed weights, by Cell.weights_key: kept between the blocks of an adaptive study (deleted when unneeded) and
# for good with the spec's keep_weights
MODEL_CACHE = "models"


@dataclass
class StudyRun:
    directory: Path
    total: int
    skipped: int
    done: int
    failed: int
    seconds: float
    input_failures: int = 0  # failed cells whose error was the user's input (a CalibenchError), not a crash
    retried: int = 0  # cells run again because their Ray worker was lost (each stored once, when it finished)

    @property
    def all_failed(self) -> bool:
        """Every cell that ran failed and none was finished before: the study produced nothing."""
        return self.failed > 0 and self.done == 0 and self.skipped == 0


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
    if (out / DB_NAME).exists():  # an empty, foreign or non-database file is refused, not turned into a store
        check_store(out)
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
    elif executor == "ray":  # Ray missing or its cluster unreachable: refused in seconds, before the directory exists
        check_ray(address, resources=spec.resources, device=spec.device)
    check_study_output(out)
    if (Path(out) / DB_NAME).exists():  # a damaged store or set cache of the study to resume: refused first
        readonly = Store(out, read_only=True)
        try:
            readonly.validate()  # edited or damaged records: a resumed study would build on them
            verify_cached_sets(readonly)
        finally:
            readonly.close()
    cells = expand(spec)
    # every cell as compress, eval and the set builders would check it: one line naming the first that would fail
    check_cells(spec, cells, executor, where=spec_path)
    runtime = contextlib.ExitStack()
    if executor == "ray":  # joined (or started) once for every round; cell resources no node has: refused here
        runtime.enter_context(ray_runtime(address, spec.resources, spec.device, _say if progress else None))
    with runtime:
        tracking = open_tracking(spec.tracking, out, spec.name)  # a tracker that cannot start fails before any write
        store = Store(out)
        if spec_path is not None and not (store.directory / SPEC_COPY).exists():
            shutil.copyfile(spec_path, store.directory / SPEC_COPY)
        store.set_meta("spec", spec.model_dump(mode="json"))
        tracking.start(store)  # cells finished before tracking was on (or before a kill) are logged first

        finished = store.done_keys()
        # set by set (the dense cells, then every method x source's first set, then the second ...): a study
        # stopped early holds a balanced part of the grid, not all of one method and none of another
        pending = sorted((c for c in cells if c.key not in finished), key=lambda c: -1 if c.is_dense else c.set_index)
        settings = spec.eval.adaptive
        if settings is not None:  # every cell first scores the first block of items
            pending = [_with_block(c, 0, set(), settings, store.directory) for c in pending]
        elif spec.keep_weights:
            pending = [c.model_copy(update={"model_cache": _weights_path(c, store.directory)}) for c in pending]
        counts = {"done": 0, "failed": 0, "input": 0, "retried": 0}
        started = time.perf_counter()

        def calib_for(cell: Cell) -> CalibrationSet | None:
            if cell.is_dense:
                return None
            with quiet_libraries():
                return sets_for(cell, store, tokenizer_for(cell.model), base_model)[cell.set_index]

        # before the study's display: a set that runs the model (self text) shows its own progress while rebuilt
        _rebuild_missing_sets(cells, finished, store, calib_for, _say if progress else None)
        previous_inner = inner_progress.enabled()
        inner_progress.set_enabled(False)  # one live display: the study's

        with _progress(len(cells), len(cells) - len(pending), progress) as bar:
            task = bar.add_task("", total=len(cells), completed=len(cells) - len(pending))

            beat = inner_progress.HEARTBEAT_SECONDS  # a log file (no terminal) sees the steps, a line a beat
            shown: list[tuple[float, str]] = [(-beat, "")]

            def step(text: str) -> None:
                bar.update(task, description=text)
                now = time.monotonic()
                if progress and not bar.console.is_terminal and text != shown[0][1] and now - shown[0][0] >= beat:
                    shown[0] = (now, text)
                    bar.console.print(f"  ... {text}", highlight=False)

            def on_done(cell: Cell, calib: CalibrationSet | None, outcome: Outcome) -> None:
                counts["retried"] += int(outcome.get("retries", 0))
                if "error" in outcome:
                    store.record_failure(cell, outcome["error"], outcome.get("seconds", 0.0))
                    if not spec.keep_weights:
                        _drop_cache(cell)
                    counts["failed"] += 1
                    counts["input"] += bool(outcome.get("input"))
                    bar.console.print(f"[red]failed[/] {cell.describe()}: {outcome['error']}", highlight=False)
                elif cell.block is not None and cell.block[0] > 0:
                    store.record_block(cell, outcome.get("samples") or {}, _rows_for, outcome["seconds"])
                    bar.console.print(f"{cell.describe()}: {outcome['seconds']:.0f}s", highlight=False)
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
                    again = outcome.get("retries", 0)
                    lost = f" (run again after {again} lost worker{'s' if again > 1 else ''})" if again else ""
                    bar.console.print(
                        f"[{finished_cells:.0f}/{len(cells)}] {cell.describe()}: {outcome['seconds']:.0f}s{lost}",
                        highlight=False,
                    )
                bar.advance(task)

            def run_cells(batch: list[Cell]) -> None:
                if batch and batch[0].block is not None and batch[0].block[0] > 0:  # a later block: more to do
                    bar.update(task, total=bar.tasks[0].total + len(batch))
                if executor == "ray":
                    runner(
                        batch,
                        calib_for,
                        on_done,
                        step,
                        address=address,
                        resources=spec.resources,
                        max_retries=spec.max_retries,
                    )
                else:
                    runner(batch, calib_for, on_done, step, jobs=jobs)

            try:
                run_cells(pending)
                if settings is not None:
                    _adaptive_rounds(spec, cells, store, run_cells, bar.console.print)
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
        counts["input"],
        counts["retried"],
    )


def _say(text: str) -> None:
    from calibench.core.console import console

    console(stderr=True).print(text, highlight=False, markup=False)


def _rebuild_missing_sets(cells: list[Cell], finished: set[str], store: Store, calib_for: Any,
                          say: Any = None) -> None:  # fmt: skip
    """Sets of finished cells whose directory was deleted, rebuilt from their recipes (the same inputs give the
    same set), so that readers of the sets (`study signals`) find them after a rerun; ``say`` hears of each."""
    from calibench.study.sets import SETS_DIR, recipe_key

    root = store.directory / SETS_DIR
    seen: set[str] = set()
    for cell in cells:
        if cell.is_dense or cell.key not in finished or cell.perturbation:
            continue
        recipe = recipe_key(cell)
        ids = store.set_ids(recipe)
        if recipe in seen or not ids or all((root / set_id).is_dir() for set_id in ids.values()):
            continue
        seen.add(recipe)
        if say is not None:
            say(f"rebuilding the {cell.num_sets} {cell.source} sets of finished cells (their directory is gone)")
        calib_for(cell)  # rebuilds and records the recipe's sets


# ----------------------------------------------------------------- adaptive evaluation


def _weights_path(cell: Cell, directory: Path) -> str:
    """Where the cell's compressed weights are kept ("" for a dense cell: nothing to keep)."""
    return "" if cell.is_dense else str(directory / MODEL_CACHE / f"{cell.weights_key}.safetensors")


def _with_block(cell: Cell, index: int, tasks: set[str], settings: Any, directory: Path) -> Cell:
    """The cell's run for block ``index`` of ``tasks`` (every task when empty), with its weights cache."""
    return cell.model_copy(
        update={
            "block": adaptive_eval.block_range(index, settings),
            "block_tasks": tuple(sorted(tasks)),
            "model_cache": _weights_path(cell, directory),
        }
    )


def _drop_cache(cell: Cell) -> None:
    if cell.model_cache:
        Path(cell.model_cache).unlink(missing_ok=True)
        weights_record(Path(cell.model_cache)).unlink(missing_ok=True)


def _rows_for(task: str, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    from calibench.evaluation.kinds.perplexity import PPL_PREFIX
    from calibench.evaluation.samples import rows_from_items

    return rows_from_items(task, items, perplexity=task.startswith(PPL_PREFIX))


def _totals(store: Store, cells: list[Cell]) -> dict[tuple[str, str], int]:
    """Items per (model, task), from the records of the cells that scored a first block."""
    models = {c.key: c.model for c in cells}
    out: dict[tuple[str, str], int] = {}
    for key, record in store.records().items():
        for task in (record.get("evaluation") or {}).get("tasks", []):
            total = task.get("n_total")
            if key in models and isinstance(total, int) and total > 0:
                out[(models[key], task["task"])] = total
    return out


def adaptive_state(spec: StudySpec, store: Store) -> adaptive_eval.State:
    """Where the adaptive evaluation of a stored study stands (what the report shows)."""
    assert spec.eval.adaptive is not None
    cells = expand(spec)
    return adaptive_eval.replay(
        cells, spec.eval.tasks, spec.eval.adaptive, store.samples(), store.done_keys(), _totals(store, cells)
    )


def _adaptive_rounds(spec: StudySpec, cells: list[Cell], store: Store, run_cells: Any, say: Any) -> None:
    """Score further blocks until every comparison is decided, futile or out of items; the store keeps the state."""
    settings = spec.eval.adaptive
    assert settings is not None
    by_key = {c.key: c for c in cells}
    previous: dict[str, Any] | None = None
    while True:
        state = adaptive_state(spec, store)
        store.set_meta("adaptive", state.summary())
        needed = {c.key for p in state.pairs if not p.stopped for c in p.cells()}
        for cell in cells:  # a cell whose comparisons have all stopped is never scored again
            if cell.key not in needed and not spec.keep_weights:
                _drop_cache(_with_block(cell, 0, set(), settings, store.directory))
        if state.done:
            break
        plan = {key: (index, sorted(tasks)) for key, (index, tasks) in state.needs.items()}
        if plan == previous:
            raise CalibenchError(
                "adaptive evaluation made no progress: the same block was scored twice without its items arriving "
                "(see the failed cells above); rerun the study to retry"
            )
        previous = plan
        running = sum(1 for p in state.pairs if not p.stopped)
        decided = sum(1 for p in state.pairs if p.status is not None and p.status.state == "decided")
        first = min(index for index, _ in plan.values())
        start, stop = adaptive_eval.block_range(first, settings)
        say(
            f"adaptive: {decided} decided, {running} running of {len(state.pairs)} comparisons; "
            f"items {start}-{stop - 1} for {len(plan)} cells",
            highlight=False,
        )
        batch = [_with_block(by_key[key], index, set(tasks), settings, store.directory)
                 for key, (index, tasks) in sorted(plan.items())]  # fmt: skip
        run_cells(batch)
    cache = store.directory / MODEL_CACHE
    if cache.is_dir() and not any(cache.iterdir()):
        cache.rmdir()
