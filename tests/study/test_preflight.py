"""A study checks every cell before it runs any, refuses stores it did not write without touching them, fails
fast on an unreachable Ray cluster, and does not exit 0 when every cell failed."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from calibench.core.errors import CalibenchError
from calibench.study.cells import expand
from calibench.study.preflight import check_cells
from calibench.study.spec import StudySpec
from calibench.study.store import DB_NAME, Store

CALIBENCH = Path(sys.executable).with_name("calibench")


def _spec(model: Path, text: Path, **change) -> StudySpec:
    grid = {
        "models": [str(model)],
        "methods": [{"name": "magnitude"}],
        "sources": [{"name": str(text)}],
        "n": [2],
        "seq_len": [16],
        "eval": {"tasks": [f"ppl:{text}"], "ppl_max_windows": 1},
    }
    return StudySpec.model_validate({**grid, **change})


@pytest.fixture
def text(tmp_path):
    from conftest import corpus_text

    path = tmp_path / "corpus.txt"
    path.write_text("\n\n".join(corpus_text()), encoding="utf-8")
    return path


def _weightless(model: Path, into: Path, **config) -> Path:
    """A copy of ``model`` without its weights (config and tokenizer only), its config changed."""
    shutil.copytree(model, into, ignore=shutil.ignore_patterns("*.safetensors", "*.bin"))
    data = json.loads((into / "config.json").read_text())
    data.update(config)
    (into / "config.json").write_text(json.dumps(data))
    return into


def test_a_runnable_grid_passes(tiny_model_dir, text):
    spec = _spec(tiny_model_dir, text, methods=[{"name": "magnitude"}, {"name": "w4a16"}])
    check_cells(spec, expand(spec))


def test_the_first_failing_cell_is_named_with_the_count_of_the_others(tiny_model_dir, text):
    spec = _spec(tiny_model_dir, text, seq_len=[16, 100000], n=[2, 3])
    with pytest.raises(CalibenchError) as caught:
        check_cells(spec, expand(spec), where="spec.yaml")
    message = str(caught.value)
    assert message.startswith("spec.yaml: cell ") and "n=2 len=100000" in message
    assert "seq_len 100000 is above the model's maximum of 256 tokens" in message
    assert "(and 1 more of the 5 cells would fail)" in message and "\n" not in message


def test_shapes_are_checked_without_weights(tiny_model_dir, text, tmp_path):
    """The group-size check runs on the model's structure on the meta device: a checkpoint without weights
    is enough to refuse w4a16 on dimensions 128 does not divide, and to accept magnitude pruning on them."""
    narrow = _weightless(tiny_model_dir, tmp_path / "narrow", hidden_size=96, intermediate_size=192)
    check_cells(_spec(narrow, text), expand(_spec(narrow, text)))
    spec = _spec(narrow, text, methods=[{"name": "w4a16"}])
    with pytest.raises(
        CalibenchError, match=r"groups of 128, which does not divide the input dimension\(s\) \[96, 192\]"
    ):
        check_cells(spec, expand(spec))


def test_an_uncached_hub_model_is_refused_offline(tiny_model_dir, text, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # (copied, not validated: the spec's own check may already refuse the id; the preflight must too, on its own)
    spec = _spec(tiny_model_dir, text).model_copy(update={"models": ["no-such-org/no-such-model"]})
    started = time.perf_counter()
    with pytest.raises(CalibenchError, match=r"no-such-org/no-such-model.*\(HF_HUB_OFFLINE is set\)"):
        check_cells(spec, expand(spec))
    assert time.perf_counter() - started < 10


def _calibench(args: list[str], home: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "CALIBENCH_HOME": str(home), "HF_HUB_OFFLINE": "1", "NO_COLOR": "1"}
    return subprocess.run([str(CALIBENCH), *args], capture_output=True, text=True, env=env, timeout=timeout)


def test_a_study_whose_every_cell_fails_exits_2_with_one_summary_line(tiny_model_dir, text, tmp_path):
    """A checkpoint whose weights are missing passes the checks (they read the config) and fails in every cell:
    the study says so in its last line and exits 2 (the input's fault), not 0."""
    broken = _weightless(tiny_model_dir, tmp_path / "no-weights")
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(_spec(broken, text).model_dump_json())
    done = _calibench(["study", "run", str(spec_path), "--out", str(tmp_path / "study")], tmp_path / "home")
    last = done.stderr.strip().splitlines()[-1]
    assert done.returncode == 2, done.stderr
    assert last.startswith("error: all 2 cells of the study failed"), done.stderr
    assert "Traceback" not in done.stderr


def test_an_unreachable_ray_cluster_is_refused_within_seconds_and_leaves_nothing(tiny_model_dir, text, tmp_path):
    pytest.importorskip("ray")
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(_spec(tiny_model_dir, text).model_dump_json())
    out = tmp_path / "study"
    started = time.perf_counter()
    done = _calibench(
        ["study", "run", str(spec_path), "--out", str(out), "--executor", "ray", "--address", "127.0.0.1:1"],
        tmp_path / "home",
        timeout=60,
    )
    assert time.perf_counter() - started < 30
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "cannot reach the Ray cluster at 127.0.0.1:1" in done.stderr
    assert not out.exists()


def test_sigterm_unwinds_like_ctrl_c_while_ray_runs_and_the_handler_is_restored():
    """What lets a study driver killed with SIGTERM still run ray.shutdown() (in run_ray's finally)."""
    from calibench.study.executors import _interrupt_on_sigterm

    before = signal.getsignal(signal.SIGTERM)
    restore = _interrupt_on_sigterm()
    assert restore is not None
    try:
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
    finally:
        restore()
    assert signal.getsignal(signal.SIGTERM) == before


# ----------------------------------------------------------------- stores


def _bytes(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


@pytest.mark.parametrize(
    "content, fragment",
    [(b"", r"is empty \(0 bytes\)"), (b"notes, not a database\n", "not an SQLite database")],
    ids=["empty", "text"],
)
def test_readers_and_writers_refuse_a_store_that_is_not_one_and_leave_it_as_it_was(tmp_path, content, fragment):
    (tmp_path / DB_NAME).write_bytes(content)
    before = _bytes(tmp_path)
    for read_only in (True, False):
        with pytest.raises(CalibenchError, match=fragment):
            Store(tmp_path, read_only=read_only)
        assert _bytes(tmp_path) == before


def test_a_read_only_store_leaves_no_wal_files(tmp_path):
    Store(tmp_path).close()
    before = _bytes(tmp_path)
    store = Store(tmp_path, read_only=True)
    store.validate()
    assert store.meta() == {} and store.rows() == []
    store.close()
    assert _bytes(tmp_path) == before


def _with_one_cell(directory: Path, model: Path, text: Path) -> str:
    spec = _spec(model, text)
    cell = next(c for c in expand(spec) if not c.is_dense)
    store = Store(directory)
    store.record_sets("recipe", ["0123456789abcdef"])
    row = {"task": f"ppl:{text}", "metric": "word_perplexity", "value": 12.5, "stderr": 0.5, "n": 1}
    store.record_success(cell, [row], "0123456789abcdef", {"dtype": "float32"}, 1.0, {f"ppl:{text}": [{"window": 0}]})
    store.close()
    return cell.key


@pytest.mark.parametrize(
    "statement, fragment",
    [
        ("UPDATE cells SET record = '{\"dtype\": '", "record of cell"),
        ("UPDATE results SET stderr = 'half'", "is not a number"),
        ("UPDATE samples SET data = '{'", "is not valid JSON"),
        ("UPDATE cells SET config = json_set(config, '$.seq_len', 17)", "configuration was edited"),
        ("UPDATE sets SET set_id = 'fedcba9876543210'", "is not among the study's sets"),
    ],
    ids=["record-json", "stderr-text", "sample-json", "edited-config", "edited-set-row"],
)
def test_report_refuses_a_damaged_store_naming_the_cell_and_writes_no_report(
    tiny_model_dir, text, tmp_path, statement, fragment
):
    import sqlite3

    from calibench.report.study import write_report

    study = tmp_path / "study"
    _with_one_cell(study, tiny_model_dir, text)
    conn = sqlite3.connect(study / DB_NAME)
    with conn:
        conn.execute(statement)
    conn.close()
    before = _bytes(study)
    with pytest.raises(CalibenchError, match=fragment) as caught:
        write_report(study)
    assert "\n" not in str(caught.value)
    assert _bytes(study) == before and not (study / "report").exists()


def test_a_rerun_rebuilds_the_deleted_set_of_a_finished_cell(tiny_model_dir, text, tmp_path, capsys):
    """`study signals` tells the user to rerun `study run` when a cached set is gone: the rerun rebuilds it (the
    same recipe gives the same set id) even though every cell is finished and none runs again, and says so first
    (a self-text set takes minutes to generate)."""
    from calibench.study import run_study
    from calibench.study.sets import SETS_DIR

    spec = _spec(tiny_model_dir, text)
    out = tmp_path / "study"
    first = run_study(spec, out, progress=False)
    assert first.done == 2 and first.failed == 0
    (set_dir,) = (out / SETS_DIR).iterdir()
    shutil.rmtree(set_dir)
    capsys.readouterr()
    again = run_study(spec, out, progress=True)
    assert again.skipped == 2 and again.done == 0
    assert (set_dir / "manifest.json").is_file()
    assert "rebuilding the 1 " in capsys.readouterr().err
    store = Store(out, read_only=True)
    store.validate()
    store.close()


def test_a_rebuilt_set_that_differs_from_the_recorded_one_is_refused(tiny_model_dir, text, tmp_path, monkeypatch):
    """A model-generated set rebuilt on other hardware can come out different: the finished cells used the
    recorded one, so the rebuild is refused in one line and the store keeps the ids its cells point at."""
    from calibench.study import run_study
    from calibench.study import sets as study_sets

    spec = _spec(tiny_model_dir, text)
    out = tmp_path / "study"
    assert run_study(spec, out, progress=False).done == 2
    (set_dir,) = (out / study_sets.SETS_DIR).iterdir()
    shutil.rmtree(set_dir)
    real = study_sets._build

    def other_content(cell, tokenizer, loader):  # as if generated on other hardware: another content id
        return real(cell.model_copy(update={"seed": cell.seed + 1}), tokenizer, loader)

    monkeypatch.setattr(study_sets, "_build", other_content)
    with pytest.raises(CalibenchError, match=f"differ from the ones this study's cells used \\({set_dir.name}\\)"):
        run_study(spec, out, progress=False)
    import sqlite3

    with sqlite3.connect(out / DB_NAME) as db:
        assert [set_id for (set_id,) in db.execute("SELECT set_id FROM sets")] == [set_dir.name]
    assert not set_dir.exists() and [p.name for p in (out / study_sets.SETS_DIR).iterdir()] == []


def test_sets_that_run_the_model_are_built_on_one_thread(tiny_model_dir, monkeypatch):
    """Sampled tokens depend on the torch thread count: a set that runs the model is built on one thread whatever
    --jobs gives the process, so a rebuild on the same machine gives the same set; the count is restored after."""
    import torch

    from calibench.study import sets as study_sets

    seen = []
    monkeypatch.setattr(study_sets, "build_sets", lambda *a, **k: seen.append(torch.get_num_threads()) or [])
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        spec = StudySpec.model_validate(
            {
                "models": [str(tiny_model_dir)],
                "methods": [{"name": "magnitude"}],
                "sources": [{"name": "self"}],
                "n": [2],
                "seq_len": [16],
                "eval": {"tasks": ["ppl:wiki"]},
            }  # fmt: skip
        )
        (cell,) = [c for c in expand(spec) if not c.is_dense]
        study_sets._build(cell, None, lambda name: name)
        assert seen == [study_sets.SET_THREADS] == [1]
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
