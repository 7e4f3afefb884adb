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
