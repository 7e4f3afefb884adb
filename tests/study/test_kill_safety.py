"""SIGKILL at every stage: a rerun finishes with the uninterrupted results, and artifacts are all or nothing.

Failpoints (``CALIBENCH_FAILPOINT``, :mod:`calibench.core.failpoints`) kill the real
CLI exactly at a stage: while a study builds its sets, compresses, evaluates or
writes the store, and while an artifact is half on disk.  Timed kills spread
over a whole ``data build`` and ``compress`` cover the moments in between.
"""

from __future__ import annotations

import filecmp
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from calibench.data.calibset import CalibrationSet
from calibench.study import run_study
from calibench.study.store import DB_NAME
from conftest import corpus_text

pytestmark = pytest.mark.filterwarnings("ignore")
CALIBENCH = Path(sys.executable).with_name("calibench")


def calibench(args: list[str], failpoint: str | None = None, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    env.pop("CALIBENCH_FAILPOINT", None)
    if failpoint:
        env["CALIBENCH_FAILPOINT"] = failpoint
    return subprocess.Popen(
        [str(CALIBENCH), *map(str, args)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, **kwargs
    )


def temporaries(directory: Path) -> list[Path]:
    return [p for p in directory.rglob("*") if ".tmp-" in p.name]


def table(db: Path, query: str) -> list[tuple]:
    with sqlite3.connect(db) as conn:
        return conn.execute(query).fetchall()


@pytest.fixture(scope="module")
def texts(tmp_path_factory):
    root = tmp_path_factory.mktemp("kill-texts")
    train, heldout = root / "train.txt", root / "heldout.txt"
    train.write_text("\n\n".join(corpus_text(200, seed=0)))
    heldout.write_text("\n\n".join(corpus_text(60, seed=7)))
    return train, heldout


@pytest.fixture(scope="module")
def spec(tmp_path_factory, tiny_model_dir, texts):
    train, heldout = texts
    path = tmp_path_factory.mktemp("kill-spec") / "spec.yaml"
    path.write_text(
        json.dumps(
            {
                "models": [str(tiny_model_dir)],
                "methods": [{"name": "wanda", "params": {"sparsity": 0.5}}],
                "sources": [{"name": str(train), "sets": 2}],
                "n": [4],
                "seq_len": [32],
                "eval": {"tasks": [f"ppl:{heldout}"], "ppl_seq_len": 32, "ppl_max_windows": 4},
            }
        )
    )
    return path


@pytest.fixture(scope="module")
def reference(tmp_path_factory, spec):
    out = tmp_path_factory.mktemp("kill-reference") / "study"
    run_study(spec, out, progress=False)
    return out


@pytest.mark.parametrize(
    "failpoint", ["sets.built", "artifact.writing", "cell.compress:2", "cell.evaluate:2", "store.write:2"]
)
def test_study_killed_at_each_stage_resumes_to_the_uninterrupted_results(tmp_path, spec, reference, failpoint):
    out = tmp_path / "study"
    proc = calibench(["study", "run", spec, "--out", out, "--no-report"], failpoint=failpoint)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == -signal.SIGKILL, f"the failpoint {failpoint} was not reached: {err.decode()[-2000:]}"
    db = out / DB_NAME
    done = table(db, "SELECT key FROM cells WHERE status = 'done'")
    assert len(done) < 3
    # the store's transaction is all or nothing: a finished cell has its results, an unfinished one has none
    assert table(db, "SELECT COUNT(DISTINCT key) FROM results")[0][0] == len(done)

    summary = run_study(spec, out, progress=False)
    assert summary.failed == 0 and summary.skipped == len(done) and summary.done == 3 - len(done)
    assert not temporaries(out), "the rerun should remove what the killed write left"
    resumed = dict(table(db, "SELECT key || task, value FROM results"))
    assert resumed == dict(table(reference / DB_NAME, "SELECT key || task, value FROM results"))
    assert table(db, "SELECT * FROM sets ORDER BY recipe, set_index") == table(
        reference / DB_NAME, "SELECT * FROM sets ORDER BY recipe, set_index"
    )


@pytest.fixture(scope="module")
def adaptive_spec(tmp_path_factory, tiny_model_dir, texts):
    train, heldout = texts
    path = tmp_path_factory.mktemp("kill-adaptive-spec") / "spec.yaml"
    adaptive = {"block": 2, "cap": 6, "alpha": 1e-9}  # never decided: every cell scores three blocks
    path.write_text(
        json.dumps(
            {
                "models": [str(tiny_model_dir)],
                "methods": [{"name": "wanda", "params": {"sparsity": 0.5}}],
                "sources": [{"name": str(train), "sets": 2}, {"name": "random-vocab", "sets": 2}],
                "n": [4],
                "seq_len": [32],
                "eval": {"tasks": [f"ppl:{heldout}"], "ppl_seq_len": 32, "adaptive": adaptive},
            }
        )
    )
    return path


@pytest.fixture(scope="module")
def adaptive_reference(tmp_path_factory, adaptive_spec):
    out = tmp_path_factory.mktemp("kill-adaptive-reference") / "study"
    run_study(adaptive_spec, out, progress=False)
    return out


@pytest.mark.parametrize("failpoint", ["cell.evaluate:8", "store.block:5"])
def test_adaptive_study_killed_between_blocks_resumes_to_the_uninterrupted_items(
    tmp_path, adaptive_spec, adaptive_reference, failpoint
):
    reference = adaptive_reference
    out = tmp_path / "study"
    proc = calibench(["study", "run", adaptive_spec, "--out", out, "--no-report"], failpoint=failpoint)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == -signal.SIGKILL, f"the failpoint {failpoint} was not reached: {err.decode()[-2000:]}"
    killed_items = table(out / DB_NAME, "SELECT COUNT(*) FROM samples")[0][0]
    run_study(adaptive_spec, out, progress=False)
    query = "SELECT key, task, item, data FROM samples ORDER BY key, task, item"
    assert killed_items < len(table(reference / DB_NAME, query))
    assert table(out / DB_NAME, query) == table(reference / DB_NAME, query)
    assert table(out / DB_NAME, "SELECT key || task || metric, value FROM results ORDER BY 1") == table(
        reference / DB_NAME, "SELECT key || task || metric, value FROM results ORDER BY 1"
    )
    assert not (out / "models").exists()


def _build_args(texts, tiny_model_dir, out):
    return ["data", "build", texts[0], "-m", tiny_model_dir, "--n", "8", "--seq-len", "32", "--sets", "2", "--out", out]


@pytest.mark.parametrize("failpoint", ["artifact.writing", "artifact.before_rename"])
def test_data_build_killed_mid_write_leaves_nothing_and_the_rerun_cleans_up(tmp_path, texts, tiny_model_dir, failpoint):
    out = tmp_path / "sets"
    proc = calibench(_build_args(texts, tiny_model_dir, out), failpoint=failpoint)
    proc.communicate(timeout=300)
    assert proc.returncode == -signal.SIGKILL
    home = Path(os.environ["CALIBENCH_HOME"])  # the kill may land in the token-stream cache's write
    assert not out.exists() and temporaries(tmp_path) + temporaries(home), "a killed write leaves only its temporary"
    proc = calibench(_build_args(texts, tiny_model_dir, out))
    assert proc.wait(timeout=300) == 0
    assert not temporaries(tmp_path) + temporaries(home)
    assert [CalibrationSet.load(out / f"set-0{i}").n for i in range(2)] == [8, 8]


def _timed_kills(args_for, tmp_path: Path, kills: int) -> list[Path]:
    """Run a command to completion once for its duration, then kill copies at delays spread over it."""
    started = time.perf_counter()
    complete = tmp_path / "complete"
    assert calibench(args_for(complete)).wait(timeout=600) == 0
    duration = time.perf_counter() - started
    outs = []
    for i in range(kills):
        out = tmp_path / f"killed-{i}"
        proc = calibench(args_for(out))
        time.sleep(duration * (i + 0.5) / kills)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        outs.append(out)
    return [complete, *outs]


def test_data_build_killed_at_any_moment_is_all_or_nothing(tmp_path, texts, tiny_model_dir):
    complete, *killed = _timed_kills(lambda out: _build_args(texts, tiny_model_dir, out), tmp_path, kills=3)
    for out in killed:
        if out.exists():  # finished before the kill: then it is the complete, identical artifact
            for name in ("set-00", "set-01"):
                CalibrationSet.load(out / name)
                assert not filecmp.dircmp(out / name, complete / name).diff_files


def test_compress_killed_at_any_moment_is_all_or_nothing(tmp_path, texts, tiny_model_dir, tiny_tokenizer):
    from calibench.data.draw import build_calibration_set
    from calibench.models import load_model

    calib = tmp_path / "calib"
    build_calibration_set(str(texts[0]), tiny_tokenizer, n=4, seq_len=32).save(calib)

    def args_for(out):
        return ["compress", "-m", tiny_model_dir, "-c", calib, "--method", "sparsegpt", "--out", out]

    complete, *killed = _timed_kills(args_for, tmp_path, kills=3)
    expected = sorted(p.name for p in complete.iterdir())
    for out in killed:
        if out.exists():
            assert sorted(p.name for p in out.iterdir()) == expected
            json.loads((out / "calibench.json").read_text())
            load_model(out)
    # what the kills left is cleaned by `calibench clean` (only temporaries whose writer is gone)
    proc = calibench(["clean", tmp_path])
    assert proc.wait(timeout=120) == 0
    assert not temporaries(tmp_path)
