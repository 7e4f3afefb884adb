"""Experiment tracking: the spec field, missing libraries, and MLflow runs read back from a local store."""

from __future__ import annotations

import json
import sqlite3
import sys
from pathlib import Path

import pytest

from calibench.core.errors import CalibenchError
from calibench.study import load_spec, run_study
from calibench.study.cells import Cell
from calibench.study.store import DB_NAME, Store
from calibench.tracking import TRACKERS, Tracker, cell_entry, open_tracking
from calibench.tracking.base import metric_name
from conftest import assert_one_line_error, corpus_text, run

pytestmark = pytest.mark.filterwarnings("ignore")


def write_spec(path: Path, model_dir: Path, train: Path, heldout: Path, tracking: str = "", sets: int = 2) -> Path:
    path.write_text(f"""name: tracked
models: [{model_dir}]
methods:
  - name: magnitude
    params: {{sparsity: 0.5}}
sources:
  - name: {train}
    sets: {sets}
n: [4]
seq_len: [32]
eval:
  tasks: [ppl:{heldout}]
  ppl_seq_len: 32
  ppl_max_windows: 2
{tracking}""")
    return path


@pytest.fixture
def texts(tmp_path):
    train, heldout = tmp_path / "train.txt", tmp_path / "heldout.txt"
    train.write_text("\n\n".join(corpus_text(200, seed=0)))
    heldout.write_text("\n\n".join(corpus_text(40, seed=7)))
    return train, heldout


def mlflow_runs(uri: str, experiment: str) -> list:
    """Every run of an experiment, read with MLflow's own client.

    Reading an MLflow 3 file store needs the opt-in that the tracker sets only
    while it writes (and must have removed again: checked here).
    """
    import os

    from mlflow.tracking import MlflowClient

    assert "MLFLOW_ALLOW_FILE_STORE" not in os.environ
    os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"
    try:
        client = MlflowClient(tracking_uri=uri)
        found = client.get_experiment_by_name(experiment)
        return [] if found is None else client.search_runs([found.experiment_id], max_results=1000)
    finally:
        del os.environ["MLFLOW_ALLOW_FILE_STORE"]


@pytest.fixture
def file_store(monkeypatch):
    pytest.importorskip("mlflow")
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)


# ----------------------------------------------------------------- the spec


def test_tracking_is_off_by_default(tmp_path, tiny_model_dir, texts):
    spec = load_spec(write_spec(tmp_path / "s.yaml", tiny_model_dir, *texts))
    assert spec.tracking is None
    tracking = open_tracking(spec.tracking, tmp_path / "study", spec.name)
    assert not tracking.active
    assert not (tmp_path / "study").exists()


@pytest.mark.parametrize(
    "block,fragments",
    [
        (
            "tracking: {backend: mlfow}",
            ["tracked.yaml:15:", "tracking.backend", "unknown tracking backend 'mlfow'", "did you mean 'mlflow'"],
        ),
        ("tracking: {backend: mlflow, colour: red}", ["tracking.colour", "Extra inputs"]),
        ("tracking: {backend: mlflow, uri: 'sqlite:///runs.db'}", ["tracking.uri", "pip install sqlalchemy alembic"]),
    ],
)
def test_bad_tracking_fields_are_located(tmp_path, tiny_model_dir, texts, capsys, block, fragments):
    if "sqlite" in block:
        from calibench.tracking.base import installed

        if installed("sqlalchemy") and installed("alembic"):
            pytest.skip("SQLAlchemy and Alembic are installed: an sqlite uri is fine here")
    spec_path = write_spec(tmp_path / "tracked.yaml", tiny_model_dir, *texts, tracking=block)
    code, _, err = run(["study", "run", str(spec_path), "--out", str(tmp_path / "out")], capsys)
    assert_one_line_error(code, err, *fragments)
    assert not (tmp_path / "out").exists()


def test_missing_wandb_is_one_line_before_any_work(tmp_path, tiny_model_dir, texts, capsys):
    from calibench.tracking.base import installed

    if installed("wandb"):
        pytest.skip("wandb is installed here")
    spec_path = write_spec(tmp_path / "s.yaml", tiny_model_dir, *texts, tracking="tracking: {backend: wandb}")
    code, _, err = run(["study", "run", str(spec_path), "--out", str(tmp_path / "out")], capsys)
    assert_one_line_error(code, err, "tracking.backend", "wandb is not installed: pip install wandb")
    assert not (tmp_path / "out").exists()


def test_missing_mlflow_is_one_line(tmp_path, tiny_model_dir, texts, monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # what an environment without mlflow looks like to find_spec
    spec_path = write_spec(tmp_path / "s.yaml", tiny_model_dir, *texts, tracking="tracking: {backend: mlflow}")
    with pytest.raises(
        CalibenchError, match=r"tracking.backend: mlflow is not installed: pip install 'calibench\[tracking\]'"
    ):
        load_spec(spec_path)


# ----------------------------------------------------------------- entries


def a_cell(index: int, method: str = "wanda") -> Cell:
    return Cell(
        model="/models/tiny",
        method=f"{method}-50%",
        method_name=method,
        params={"sparsity": 0.5},
        source="/data/train.txt",
        source_params={"mode": "concat"},
        num_sets=3,
        set_index=index,
        n=4,
        seq_len=32,
        seed=0,
        eval={"tasks": ["ppl:wiki", "arc_easy"], "limit": 20},
    )


def test_cell_entry_carries_config_set_id_and_every_result():
    cell = a_cell(1)
    rows = [
        {"task": "ppl:/data/held out.txt", "metric": "word_perplexity", "value": 31.5},
        {"task": "arc_easy", "metric": "acc,none", "value": 0.25},
    ]
    entry = cell_entry(cell.key, cell.model_dump(mode="json"), "abcd1234abcd1234", rows, 12.5, "study-1")
    assert entry.params["set_id"] == "abcd1234abcd1234" and entry.params["cell_key"] == cell.key
    assert entry.params["params.sparsity"] == "0.5" and entry.params["source_params.mode"] == "concat"
    assert entry.params["set_index"] == "1" and entry.params["method_name"] == "wanda"
    assert json.loads(entry.params["eval.tasks"]) == ["ppl:wiki", "arc_easy"]
    assert entry.metrics == {"ppl:/data/held out.txt/word_perplexity": 31.5, "arc_easy/acc_none": 0.25, "seconds": 12.5}
    assert entry.tags["calibench.cell_key"] == cell.key and entry.tags["calibench.study"] == "study-1"
    assert metric_name("a,b", "c|d") == "a_b/c_d"
    assert metric_name("ppl:data/../held.txt", "perplexity") == "ppl:data_.._held.txt/perplexity"
    other = cell_entry("k", {"source_params": {"components": {"/data/a.txt": 0.5}}}, None, [], None, "s")
    assert other.params["source_params.components._data_a.txt"] == "0.5"


# ----------------------------------------------------------------- MLflow against a local store


def test_mlflow_tracker_logs_cells_that_the_client_reads_back(tmp_path, file_store):
    from calibench.tracking import TrackingSpec

    store = Store(tmp_path / "study")
    uri = (tmp_path / "mlruns").as_uri()
    tracking = open_tracking(TrackingSpec(backend="mlflow", uri=uri, experiment="exp"), store.directory, "s")
    assert tracking.start(store) == 0  # nothing finished yet
    cells = [a_cell(0), a_cell(1), a_cell(0, "sparsegpt")]
    results = {}
    for i, cell in enumerate(cells):
        rows = [
            {"task": "arc_easy", "metric": "acc", "value": 0.1 * (i + 1)},
            {"task": "ppl:wiki", "metric": "word_perplexity", "value": 30.0 + i},
        ]
        set_id = f"{i:016x}"
        tracking.log_cell(cell, set_id, rows, 2.0 + i)
        results[cell.key] = (set_id, rows, 2.0 + i)
    assert tracking.tracker.logged_keys() == set(results)
    tracking.close()
    store.close()

    runs = mlflow_runs(uri, "exp")
    assert len(runs) == 3
    for r in runs:
        key = r.data.tags["calibench.cell_key"]
        set_id, rows, seconds = results[key]
        assert r.info.status == "FINISHED"
        assert r.data.params["set_id"] == set_id == r.data.tags["calibench.set_id"]
        assert r.data.metrics == {**{f"{x['task']}/{x['metric']}": x["value"] for x in rows}, "seconds": seconds}
        config = next(c for c in cells if c.key == key)
        assert r.data.params["method_name"] == config.method_name
        assert r.data.params["set_index"] == str(config.set_index)


def stored(out: Path) -> dict[str, tuple[str | None, dict[str, float]]]:
    with sqlite3.connect(out / DB_NAME) as conn:
        cells = dict(conn.execute("SELECT key, set_id FROM cells WHERE status = 'done'"))
        metrics: dict[str, dict[str, float]] = {k: {} for k in cells}
        for key, task, metric, value in conn.execute("SELECT key, task, metric, value FROM results"):
            metrics[key][metric_name(task, metric)] = value
    return {k: (cells[k], metrics[k]) for k in cells}


def check_runs_match_store(uri: str, experiment: str, out: Path) -> None:
    runs = mlflow_runs(uri, experiment)
    expected = stored(out)
    keys = [r.data.tags["calibench.cell_key"] for r in runs]
    assert sorted(keys) == sorted(expected), "one tracked run per finished cell"
    for r in runs:
        set_id, metrics = expected[r.data.tags["calibench.cell_key"]]
        assert r.data.params["set_id"] == (set_id or "")
        assert {k: v for k, v in r.data.metrics.items() if k != "seconds"} == metrics


def test_a_tiny_study_tracks_every_cell_once_and_resumes_without_duplicates(
    tmp_path, tiny_model_dir, texts, file_store
):
    uri = (tmp_path / "mlruns").as_uri()
    spec_path = write_spec(
        tmp_path / "s.yaml",
        tiny_model_dir,
        *texts,
        tracking=f"tracking: {{backend: mlflow, uri: '{uri}', experiment: tiny}}",
    )
    out = tmp_path / "study"
    first = run_study(spec_path, out, progress=False)
    assert first.done == 3 and first.failed == 0
    check_runs_match_store(uri, "tiny", out)
    assert {r.data.params["model"] for r in mlflow_runs(uri, "tiny")} == {str(tiny_model_dir)}
    assert sum(r.data.params["method"] == "dense" for r in mlflow_runs(uri, "tiny")) == 1

    again = run_study(spec_path, out, progress=False)  # resume: nothing runs, nothing is logged twice
    assert again.done == 0
    check_runs_match_store(uri, "tiny", out)


def test_tracking_switched_on_later_logs_the_finished_cells(tmp_path, tiny_model_dir, texts, file_store):
    out = tmp_path / "study"
    plain = write_spec(tmp_path / "plain.yaml", tiny_model_dir, *texts, sets=1)
    assert run_study(plain, out, progress=False).done == 2
    assert not (out / "mlruns").exists()  # off by default
    tracked = write_spec(
        tmp_path / "tracked.yaml", tiny_model_dir, *texts, sets=1, tracking="tracking: {backend: mlflow}"
    )
    assert run_study(tracked, out, progress=False).done == 0  # no cell reruns ...
    check_runs_match_store((out / "mlruns").resolve().as_uri(), "tracked", out)  # ... and all are tracked


# ----------------------------------------------------------------- a backend that fails


class Flaky(Tracker):
    """A backend that takes the first cell and then fails (what a full disk or a lost server does)."""

    name = "flaky"
    logged: list = []

    def logged_keys(self) -> set[str]:
        return {e.key for e in self.logged}

    def log_cell(self, entry) -> None:
        if self.logged:
            raise OSError("no space left on device")
        self.logged.append(entry)


def test_a_failing_tracker_warns_once_and_the_study_goes_on(tmp_path, tiny_model_dir, texts, capsys, monkeypatch):
    monkeypatch.setattr(Flaky, "logged", [])
    spec_path = write_spec(tmp_path / "s.yaml", tiny_model_dir, *texts, tracking="tracking: {backend: flaky}")
    with TRACKERS.temporarily("flaky", Flaky):
        summary = run_study(spec_path, tmp_path / "out", progress=False)
    assert summary.done == 3 and summary.failed == 0
    err = capsys.readouterr().err
    warnings = [line for line in err.splitlines() if line.startswith("warning: flaky tracking failed")]
    assert len(warnings) == 1 and "no space left on device" in warnings[0]
    assert len(Flaky.logged) == 1 and Flaky.logged[0].key in stored(tmp_path / "out")


# ----------------------------------------------------------------- W&B offline (where wandb is installed)


def test_wandb_offline_runs_one_per_cell_and_a_ledger(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    from calibench.tracking import TrackingSpec

    monkeypatch.delenv("WANDB_MODE", raising=False)
    store = Store(tmp_path / "study")
    tracking = open_tracking(TrackingSpec(backend="wandb", experiment="calib"), store.directory, "s")
    tracking.start(store)
    cells = [a_cell(0), a_cell(1)]
    for i, cell in enumerate(cells):
        tracking.log_cell(
            cell, f"{i:016x}", [{"task": "ppl:wiki", "metric": "word_perplexity", "value": 30.0 + i}], 1.0
        )
    tracking.close()
    store.close()
    assert tracking.tracker.logged_keys() == {c.key for c in cells}
    assert len(list((tmp_path / "study" / "wandb").glob("offline-run-*"))) == 2
