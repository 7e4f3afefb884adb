"""The lock file: its writer and parser, and that this environment is the locked one."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("calibench_lock", ROOT / "tools" / "lock.py")
lock = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(lock)


def test_lock_text_pins_sorted_without_the_project():
    freeze = "Zeta_Pkg==1.0\n-e git+https://example.invalid/x#egg=calibench\ncalibench==0.1.0\nalpha==2.3\ntorch==2.13.0+cpu\n"
    text = lock.lock_text(freeze)
    pins = [line for line in text.splitlines() if not line.startswith("#")]
    assert pins == ["alpha==2.3", "torch==2.13.0+cpu", "Zeta_Pkg==1.0"]
    assert lock.parse_lock(text) == {"alpha": "2.3", "torch": "2.13.0+cpu", "zeta-pkg": "1.0"}


@pytest.mark.parametrize("line", ["somepkg @ file:///tmp/somepkg.whl", "otherpkg>=1.0"])
def test_unpinnable_lines_are_refused(line):
    with pytest.raises(ValueError, match="exact"):
        lock.lock_text(line + "\n")
    with pytest.raises(ValueError, match="exact pin"):
        lock.parse_lock(line + "\n")


def test_mismatches_name_each_difference():
    problems = lock.mismatches({"a": "1", "b": "2"}, {"a": "1", "b": "3", "c": "4", "calibench": "0.1.0"})
    assert problems == ["b: locked 2, installed 3", "c: installed 4, not in the lock"]


def test_this_environment_is_the_locked_one():
    """make install installs requirements.lock; a drifted venv fails here with one line per package."""
    committed = lock.parse_lock((ROOT / "requirements.lock").read_text(encoding="utf-8"))
    installed = lock.parse_lock(lock.lock_text(lock.freeze(sys.executable)))
    assert lock.mismatches(committed, installed) == []
    # the refresh writes what it froze: regenerating from this environment gives the committed file
    assert lock.lock_text(lock.freeze(sys.executable)) == (ROOT / "requirements.lock").read_text(encoding="utf-8")
    for requirement in ("typer", "click", "torch", "transformers", "llmcompressor", "lm-eval"):
        assert requirement in committed


def _report(pins: dict[str, str]) -> dict:
    """The shape of `pip install --dry-run --report`: the packages it would install, with their metadata."""
    return {"install": [{"metadata": {"name": n, "version": v}} for n, v in pins.items()]}


def test_cuda_lock_is_the_cpu_lock_with_cuda_torch_and_its_packages():
    cpu = {"pip": "26.3", "torch": "2.13.0+cpu", "numpy": "2.4.6"}
    report = _report({"torch": "2.13.0", "numpy": "2.4.6", "pip": "26.3", "nvidia-cublas": "13.1", "triton": "3.7.1"})
    report["install"].append({"metadata": {"name": "calibench", "version": "0.1.0"}})
    text = lock.cuda_lock_text(report, cpu)
    assert lock.parse_lock(text) == {
        "numpy": "2.4.6",
        "nvidia-cublas": "13.1",
        "pip": "26.3",
        "torch": "2.13.0",
        "triton": "3.7.1",
    }
    assert text.startswith("#") and "calibench" not in text.split("\n", 2)[2]


@pytest.mark.parametrize(
    ("resolved", "message"),
    [
        ({"torch": "2.13.0", "numpy": "2.4.7", "triton": "3.7.1"}, "numpy: CPU lock 2.4.6, CUDA lock 2.4.7"),
        ({"torch": "2.13.0", "numpy": "2.4.6", "triton": "3.7.1", "requests": "2"}, "requests: in the CUDA lock only"),
        ({"torch": "2.13.0+cpu", "numpy": "2.4.6"}, "torch: CPU lock 2.13.0+cpu, CUDA lock 2.13.0+cpu"),
        ({"torch": "2.13.0", "numpy": "2.4.6"}, "no CUDA package in the CUDA lock"),
    ],
)
def test_cuda_lock_refuses_drift_from_the_cpu_lock(resolved, message):
    with pytest.raises(ValueError, match=message.replace("+", r"\+")):
        lock.cuda_lock_text(_report(resolved), {"torch": "2.13.0+cpu", "numpy": "2.4.6"})


def test_committed_cuda_lock_agrees_with_the_cpu_lock():
    """A CPU lock refreshed without `make lock-cuda` leaves the CUDA lock behind: this fails, naming the pins."""
    cpu = lock.parse_lock((ROOT / "requirements.lock").read_text(encoding="utf-8"))
    cuda = lock.parse_lock((ROOT / "requirements-cuda.lock").read_text(encoding="utf-8"))
    assert lock.cuda_mismatches(cpu, cuda) == []
    assert cuda["torch"] == cpu["torch"].split("+")[0] and "triton" in cuda
