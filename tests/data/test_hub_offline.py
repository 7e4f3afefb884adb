"""Hub datasets and hub models with no hub access: one line, at once, with or without ``HF_HUB_OFFLINE``.

The bad-input rows (tests/cli/bad_rows_hub.py) run with ``HF_HUB_OFFLINE=1``; here the variable is
removed and the connectivity probe is pointed at a closed local port, which is how a machine without a
network looks to calibench.  Before: ``data build c4`` ended in an ``httpx.ConnectError`` traceback
(exit 1), a ``hub:`` id or a hub model after 30-60 s of retry warnings.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from calibench.core import connectivity
from calibench.core.errors import CalibenchError

CALIBENCH = Path(sys.executable).with_name("calibench")
CLOSED_PORT = "127.0.0.1:9"  # discard: nothing listens there, a connection is refused at once


def _no_hub_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in (*connectivity.OFFLINE_ENV, "TRANSFORMERS_OFFLINE")}
    env.update({connectivity.PROBE_ENV: CLOSED_PORT, connectivity.PROBE_TIMEOUT_ENV: "1", "NO_COLOR": "1"})
    env["CALIBENCH_HOME"] = str(tmp_path / "home")
    env["HF_HOME"] = str(tmp_path / "hf")  # an empty hub cache
    return env


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["data", "build", "c4"], "hub corpus 'c4' (allenai/c4): Couldn't reach the hub (hub unreachable"),
        (["data", "build", "hub:no-org/no-data"], "hub dataset no-org/no-data (revision default): Couldn't reach"),
        (["data", "build", "wiki", "-m", "no-org/no-model"], "model 'no-org/no-model' is a hub id, but the hub"),
    ],
    ids=["corpus", "hub-id", "model"],
)
def test_no_hub_without_hf_hub_offline_is_one_line_fast(args, fragment, tiny_model_dir, tmp_path):
    assert CALIBENCH.is_file()
    out = tmp_path / "out"
    argv = [str(CALIBENCH), *args, "-o", str(out), "--seq-len", "32", "--n", "2"]
    if "-m" not in args:
        argv += ["-m", str(tiny_model_dir)]
    start = time.monotonic()
    done = subprocess.run(argv, capture_output=True, text=True, env=_no_hub_env(tmp_path), timeout=120)
    took = time.monotonic() - start
    lines = done.stderr.splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    assert lines[0].startswith("error: ") and fragment in lines[0], lines[0]
    assert "Retry" not in done.stderr and not out.exists()
    assert took < 15, f"took {took:.1f}s"


@pytest.fixture
def restore_hub_mode(monkeypatch):
    """go_offline flips the clients' module constants: put them back after the test."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", constants.HF_HUB_OFFLINE)
    if "datasets.config" in sys.modules:
        config = sys.modules["datasets.config"]
        monkeypatch.setattr(config, "HF_HUB_OFFLINE", config.HF_HUB_OFFLINE)
        monkeypatch.setattr(config, "HF_DATASETS_OFFLINE", config.HF_DATASETS_OFFLINE)
    connectivity._probe.cache_clear()  # results are cached per target: start from no probe at all
    return constants


def test_probe_target_and_timeout_are_configurable(monkeypatch, restore_hub_mode):
    for name in connectivity.OFFLINE_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(connectivity.PROBE_ENV, CLOSED_PORT)
    monkeypatch.setenv(connectivity.PROBE_TIMEOUT_ENV, "0.5")
    assert connectivity.probe_target() == (CLOSED_PORT, 0.5)
    restore_hub_mode.HF_HUB_OFFLINE = False
    state = connectivity.hub_access()
    assert state.offline and state.reason.startswith("hub unreachable"), state
    assert restore_hub_mode.HF_HUB_OFFLINE is True  # the clients now read their caches only, without retries
    monkeypatch.setenv(connectivity.PROBE_TIMEOUT_ENV, "soon")
    assert connectivity.probe_target()[1] == connectivity.PROBE_TIMEOUT_S
    monkeypatch.delenv(connectivity.PROBE_ENV)
    assert connectivity.probe_target()[0] == connectivity.hub_endpoint()


def test_network_error_while_online_is_one_calibench_error(monkeypatch, restore_hub_mode):
    """The probe says online but the download fails with httpx's error (once a traceback, exit 1)."""
    import datasets
    import httpx

    from calibench.data.sources import get_source

    for name in connectivity.OFFLINE_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(connectivity, "_probe", lambda endpoint, timeout: None)

    def unreachable(*args, **kwargs):
        raise httpx.ConnectError("[Errno -2] Name or service not known")

    monkeypatch.setattr(datasets, "load_dataset", unreachable)
    with pytest.raises(CalibenchError) as err:
        get_source("c4").documents("train")
    assert str(err.value) == (
        "could not load hub corpus 'c4' (allenai/c4): the hub cannot be reached; use an offline source "
        "(wiki, science, math, code), a local file, or set $CALIBENCH_HUB_MIRROR"
    )


def test_cached_hub_model_loads_offline_from_the_cache(monkeypatch, tiny_model_dir, tmp_path, restore_hub_mode):
    from calibench.models import load_config, resolve_model_path

    sha = "0123456789abcdef0123456789abcdef01234567"
    repo_cache = tmp_path / "hub" / "models--acme--tiny"
    snapshot = repo_cache / "snapshots" / sha
    shutil.copytree(tiny_model_dir, snapshot)
    (repo_cache / "refs").mkdir()
    (repo_cache / "refs" / "main").write_text(sha)
    monkeypatch.setattr(restore_hub_mode, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert resolve_model_path("acme/tiny") == str(snapshot)
    assert load_config("acme/tiny").num_hidden_layers == load_config(tiny_model_dir).num_hidden_layers
    with pytest.raises(CalibenchError, match=r"^model 'acme/other' is a hub id, but the hub cannot be reached"):
        resolve_model_path("acme/other")
