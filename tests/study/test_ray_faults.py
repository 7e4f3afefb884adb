"""A study on a real local Ray runtime that loses workers: retried cells, every row once, the same numbers.

The runtime is started once for the module, by calibench (``ray_runtime``); the
driver-kill test starts its own in a child process, before the shared one.
"""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from calibench.core.errors import CalibenchError
from calibench.study import load_spec, run_study
from calibench.study.store import DB_NAME, Store
from conftest import corpus_text

ray = pytest.importorskip("ray")
psutil = pytest.importorskip("psutil")
pytestmark = pytest.mark.filterwarnings("ignore")

SRC = Path(__file__).resolve().parents[2] / "src"


def write_spec(path: Path, model: Path, train: Path, heldout: Path, sets: int, extra: str = "") -> Path:
    path.write_text(f"""name: faults
models: [{model}]
methods:
  - name: magnitude
    params: {{sparsity: 0.5}}
  - name: wanda
    params: {{sparsity: 0.5}}
sources:
  - name: {train}
    sets: {sets}
n: [2]
seq_len: [32]
eval:
  tasks: [ppl:{heldout}]
  ppl_seq_len: 32
  ppl_max_windows: 2
{extra}""")
    return path


@pytest.fixture
def texts(tmp_path):
    train, heldout = tmp_path / "train.txt", tmp_path / "heldout.txt"
    train.write_text("\n\n".join(corpus_text(200, seed=0)))
    heldout.write_text("\n\n".join(corpus_text(40, seed=7)))
    return train, heldout


def results(directory: Path) -> dict[tuple[str, str, str], float]:
    with sqlite3.connect(directory / DB_NAME) as conn:
        rows = conn.execute("SELECT key, task, metric, value FROM results").fetchall()
    found = {(k, t, m): v for k, t, m, v in rows}
    assert len(found) == len(rows)
    return found


def ray_below(pid: int) -> list[psutil.Process]:
    """The Ray processes (raylet, GCS, agents, workers) below ``pid``."""
    out = []
    for child in psutil.Process(pid).children(recursive=True):
        try:
            command = " ".join(child.cmdline())
        except psutil.Error:
            continue
        if "ray::" in command or "/ray/" in command:
            out.append(child)
    return out


# ----------------------------------------------------------------- a killed driver leaves nothing running

DRIVER = """
import time
from calibench.study.executors import ray_runtime
with ray_runtime(None):
    print("ready", flush=True)
    time.sleep(600)
"""


def test_a_local_runtime_is_stopped_when_its_driver_is_killed(tmp_path):
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    driver = subprocess.Popen([sys.executable, "-c", DRIVER], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert driver.stdout is not None and driver.stdout.readline().strip() == "ready"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # the agents start under the raylet shortly after ray.init returns
            names = {p.name() for p in ray_below(driver.pid)}
            if {"ray::DashboardAgent", "ray::RuntimeEnvAgent"} <= names:
                break
            time.sleep(0.5)
        started = ray_below(driver.pid)
        names = {p.name() for p in started}
        assert {"raylet", "gcs_server", "ray::RuntimeEnvAgent"} <= names, names
        time.sleep(1.5)  # the watch polls every 0.5 s: it has seen them all
    finally:
        driver.send_signal(signal.SIGKILL)
        driver.wait()
    gone, alive = psutil.wait_procs(started, timeout=20)
    assert not alive, f"left running after the driver's SIGKILL: {[(p.pid, p.name()) for p in alive]}"
    assert len(gone) == len(started)


# ----------------------------------------------------------------- a study that loses three workers


@pytest.fixture(scope="module")
def cluster():
    """A local Ray runtime started the way a study starts one, shared by the tests below."""
    from calibench.study.executors import ray_runtime

    with ray_runtime(None) as shares:
        yield shares


class Killer(threading.Thread):
    """SIGKILLs ``count`` Ray workers of this process while they run a cell (their title is ``ray::_ray_cell``)."""

    def __init__(self, count: int):
        super().__init__(daemon=True)
        self.count, self.killed, self.stop = count, [], threading.Event()

    def run(self) -> None:
        while len(self.killed) < self.count and not self.stop.is_set():
            for process in ray_below(os.getpid()):
                try:
                    if process.name() == "ray::_ray_cell" and process.pid not in self.killed:
                        process.send_signal(signal.SIGKILL)
                        self.killed.append(process.pid)
                        time.sleep(1.0)  # the next kill lands on another cell
                        break
                except psutil.Error:
                    continue
            time.sleep(0.05)


def test_study_that_loses_three_workers_stores_every_cell_once_with_undisturbed_values(
    cluster, tmp_path, tiny_model_dir, texts
):
    import torch

    spec_path = write_spec(tmp_path / "s.yaml", tiny_model_dir, *texts, sets=15)
    cells = 1 + 2 * 15
    killer = Killer(3)
    killer.start()
    try:
        summary = run_study(spec_path, tmp_path / "ray", executor="ray", progress=False)
    finally:
        killer.stop.set()
        killer.join()
    assert len(killer.killed) == 3
    assert (summary.total, summary.done, summary.failed) == (cells, cells, 0)
    assert summary.retried == 3  # each kill cost its cell one more run, and nothing else
    with sqlite3.connect(tmp_path / "ray" / DB_NAME) as conn:
        stored = conn.execute("SELECT status, COUNT(*), COUNT(DISTINCT key) FROM cells GROUP BY status").fetchall()
    assert stored == [("done", cells, cells)]

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the threads each Ray task runs with: the same reduction order
    try:
        run_study(spec_path, tmp_path / "local", progress=False)
    finally:
        torch.set_num_threads(threads)
    disturbed, undisturbed = results(tmp_path / "ray"), results(tmp_path / "local")
    assert len(disturbed) == cells and disturbed == undisturbed


def test_a_cell_that_raises_is_recorded_failed_not_retried(cluster, tmp_path, tiny_model_dir, texts):
    import shutil

    broken = tmp_path / "broken-model"  # config and tokenizer intact (the preflight passes), weights truncated
    shutil.copytree(tiny_model_dir, broken)
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    spec_path = write_spec(tmp_path / "s.yaml", broken, *texts, sets=1)
    summary = run_study(spec_path, tmp_path / "out", executor="ray", progress=False)
    assert (summary.done, summary.failed, summary.retried) == (0, 3, 0)  # each failed in its worker, once
    store = Store(tmp_path / "out", read_only=True)
    try:
        errors = [error for _, error in store.failures()]
    finally:
        store.close()
    assert len(errors) == 3 and not any("WorkerCrashed" in e or "retries" in e for e in errors), errors


def test_worker_loss_is_told_apart_from_a_cell_error():
    from ray import exceptions

    from calibench.study.executors import worker_lost

    assert worker_lost(exceptions.WorkerCrashedError())
    assert worker_lost(exceptions.NodeDiedError("node gone"))
    assert worker_lost(exceptions.OwnerDiedError("00" * 28, None, ""))
    assert worker_lost(exceptions.OutOfMemoryError("killed by the memory monitor"))
    assert not worker_lost(exceptions.RayTaskError("f", "traceback", ValueError("bad")))
    assert not worker_lost(ValueError("bad"))


# ----------------------------------------------------------------- resources


def test_cell_resources_reach_each_task_and_a_cell_no_node_can_hold_is_refused(
    cluster, tmp_path, tiny_model_dir, texts
):
    from calibench.study.executors import _alive_nodes, check_fits, ray_shares

    spec = load_spec(
        write_spec(tmp_path / "s.yaml", tiny_model_dir, *texts, sets=1, extra="resources: {cpus: 1, memory_gb: 0.25}\n")
    )
    shares = ray_shares(ray.cluster_resources(), spec.device, spec.resources)
    assert shares == {"num_gpus": 0, "num_cpus": 1, "memory": 0.25 * 2**30}
    check_fits(_alive_nodes(), shares)  # this machine's runtime holds such a cell
    too_big = {**shares, "memory": 10**15}
    with pytest.raises(CalibenchError, match=r"no node of the Ray cluster has what a cell asks \(0 GPU, 1 CPU, "):
        check_fits(_alive_nodes(), too_big)
    out = tmp_path / "out"
    huge = write_spec(tmp_path / "h.yaml", tiny_model_dir, *texts, sets=1, extra="resources: {cpus: 4096}\n")
    with pytest.raises(CalibenchError, match="no node of this machine"):
        run_study(huge, out, executor="ray", progress=False)
    assert not out.exists()
    summary = run_study(tmp_path / "s.yaml", out, executor="ray", progress=False)
    assert (summary.done, summary.failed) == (3, 0)


def test_resources_default_to_one_gpu_with_its_cores_and_follow_the_spec():
    from calibench.study.executors import ray_shares
    from calibench.study.spec import CellResources

    gpu_cluster = {"CPU": 16, "GPU": 4}
    assert ray_shares(gpu_cluster, "auto", CellResources()) == {"num_gpus": 1, "num_cpus": 4}
    assert ray_shares(gpu_cluster, "auto", CellResources(gpus=2)) == {"num_gpus": 2, "num_cpus": 8}
    assert ray_shares(gpu_cluster, "auto", CellResources(gpus=0.5, cpus=2, memory_gb=32)) == {
        "num_gpus": 0.5,
        "num_cpus": 2,
        "memory": 32 * 2**30,
    }
    with pytest.raises(CalibenchError, match="resources.gpus is 0"):
        ray_shares(gpu_cluster, "cuda", CellResources(gpus=0))


# ----------------------------------------------------------------- an address that is not a Ray cluster


def test_an_address_that_accepts_connections_but_is_not_ray_is_refused(tmp_path, tiny_model_dir, texts):
    spec_path = write_spec(tmp_path / "s.yaml", tiny_model_dir, *texts, sets=1)
    with socket.socket() as server:  # accepts (the kernel's backlog) and never answers
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        port = server.getsockname()[1]
        with pytest.raises(CalibenchError, match="gave no Ray \\(gRPC\\) answer within"):
            run_study(spec_path, tmp_path / "out", executor="ray", address=f"127.0.0.1:{port}", progress=False)
    with pytest.raises(CalibenchError, match="Connection refused"):
        run_study(spec_path, tmp_path / "out", executor="ray", address=f"127.0.0.1:{port}", progress=False)
    assert not (tmp_path / "out").exists()


def test_store_writes_are_idempotent_by_cell_key(tmp_path):
    from calibench.study.cells import Cell

    cell = Cell(model="m", method="gptq", method_name="gptq", params={}, source="wiki", source_params={}, num_sets=1,
                set_index=0, n=16, seq_len=64, seed=0, eval={"tasks": ["piqa"], "limit": 20})  # fmt: skip
    rows = [{"task": "piqa", "metric": "acc", "value": 0.5, "stderr": 0.01, "n": 20}]
    store = Store(tmp_path)
    store.record_failure(cell, "WorkerCrashedError: lost", 0.0)
    store.record_success(cell, rows, None, {}, 1.0)
    store.record_success(cell, [{**rows[0], "value": 0.6}], None, {}, 2.0)  # a result delivered twice
    assert store.conn.execute("SELECT COUNT(*), MAX(status) FROM cells").fetchone() == (1, "done")
    assert store.conn.execute("SELECT value FROM results").fetchall() == [(0.6,)]
    store.close()
