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

import contextlib
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


_STEPS: Any = None  # in a local worker process: the queue its steps go to, for the driver's display


def _init_worker(threads: int, driver: int, steps: Any = None) -> None:
    """Each worker gets an equal share of the cores, and dies with its driver; its steps (compressing,
    evaluating) go to ``steps``, a queue the driver reads into the study's display.

    A pool worker waits on a queue whose write end it holds itself, so a
    driver killed with SIGKILL would leave it idling forever with a model in
    memory; a watchdog thread notices the new parent and exits instead.  The
    driver's pid comes as an argument: a worker still importing when the driver
    died is already re-parented by the time this runs.
    """
    import threading
    import time

    import torch

    global _STEPS
    _STEPS = steps
    torch.set_num_threads(threads)

    def watch() -> None:
        while os.getppid() == driver:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="calibench-driver-watch", daemon=True).start()


def _worker_run(cell: Cell, calib: CalibrationSet | None) -> Outcome:
    """:func:`_safe_run` in a worker process, its steps sent to the driver."""
    return _safe_run(cell, calib, _STEPS.put if _STEPS is not None else None)


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

    context = multiprocessing.get_context("spawn")
    steps = context.Queue()

    def forward_steps() -> None:  # the workers' steps, shown as the driver's own
        for text in iter(steps.get, None):
            with lock:
                step(text)

    forwarder = threading.Thread(target=forward_steps, name="calibench-worker-steps", daemon=True)
    forwarder.start()
    pool = ProcessPoolExecutor(
        max_workers=jobs, mp_context=context, initializer=_init_worker, initargs=(threads, os.getpid(), steps)
    )
    in_flight: dict[Future, Cell] = {}
    try:
        for cell, calib in _with_sets(cells, sets, done_locked, step):
            future = pool.submit(_worker_run, cell, calib)
            in_flight[future] = cell
            future.add_done_callback(functools.partial(finished, cell, calib))
        show_in_flight()
        wait(list(in_flight))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        steps.put(None)  # every worker has exited: what they sent is in the queue before this
        steps.cancel_join_thread()  # a worker killed mid-send must not hang the driver on the queue
        forwarder.join(timeout=5.0)
        torch.set_num_threads(previous_threads)
    if callback_errors:
        raise callback_errors[0]


def _ray_missing() -> CalibenchError:
    return CalibenchError("the ray executor needs Ray: pip install 'calibench[ray]' (or pip install 'ray[default]')")


RAY_PROBE_TIMEOUT_S = 5.0
# An HTTP/2 client preface and an empty SETTINGS frame: a gRPC server (Ray's GCS, the Ray Client server) answers
# with its own SETTINGS frame before anything else, so a port that accepts connections but is not Ray is told apart
# in one round trip instead of a ray.init that waits on it for minutes.
_HTTP2_HELLO = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
_HTTP2_SETTINGS = 0x04


def _cluster_address(address: str | None) -> str | None:
    """The cluster a study joins: ``--address``, else ``RAY_ADDRESS``; None starts a local runtime of its own."""
    if address is None or not address.strip():
        address = os.environ.get("RAY_ADDRESS") or None
    if address is None or address.strip().lower() == "local":
        return None
    return address.strip()


def _answers_grpc(sock: Any, timeout: float) -> str | None:
    """None when the peer answers an HTTP/2 preface as a gRPC server does; else why not."""
    sock.settimeout(timeout)
    try:
        sock.sendall(_HTTP2_HELLO)
        head = b""
        while len(head) < 9:  # a frame header: length (3), type (1), flags (1), stream (4)
            chunk = sock.recv(9 - len(head))
            if not chunk:
                return "it closed the connection without answering as a Ray cluster"
            head += chunk
    except TimeoutError:
        return f"it accepts connections but gave no Ray (gRPC) answer within {timeout:g}s"
    except OSError as exc:
        return f"it dropped the connection ({exc.strerror or type(exc).__name__})"
    return None if head[3] == _HTTP2_SETTINGS else "it answers, but not as a Ray cluster (no gRPC)"


# Run in a child process with a deadline: Ray's GCS client retries an address that accepts connections but does not
# answer for about 40 seconds, and cannot be interrupted in-process. A refused token is a Ray answer that ray.init
# would get too (it retries it for 30 s, then raises ConnectionError): refused here with what to set.
_GCS_PROBE = """
import sys
try:
    from ray._raylet import GcsClient
    GcsClient(address=sys.argv[1]).internal_kv_get(b"calibench-probe", None, timeout=float(sys.argv[2]))
except Exception as exc:
    name = type(exc).__name__
    print("auth" if "Authentication" in name else " ".join(f"{name}: {exc}".split())[:200])
else:
    print("ray")
"""


def _answers_as_gcs(address: str, timeout: float) -> str | None:
    """None when a Ray GCS answers at ``address`` (HOST:PORT) within ``3 * timeout`` seconds; else why not."""
    import subprocess
    import sys

    try:
        done = subprocess.run(
            [sys.executable, "-c", _GCS_PROBE, address, f"{timeout:g}"],
            capture_output=True,
            text=True,
            timeout=3 * timeout,
            env={**os.environ, "RAY_LOG_TO_STDERR": "0"},
        )
    except subprocess.TimeoutExpired:
        return f"no answer from a Ray GCS within {3 * timeout:g}s"
    verdict = (done.stdout.strip().splitlines() or [f"the probe exited with status {done.returncode}"])[-1]
    if verdict == "auth":
        raise CalibenchError(
            f"the Ray cluster at {address} refused this machine's authentication token: set RAY_AUTH_TOKEN (or "
            "~/.ray/auth_token) to the cluster's token (`ray get-auth-token` on its head node)"
        )
    return None if verdict == "ray" else f"it answers, but not as a Ray cluster ({verdict})"


def check_ray(
    address: str | None,
    timeout: float = RAY_PROBE_TIMEOUT_S,
    resources: Any = None,
    device: str = "auto",
) -> None:
    """Refuse, within five times ``timeout`` seconds, a Ray executor that cannot start: Ray missing, a cluster address
    whose port does not answer or answers as something other than Ray (``ray.init`` would otherwise wait on it for
    minutes), or (for the local runtime a study starts) cell resources this machine does not have.

    No address (and no ``RAY_ADDRESS``) starts a local runtime; ``auto`` is left to Ray (the running cluster).
    """
    import importlib.util
    import socket
    from urllib.parse import urlparse

    if importlib.util.find_spec("ray") is None:  # found without importing it (seconds, on a busy machine)
        raise _ray_missing()
    target = _cluster_address(address)
    if target is None:
        if resources is not None and resources.any():
            shares = ray_shares(_local_node(), device, resources)
            check_fits([_local_node()], shares, "this machine (where the local Ray runtime would start)")
        return
    if target.lower() == "auto":
        return
    parsed = urlparse(target if "://" in target else f"tcp://{target}")
    try:
        port = parsed.port
    except ValueError:
        port = None
    default = 10001 if parsed.scheme == "ray" else 6379
    host, port = parsed.hostname, port or default
    if not host:
        raise CalibenchError(f"--address {target}: give a Ray cluster as HOST:PORT or ray://HOST:PORT")
    hint = "start it (`ray start --head`) or fix --address; without --address a local Ray runtime starts"
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            tls = os.environ.get("RAY_USE_TLS", "").lower() in ("1", "true")
            reason = None if tls else _answers_grpc(sock, timeout)  # TLS clusters need a TLS handshake: not probed
    except TimeoutError:
        reason = f"no answer within {timeout:g}s"
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
    if reason is None and parsed.scheme != "ray" and not tls:  # a gRPC server, or a proxy that answers for anything
        reason = _answers_as_gcs(f"{host}:{port}", timeout)
    if reason is not None:
        raise CalibenchError(f"cannot reach the Ray cluster at {target} ({host}:{port}: {reason}): {hint}")


def _local_node() -> dict[str, float]:
    """What a local Ray runtime on this machine would offer: its cores, CUDA GPUs and memory (bytes)."""
    gpus = 0
    try:
        import torch

        gpus = torch.cuda.device_count()
    except Exception:  # no torch or no driver: no GPU
        gpus = 0
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return {"CPU": float(usable_cores()), "GPU": float(gpus), "memory": float(memory)}


def ray_shares(cluster: dict[str, float], device: str, wanted: Any = None) -> dict[str, float]:
    """What each Ray task asks for: the spec's ``resources`` where given; otherwise one GPU and its share of the
    cores on a GPU cluster, one core on CPU.

    A GPU cell gets ``CPUs / GPUs`` cores per GPU (tokenisation, lm-eval's
    Python loop and the host side of offloading run there); a CPU cell gets one
    core, for the reason ``--jobs`` runs single-threaded workers.  ``device: cpu``
    in the spec keeps cells off the GPUs even when the cluster has them.
    ``wanted`` is the spec's :class:`calibench.study.spec.CellResources` (or None).
    """
    gpus = int(cluster.get("GPU", 0))
    cpus = max(1, int(cluster.get("CPU", 1)))
    want_gpus = getattr(wanted, "gpus", None)
    want_cpus = getattr(wanted, "cpus", None)
    want_memory = getattr(wanted, "memory_gb", None)
    if want_gpus is not None:
        num_gpus: float = float(want_gpus)
        if device.startswith("cuda") and num_gpus == 0:
            raise CalibenchError(f"the spec asks for device {device} but resources.gpus is 0: give gpus (e.g. 1)")
    elif device != "cpu" and gpus >= 1:
        num_gpus = 1
    elif device.startswith("cuda"):
        raise CalibenchError(
            f"the spec asks for device {device} but the Ray cluster has no GPU: use device: cpu (or auto)"
        )
    else:
        num_gpus = 0
    if want_cpus is not None:
        num_cpus: float = float(want_cpus)
    elif num_gpus > 0 and gpus >= 1:
        num_cpus = max(1, int(cpus // gpus * max(1.0, num_gpus)))
    else:
        num_cpus = 1
    shares: dict[str, float] = {"num_gpus": num_gpus, "num_cpus": num_cpus}
    if want_memory is not None:
        shares["memory"] = float(int(want_memory * 2**30))
    return shares


def _describe_shares(shares: dict[str, float]) -> str:
    parts = [f"{shares['num_gpus']:g} GPU", f"{shares['num_cpus']:g} CPU"]
    if "memory" in shares:
        parts.append(f"{shares['memory'] / 2**30:g} GB memory")
    return ", ".join(parts)


def check_fits(nodes: list[dict[str, float]], shares: dict[str, float], where: str = "the Ray cluster") -> None:
    """Refuse, in one line, cell resources that no node has (Ray would leave such a task pending forever)."""
    wanted = {"GPU": shares["num_gpus"], "CPU": shares["num_cpus"], "memory": shares.get("memory", 0.0)}
    if any(all(node.get(k, 0.0) >= v for k, v in wanted.items()) for node in nodes):
        return
    if nodes:
        best = max(nodes, key=lambda n: (n.get("GPU", 0.0), n.get("CPU", 0.0), n.get("memory", 0.0)))
        largest = (
            f"its largest node has {best.get('GPU', 0.0):g} GPU, {best.get('CPU', 0.0):g} CPU, "
            f"{best.get('memory', 0.0) / 2**30:.1f} GB memory"
        )
    else:
        largest = "it has no live node"
    raise CalibenchError(
        f"no node of {where} has what a cell asks ({_describe_shares(shares)}): {largest}; lower resources in the "
        "spec or add such a node"
    )


def _alive_nodes() -> list[dict[str, float]]:
    import ray

    return [dict(node.get("Resources") or {}) for node in ray.nodes() if node.get("Alive")]


_WATCH_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ray_watch.py")


def _watch_driver() -> Any:
    """A process that stops the local Ray runtime's processes once this driver is gone, even when it was killed
    with SIGKILL (Ray itself leaves its dashboard and runtime-env agents running then); see ray_watch.py."""
    import subprocess
    import sys

    return subprocess.Popen(
        [sys.executable, _WATCH_SCRIPT, str(os.getpid())],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # a signal to the driver's process group does not reach the watch
        close_fds=True,
    )


@contextlib.contextmanager
def ray_runtime(
    address: str | None = None, resources: Any = None, device: str = "auto", step: Step | None = None
) -> Iterator[dict[str, float]]:
    """Ray for a study: joined (or a local runtime started) and checked to fit a cell; yields each task's options.

    A runtime started here is shut down on the way out, by an exception, Ctrl-C or SIGTERM included; a local
    one also by a watch process when the driver dies without unwinding (SIGKILL, out of memory).  Inside an
    already initialised Ray (a caller's) nothing is started or stopped.
    """
    try:
        import ray
    except ImportError:
        raise _ray_missing() from None
    from calibench.core import numerics

    started_here = not ray.is_initialized()
    restore = _interrupt_on_sigterm() if started_here else None
    watch = None
    try:
        if started_here:
            target = _cluster_address(address)
            if step is not None:
                step(f"starting Ray ({target or 'local runtime'})")
            env = {numerics.ENV: "1", **numerics.PINNED} if numerics.pinned() else {}  # workers get the same kernels
            try:
                ray.init(
                    address=target or "local",
                    include_dashboard=False,
                    log_to_driver=False,
                    ignore_reinit_error=True,
                    runtime_env={"env_vars": env} if env else None,
                )
            except ConnectionError as exc:  # the probe passed but joining failed (the cluster went away, a token)
                raise CalibenchError(f"cannot join the Ray cluster at {target}: {one_line(exc, 300)}") from None
            if target is None:
                watch = _watch_driver()
        shares = ray_shares(ray.cluster_resources(), device, resources)
        check_fits(_alive_nodes(), shares)
        yield shares
    finally:
        if started_here:
            ray.shutdown()  # the runtime this driver started: raylet, dashboard and runtime-env agents
        if watch is not None:
            watch.terminate()
            watch.wait()
        if restore is not None:
            restore()


def _ray_cell(cell: Cell, calib: CalibrationSet | None, threads: int) -> Outcome:
    """A Ray task: torch gets exactly the task's share of cores (Ray's OMP_NUM_THREADS does not reach torch
    once it is imported), then the cell runs like any other."""
    import torch

    torch.set_num_threads(threads)
    return _safe_run(cell, calib)


#: Ray's errors for a task whose worker, node or result was lost: the cell itself did not fail, so it runs again.
_WORKER_LOSS = (
    "WorkerCrashedError",
    "NodeDiedError",
    "ObjectLostError",  # OwnerDiedError and ObjectReconstructionFailedError are kinds of it
    "ActorDiedError",
    "OutOfMemoryError",  # Ray's memory monitor killed the worker
)


def worker_lost(exc: BaseException) -> bool:
    """Whether a Ray task failed because its worker was lost, not because the cell raised (which ``_safe_run``
    turns into a failed outcome, never an exception)."""
    import ray.exceptions

    kinds = tuple(getattr(ray.exceptions, name) for name in _WORKER_LOSS if hasattr(ray.exceptions, name))
    return isinstance(exc, kinds)


def run_ray(
    cells: list[Cell],
    sets: SetProvider,
    on_done: OnDone,
    step: Step,
    address: str | None = None,
    resources: Any = None,
    max_retries: int = 3,
) -> None:
    """One Ray task per cell with the spec's resources (see :func:`ray_shares`); a cell whose worker is lost runs
    again, up to ``max_retries`` times, and is stored once, when it finishes (``retries`` in its outcome)."""
    try:
        import ray
    except ImportError:
        raise _ray_missing() from None
    from calibench.core import numerics

    device = cells[0].device if cells else "auto"
    with ray_runtime(address, resources, device, step) as shares:
        threads = numerics.threads(max(1, int(shares["num_cpus"])))
        options: dict[str, Any] = {"max_retries": 0, **shares}  # worker loss is retried here, where it is counted
        remote = ray.remote(**options)(_ray_cell)
        pending: dict[Any, tuple[Cell, CalibrationSet | None, int]] = {}
        for cell, calib in _with_sets(cells, sets, on_done, step):
            pending[remote.remote(cell, calib, threads)] = (cell, calib, 0)
        step(f"{len(pending)} cells running on Ray ({_describe_shares(shares)}, {threads} threads each)")
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            cell, calib, retries = pending.pop(ready[0])
            try:
                outcome = ray.get(ready[0])
            except Exception as exc:
                if worker_lost(exc) and retries < max_retries:
                    step(f"worker lost running {cell.describe()}: running it again ({retries + 1} of {max_retries})")
                    pending[remote.remote(cell, calib, threads)] = (cell, calib, retries + 1)
                    continue
                outcome = _failed(exc)  # an error of Ray's, or a worker lost once more than max_retries allows
                if retries:
                    outcome["error"] += f" (after {retries} retries)"
            if retries:
                outcome["retries"] = retries
            on_done(cell, calib, outcome)


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
