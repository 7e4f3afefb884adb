"""Stop a study driver's local Ray runtime once the driver is gone: run as a script, never imported.

``ray.init()`` starts the GCS, a raylet, a log monitor and, under the raylet,
a dashboard agent and a runtime-env agent.  A driver that unwinds shuts them
all down; a driver killed with SIGKILL takes the GCS and raylet with it but
leaves the two agents running for good (re-parented, nothing stops them).
This watch, started by the driver in a session of its own, notes every Ray
process below the driver while the driver lives, and once it is gone
terminates the ones still running (SIGTERM, then SIGKILL after a grace
period).  The driver terminates the watch when it shuts Ray down itself.

Usage: ``python ray_watch.py DRIVER_PID``.  Only psutil is imported, so the watch
costs a few megabytes, not a torch import.
"""

from __future__ import annotations

import os
import sys
import time

try:
    import psutil  # type: ignore[import-untyped]
except ImportError:  # Ray ships its own copy beside its package: use it without importing Ray
    import importlib.util

    _ray = importlib.util.find_spec("ray")
    for _root in (_ray.submodule_search_locations or []) if _ray else []:
        sys.path.insert(0, os.path.join(_root, "thirdparty_files"))
    import psutil

POLL_S = 0.5
GRACE_S = 3.0


def _is_ray(process: psutil.Process) -> bool:
    try:
        command = " ".join(process.cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return False
    return "ray::" in command or f"{os.sep}ray{os.sep}" in command


def watch(driver: int) -> list[psutil.Process]:
    """Wait for ``driver`` to end; return the Ray processes seen below it (psutil checks a pid was not reused)."""
    me = os.getpid()
    try:
        parent = psutil.Process(driver)
    except psutil.NoSuchProcess:
        return []
    seen: dict[int, psutil.Process] = {}
    while True:
        try:
            children = parent.children(recursive=True)
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            break
        if not parent.is_running() or parent.status() == psutil.STATUS_ZOMBIE:
            break
        for child in children:
            if child.pid != me and child.pid not in seen and _is_ray(child):
                seen[child.pid] = child
        time.sleep(POLL_S)
    return list(seen.values())


def stop(processes: list[psutil.Process]) -> None:
    alive = []
    for process in processes:
        try:
            if process.is_running():
                process.terminate()
                alive.append(process)
        except psutil.NoSuchProcess:
            continue
    _, left = psutil.wait_procs(alive, timeout=GRACE_S)
    for process in left:
        try:
            process.kill()
        except psutil.NoSuchProcess:
            continue


def main(argv: list[str]) -> int:
    if len(argv) != 1 or not argv[0].isdigit():
        sys.stderr.write("usage: ray_watch.py DRIVER_PID\n")
        return 2
    stop(watch(int(argv[0])))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
