"""Where cells run: in this process (default), in local worker processes, or as Ray tasks.

Every executor hands each finished cell to the same ``on_done`` callback on
the driver, which writes the store; workers never touch the store, so a Ray
cluster needs no shared filesystem (calibration sets travel with the task).

Local worker processes (``jobs > 1``) exist because a CPU-only study is
dominated by work that two threads barely speed up: GPTQ's column loop is
Python-bound, and lm-eval's small batches scale poorly. N single-threaded
processes on N cores finish a grid faster than one N-threaded process (see
benchmarks/bench_study_jobs.py).
"""

from __future__ import annotations

import os
import traceback
from collections.abc import Callable, Iterator
from typing import Any

from calibench.core import numerics
from calibench.core.errors import CalibenchError
from calibench.core.registry import Registry
from calibench.core.text import one_line
from calibench.data.calibset import CalibrationSet
from calibench.study.cells import Cell
from calibench.study.runner import quiet_libraries, run_cell

Outcome = dict[str, Any]  # {"rows", "record", "seconds"} or {"error", "input", "seconds"}
SetProvider = Callable[[Cell], CalibrationSet | None]
OnDone = Callable[[Cell, CalibrationSet | None, Outcome], None]
Step = Callable[[str], None]


def _failed(exc: BaseException) -> Outcome:
    """The outcome of a cell that never produced one (no set, a lost or crashed worker)."""
    return {"error": one_line(exc, 500, typed=True), "input": isinstance(exc, CalibenchError), "seconds": 0.0}


def _safe_run(cell: Cell, calib: CalibrationSet | None, step: Step | None = None) -> Outcome:
    """run_cell, with any failure turned into an outcome the study records and moves past."""
    import time

    started = time.perf_counter()
    try:
        with quiet_libraries():
            return run_cell(cell, calib, step)
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as exc:  # a failed cell must not stop the study
        detail = "" if isinstance(exc, CalibenchError) else traceback.format_exc(limit=3)
        return {
            "error": one_line(exc, 500, typed=True),
            "input": isinstance(exc, CalibenchError),  # the user's input (exit 2 when every cell fails so), or a bug
            "traceback": detail,
            "seconds": time.perf_counter() - started,
        }


def _with_sets(
    cells: list[Cell], sets: SetProvider, on_done: OnDone, step: Step
) -> Iterator[tuple[Cell, CalibrationSet | None]]:
    """Each cell with its calibration set; a set that cannot be had fails its cell right here."""
    for cell in cells:
        step(f"calibration set for {cell.describe()}")
        try:
            calib = sets(cell)
        except CalibenchError as exc:
            on_done(cell, None, _failed(exc))
            continue
        yield cell, calib


def run_local(cells: list[Cell], sets: SetProvider, on_done: OnDone, step: Step, jobs: int = 1) -> None:
    """Cells in this process, or in ``jobs`` local worker processes when ``jobs`` > 1."""
    if jobs > 1:
        run_processes(cells, sets, on_done, step, jobs)
        return
    for cell, calib in _with_sets(cells, sets, on_done, step):
        on_done(cell, calib, _safe_run(cell, calib, step))


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def threads_per_worker(jobs: int) -> int:
    """Each of ``jobs`` processes gets an equal share of the usable cores (at least one thread; one when
    reproducible)."""

    return numerics.threads(max(1, usable_cores() // jobs))


def _init_worker(threads: int, driver: int) -> None:
    """Each worker gets an equal share of the cores, and dies with its driver.

    A pool worker waits on a queue whose write end it holds itself, so a
    driver killed with SIGKILL would leave it idling forever with a model in
    memory; a watchdog thread notices the new parent and exits instead.  The
    driver's pid comes as an argument: a worker still importing when the driver
    died is already re-parented by the time this runs.
    """
    import threading
    import time

    import torch

    torch.set_num_threads(threads)

    def watch() -> None:
        while os.getppid() == driver:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="calibench-driver-watch", daemon=True).start()


def run_processes(cells: list[Cell], sets: SetProvider, on_done: OnDone, step: Step, jobs: int) -> None:
    """Cells in ``jobs`` spawned worker processes; sets are built here while the workers compute.

    Finished cells are stored from the pool's completion callbacks (under one
    lock), so a result lands as soon as it exists even while this thread is
    busy generating a ``self`` set.  This thread gets the same share of cores
    as a worker: oversubscribed OpenMP threads spin and slow everyone down.
    """
    import functools
    import multiprocessing
    import threading
    from concurrent.futures import Future, ProcessPoolExecutor, wait

    import torch

    threads = threads_per_worker(jobs)
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    lock = threading.Lock()
    callback_errors: list[BaseException] = []

    def done_locked(cell: Cell, calib: CalibrationSet | None, outcome: Outcome) -> None:
        with lock:
            on_done(cell, calib, outcome)

    def finished(cell: Cell, calib: CalibrationSet | None, future: Future) -> None:
        try:
            outcome = future.result()
        except Exception as exc:  # a crashed worker is a failed cell
            outcome = _failed(exc)
        try:
            done_locked(cell, calib, outcome)
            show_in_flight()
        except BaseException as exc:  # re-raised on the driver below
            callback_errors.append(exc)

    def show_in_flight() -> None:
        # "running" includes the one call per pool the executor pre-queues: a display, not an account
        snapshot = list(in_flight.items())
        running = [c.describe() for f, c in snapshot if f.running()]
        queued = sum(1 for f, _ in snapshot if not f.done()) - len(running)
        if running:
            step(f"running {'; '.join(running)}" + (f" (+{queued} queued)" if queued else ""))

    pool = ProcessPoolExecutor(
        max_workers=jobs,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_init_worker,
        initargs=(threads, os.getpid()),
    )
    in_flight: dict[Future, Cell] = {}
    try:
        for cell, calib in _with_sets(cells, sets, done_locked, step):
            future = pool.submit(_safe_run, cell, calib)
            in_flight[future] = cell
            future.add_done_callback(functools.partial(finished, cell, calib))
        show_in_flight()
        wait(list(in_flight))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        torch.set_num_threads(previous_threads)
    if callback_errors:
        raise callback_errors[0]


def _ray_missing() -> CalibenchError:
    return CalibenchError("the ray executor needs Ray: pip install 'calibench[ray]' (or pip install 'ray[default]')")


RAY_PROBE_TIMEOUT_S = 5.0


def check_ray(address: str | None, timeout: float = RAY_PROBE_TIMEOUT_S) -> None:
    """Refuse, within ``timeout`` seconds, a Ray executor that cannot start: Ray missing, or a cluster address
    whose port does not answer (``ray.init`` would otherwise retry it for minutes).

    ``None`` starts a local runtime; ``auto`` is left to Ray (it reads ``RAY_ADDRESS`` or the running cluster).
    """
    import socket
    from urllib.parse import urlparse

    try:
        import ray  # noqa: F401
    except ImportError:
        raise _ray_missing() from None
    if address is None or address.strip().lower() in ("", "auto", "local"):
        return
    parsed = urlparse(address if "://" in address else f"tcp://{address}")
    try:
        port = parsed.port
    except ValueError:
        port = None
    default = 10001 if parsed.scheme == "ray" else 6379
    host, port = parsed.hostname, port or default
    if not host:
        raise CalibenchError(f"--address {address}: give a Ray cluster as HOST:PORT or ray://HOST:PORT")
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
    raise CalibenchError(
        f"cannot reach the Ray cluster at {address} ({host}:{port}: {reason} within {timeout:g}s): start it "
        "(`ray start --head`) or fix --address; without --address a local Ray runtime starts"
    )


def ray_shares(resources: dict[str, float], device: str) -> dict[str, float]:
    """What each Ray task asks for: one GPU and its share of the cores on a GPU cluster, one core on CPU.

    A GPU cell gets ``CPUs / GPUs`` cores (tokenisation, lm-eval's Python
    loop and the host side of offloading run there); a CPU cell gets one core,
    for the reason ``--jobs`` runs single-threaded workers.  ``device: cpu``
    in the spec keeps cells off the GPUs even when the cluster has them.
    """
    gpus = int(resources.get("GPU", 0))
    cpus = max(1, int(resources.get("CPU", 1)))
    if device != "cpu" and gpus >= 1:
        return {"num_gpus": 1, "num_cpus": max(1, cpus // gpus)}
    if device.startswith("cuda"):
        raise CalibenchError(
            f"the spec asks for device {device} but the Ray cluster has no GPU: use device: cpu (or auto)"
        )
    return {"num_gpus": 0, "num_cpus": 1}


def _ray_cell(cell: Cell, calib: CalibrationSet | None, threads: int) -> Outcome:
    """A Ray task: torch gets exactly the task's share of cores (Ray's OMP_NUM_THREADS does not reach torch
    once it is imported), then the cell runs like any other."""
    import torch

    torch.set_num_threads(threads)
    return _safe_run(cell, calib)


def run_ray(cells: list[Cell], sets: SetProvider, on_done: OnDone, step: Step, address: str | None = None) -> None:
    """One Ray task per cell, each with its GPU and thread share (see :func:`ray_shares`)."""
    try:
        import ray
    except ImportError:
        raise _ray_missing() from None

    started_here = not ray.is_initialized()
    restore = _interrupt_on_sigterm() if started_here else None
    try:
        from calibench.core import numerics

        if started_here:
            step(f"starting Ray ({address or 'local runtime'})")
            env = {numerics.ENV: "1", **numerics.PINNED} if numerics.pinned() else {}  # workers get the same kernels
            ray.init(
                address=address,
                include_dashboard=False,
                log_to_driver=False,
                ignore_reinit_error=True,
                runtime_env={"env_vars": env} if env else None,
            )
        device = cells[0].device if cells else "auto"
        shares = ray_shares(ray.cluster_resources(), device)
        threads = numerics.threads(int(shares["num_cpus"]))
        remote = ray.remote(max_retries=0, num_cpus=shares["num_cpus"], num_gpus=shares["num_gpus"])(_ray_cell)
        pending: dict[Any, tuple[Cell, CalibrationSet | None]] = {}
        for cell, calib in _with_sets(cells, sets, on_done, step):
            pending[remote.remote(cell, calib, threads)] = (cell, calib)
        step(f"{len(pending)} cells running on Ray ({shares['num_gpus']:g} GPU, {threads} threads each)")
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            cell, calib = pending.pop(ready[0])
            try:
                outcome = ray.get(ready[0])
            except Exception as exc:  # a lost worker is a failed cell
                outcome = _failed(exc)
            on_done(cell, calib, outcome)
    finally:
        if started_here:
            ray.shutdown()  # the runtime this driver started: raylet, dashboard and runtime-env agents
        if restore is not None:
            restore()


def _interrupt_on_sigterm() -> Callable[[], None] | None:
    """Make SIGTERM unwind like Ctrl-C while Ray runs, so a killed driver still shuts down the runtime it started
    (SIGINT already raises KeyboardInterrupt); returns what restores the previous handler (None off the main
    thread, where handlers cannot be set)."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return None

    def interrupt(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, interrupt)

    def restore() -> None:
        signal.signal(signal.SIGTERM, previous)

    return restore


#: Where a study's cells run, by ``--executor`` name.
EXECUTORS: Registry[Callable[..., None]] = Registry("executor")
EXECUTORS.register("local", run_local)
EXECUTORS.register("ray", run_ray)
