"""The reproducible mode: pinned kernels reach every cell, are recorded, and make results ISA-independent."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from calibench.study.store import DB_NAME
from conftest import corpus_text

CALIBENCH = Path(sys.executable).with_name("calibench")


def _study(tmp_path: Path, model_dir: Path, out: Path, extra_env: dict[str, str], *flags: str) -> dict:
    train, heldout = tmp_path / "train.txt", tmp_path / "heldout.txt"
    if not train.exists():
        train.write_text("\n\n".join(corpus_text(200, seed=0)))
        heldout.write_text("\n\n".join(corpus_text(60, seed=7)))
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        json.dumps(
            {
                "models": [str(model_dir)],
                "methods": [{"name": "sparsegpt", "params": {"sparsity": 0.5}}],
                "sources": [{"name": str(train)}],
                "n": [4],
                "seq_len": [32],
                "eval": {"tasks": [f"ppl:{heldout}"], "ppl_seq_len": 32, "ppl_max_windows": 4},
            }
        )
    )
    env = {**os.environ, **extra_env}
    env.pop("CALIBENCH_REPRODUCIBLE", None)
    done = subprocess.run(
        [str(CALIBENCH), "study", "run", str(spec), "--out", str(out), "--no-report", *flags],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    with sqlite3.connect(out / DB_NAME) as conn:
        records = [json.loads(r) for (r,) in conn.execute("SELECT record FROM cells ORDER BY key")]
        values = dict(conn.execute("SELECT key, value FROM results"))
    return {"records": records, "values": values, "stderr": done.stderr}


def test_reproducible_mode_is_recorded_and_identical_under_another_mkl_code_path(tmp_path, tiny_model_dir):
    a = _study(tmp_path, tiny_model_dir, tmp_path / "a", {}, "--reproducible")
    for record in a["records"]:
        numerics = record["numerics"]
        assert numerics["reproducible"] and numerics["mkl_cbwr"] == "COMPATIBLE" and record["torch_threads"] == 1
        assert numerics["aten_cpu_capability"] in ("AVX2", "DEFAULT")
    # MKL's AVX2 code path, as on a CPU without AVX-512: the pinned results do not move by one bit
    b = _study(tmp_path, tiny_model_dir, tmp_path / "b", {"MKL_ENABLE_INSTRUCTIONS": "AVX2"}, "--reproducible")
    assert a["values"] == b["values"]
    # no terminal here: the steps inside a cell still reach the log, as plain lines
    assert "  ... calibration set for" in a["stderr"] or "  ... compressing" in a["stderr"], a["stderr"]


def test_pinning_after_torch_loaded_is_refused(monkeypatch):
    import torch  # noqa: F401  (loaded, as in any test process)

    from calibench.core import numerics
    from calibench.core.errors import CalibenchError

    monkeypatch.delenv("MKL_CBWR", raising=False)
    with pytest.raises(CalibenchError, match="before torch is imported"):
        numerics.pin()
