"""A spec with keep_weights keeps each compressed cell's weights: the same spec run again with one more task
evaluates those cells from the kept weights, without compressing, and scores the shared task as before."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

import calibench.compress
from calibench.study import run_study
from calibench.study.api import MODEL_CACHE
from calibench.study.cells import expand
from calibench.study.spec import load_spec
from calibench.study.store import DB_NAME
from conftest import corpus_text

pytestmark = [pytest.mark.filterwarnings("ignore"), pytest.mark.usefixtures("one_thread")]

SPEC = """name: keep-weights
models: [{model}]
methods:
  - name: wanda
    params: {{sparsity: 0.5}}
sources:
  - name: {train}
    sets: 2
n: [4]
seq_len: [32]
keep_weights: {keep}
eval:
  tasks: [{tasks}]
  batch_size: 4
  ppl_seq_len: 64
  ppl_max_windows: 3
  offline: true
"""


def write_spec(path: Path, model: Path, train: Path, tasks: str, keep: bool = True) -> Path:
    path.write_text(SPEC.format(model=model, train=train, tasks=tasks, keep=str(keep).lower()))
    return path


def rows(out: Path) -> tuple[dict[str, dict], dict[tuple[str, str], float]]:
    with sqlite3.connect(out / DB_NAME) as db:
        records = {key: json.loads(record) for key, record in db.execute("SELECT key, record FROM cells")}
        values = {(key, task): value for key, task, value in db.execute("SELECT key, task, value FROM results")}
    return records, values


def test_a_second_run_with_one_more_task_reads_the_kept_weights(tmp_path, offline_assets, tiny_model_dir, heldout_file,
                                                               monkeypatch):  # fmt: skip
    train = tmp_path / "train.txt"
    train.write_text("\n\n".join(corpus_text(200, seed=0)))
    out = tmp_path / "study"
    first = write_spec(tmp_path / "first.yaml", tiny_model_dir, train, "ppl:wiki")
    assert run_study(first, out, progress=False).done == 3
    kept = sorted((out / MODEL_CACHE).iterdir())
    cells = [c for c in expand(load_spec(first)) if not c.is_dense]
    assert [p.name for p in kept] == sorted(
        f"{c.weights_key}{suffix}" for c in cells for suffix in (".json", ".safetensors")
    )
    assert len({c.weights_key for c in cells}) == 2  # one per set

    def no_compressing(*args, **kwargs):
        raise AssertionError("a kept cell was compressed again")

    monkeypatch.setattr(calibench.compress, "compress", no_compressing)
    second = write_spec(tmp_path / "second.yaml", tiny_model_dir, train, f"ppl:wiki, 'ppl:{heldout_file}'")
    run = run_study(second, out, progress=False)
    assert (run.done, run.failed) == (3, 0)  # new keys (the task list changed), no compression

    records, values = rows(out)
    new = {c.key: c for c in expand(load_spec(second)) if not c.is_dense}
    old = {c.weights_key: c.key for c in cells}
    for key, cell in new.items():
        assert records[key]["model_cache"] == "read"
        before = records[old[cell.weights_key]]
        assert records[key]["compression"] == before["compression"]  # the record that came with the weights
        assert records[key]["compression"]["calibration_set"]["id"] == before["compression"]["calibration_set"]["id"]
        assert values[(key, "ppl:wiki")] == values[(old[cell.weights_key], "ppl:wiki")]  # the same weights
    assert any(task != "ppl:wiki" for _, task in values)


def test_without_keep_weights_nothing_is_kept(tmp_path, offline_assets, tiny_model_dir):
    train = tmp_path / "train.txt"
    train.write_text("\n\n".join(corpus_text(200, seed=0)))
    spec = write_spec(tmp_path / "spec.yaml", tiny_model_dir, train, "ppl:wiki", keep=False)
    assert run_study(spec, tmp_path / "study", progress=False).done == 3
    assert not (tmp_path / "study" / MODEL_CACHE).exists()


def test_weights_calibrated_on_another_set_are_not_read(tmp_path, offline_assets, tiny_model_dir, heldout_file,
                                                         monkeypatch):  # fmt: skip
    """Kept weights whose record names another calibration set (a model-generated set rebuilt with other content)
    are stale: that cell compresses again and rewrites them; the others are read."""
    train = tmp_path / "train.txt"
    train.write_text("\n\n".join(corpus_text(200, seed=0)))
    out = tmp_path / "study"
    assert run_study(write_spec(tmp_path / "a.yaml", tiny_model_dir, train, "ppl:wiki"), out, progress=False).done == 3
    stale = sorted((out / MODEL_CACHE).glob("*.json"))[0]
    record = json.loads(stale.read_text())
    record["calibration_set"]["id"] = "0" * 16
    stale.write_text(json.dumps(record))

    real, calls = calibench.compress.compress, []
    monkeypatch.setattr(calibench.compress, "compress", lambda *a, **k: calls.append(1) or real(*a, **k))
    second = write_spec(tmp_path / "b.yaml", tiny_model_dir, train, f"ppl:wiki, 'ppl:{heldout_file}'")
    assert run_study(second, out, progress=False).done == 3
    assert len(calls) == 1
    records, _ = rows(out)
    new = [c for c in expand(load_spec(second)) if not c.is_dense]
    by_weights = {c.weights_key: records[c.key]["model_cache"] for c in new}
    assert by_weights == {k: ("written" if k == stale.stem else "read") for k in by_weights}
    assert json.loads(stale.read_text())["calibration_set"]["id"] != "0" * 16  # rewritten with the real set
