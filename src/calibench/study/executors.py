"""Where cells run: in this process (default) or as Ray tasks on a cluster.

Both executors hand each finished cell to the same ``on_done`` callback on
the driver, which writes the store; workers never touch the store, so a Ray
cluster needs no shared filesystem (calibration sets travel with the task).
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Iterator
from typing import Any

from calibench.calibset import CalibrationSet
from calibench.errors import CalibenchError
from calibench.study.cells import Cell
from calibench.study.runner import quiet_libraries, run_cell

Outcome = dict[str, Any]  # {"rows", "record", "seconds"} or {"error", "seconds"}
SetProvider = Callable[[Cell], CalibrationSet | None]
OnDone = Callable[[Cell, CalibrationSet | None, Outcome], None]
Step = Callable[[str], None]


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:500]


def _safe_run(cell: Cell, calib: CalibrationSet | None, step: Step | None = None) -> Outcome:
    """run_cell, with any failure turned into an outcome the study records and moves past."""
    import time

    started = time.perf_counter()
    try:
        with quiet_libraries():
            return run_cell(cell, calib, step)
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as exc:  # noqa: BLE001 - a failed cell must not stop the study
        detail = "" if isinstance(exc, CalibenchError) else traceback.format_exc(limit=3)
        return {"error": _one_line(exc), "traceback": detail, "seconds": time.perf_counter() - started}


def _with_sets(cells: list[Cell], sets: SetProvider, on_done: OnDone, step: Step) -> Iterator[tuple[Cell, CalibrationSet | None]]:
    """Each cell with its calibration set; a set that cannot be had fails its cell right here."""
    for cell in cells:
        step(f"calibration set for {cell.describe()}")
        try:
            calib = sets(cell)
        except CalibenchError as exc:
            on_done(cell, None, {"error": _one_line(exc), "seconds": 0.0})
            continue
        yield cell, calib


def run_local(cells: list[Cell], sets: SetProvider, on_done: OnDone, step: Step) -> None:
    for cell, calib in _with_sets(cells, sets, on_done, step):
        on_done(cell, calib, _safe_run(cell, calib, step))


def _ray_missing() -> CalibenchError:
    return CalibenchError("the ray executor needs Ray: pip install 'calibench[ray]' (or pip install 'ray[default]')")


def run_ray(cells: list[Cell], sets: SetProvider, on_done: OnDone, step: Step, address: str | None = None) -> None:
    """One Ray task per cell; one GPU per task when the cluster has GPUs."""
    try:
        import ray
    except ImportError:
        raise _ray_missing() from None

    started_here = not ray.is_initialized()
    if started_here:
        step(f"starting Ray ({address or 'local runtime'})")
        ray.init(address=address, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    try:
        gpus = 1 if ray.cluster_resources().get("GPU", 0) >= 1 else 0
        remote = ray.remote(num_gpus=gpus, max_retries=0)(_safe_run)
        pending: dict[Any, tuple[Cell, CalibrationSet | None]] = {}
        for cell, calib in _with_sets(cells, sets, on_done, step):
            pending[remote.remote(cell, calib)] = (cell, calib)
        step(f"{len(pending)} cells running on Ray")
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            cell, calib = pending.pop(ready[0])
            try:
                outcome = ray.get(ready[0])
            except Exception as exc:  # noqa: BLE001 - a lost worker is a failed cell
                outcome = {"error": _one_line(exc), "seconds": 0.0}
            on_done(cell, calib, outcome)
    finally:
        if started_here:
            ray.shutdown()


EXECUTORS = {"local": run_local, "ray": run_ray}
