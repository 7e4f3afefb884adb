"""Studies: spec validation, the cell grid, resumption after SIGKILL, Ray, and the report's statistics."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from calibench.study import expand, load_spec, run_study
from calibench.study.cells import Cell
from calibench.study.store import DB_NAME, Store
from conftest import assert_one_line_error, corpus_text, run

pytestmark = pytest.mark.filterwarnings("ignore")


def write_spec(path: Path, model_dir: Path, train: Path, heldout: Path, sets: int = 3, methods: str = "wanda") -> Path:
    method_lines = "\n".join(f"  - name: {m}\n    params: {{sparsity: 0.5}}" for m in methods.split(","))
    path.write_text(f"""name: tiny
models: [{model_dir}]
methods:
{method_lines}
sources:
  - name: {train}
    sets: {sets}
n: [4]
seq_len: [32]
eval:
  tasks: [ppl:{heldout}]
  ppl_seq_len: 32
  ppl_max_windows: 4
""")
    return path


@pytest.fixture
def texts(tmp_path):
    train, heldout = tmp_path / "train.txt", tmp_path / "heldout.txt"
    train.write_text("\n\n".join(corpus_text(200, seed=0)))
    heldout.write_text("\n\n".join(corpus_text(60, seed=7)))
    return train, heldout


# ----------------------------------------------------------------- spec and grid


def test_grid_expands_to_a_dense_baseline_plus_every_combination(tmp_path, tiny_model_dir, texts):
    spec_path = write_spec(tmp_path / "s.yaml", tiny_model_dir, *texts, sets=3, methods="wanda,magnitude")
    spec = load_spec(spec_path)
    spec.n = [4, 8]
    cells = expand(spec)
    assert len(cells) == 1 + 2 * 1 * 3 * 2
    assert cells[0].is_dense and sum(c.is_dense for c in cells) == 1
    assert len({c.key for c in cells}) == len(cells)
    assert [c.key for c in expand(spec)] == [c.key for c in cells]  # stable


@pytest.mark.parametrize(
    "old,new,line,fragments",
    [
        ("name: wanda", "name: wandda", 4, ["methods.0.name", "unknown method 'wandda'"]),
        ("sets: 3", "sets: many", 8, ["sources.0.sets", "valid integer"]),
        ("tasks: [ppl:", "tasks: [arc_eazy, ppl:", 12, ["eval.tasks", "unknown task 'arc_eazy'"]),
        ("n: [4]", "n: []", 9, ["n", "must not be empty"]),
        ("sparsity: 0.5", "sparsity: 1.5", 4, ["methods.0", "strictly between 0 and 1"]),
    ],
)
def test_invalid_specs_name_field_and_line(tmp_path, tiny_model_dir, texts, capsys, old, new, line, fragments):
    spec_path = write_spec(tmp_path / "s.yaml", tiny_model_dir, *texts)
    spec_path.write_text(spec_path.read_text().replace(old, new, 1))
    code, _, err = run(["study", "run", str(spec_path), "--out", str(tmp_path / "out")], capsys)
    assert_one_line_error(code, err, f"s.yaml:{line}:", *fragments)
    assert not (tmp_path / "out").exists()


def test_unknown_source_is_located(tmp_path, tiny_model_dir, texts, capsys):
    spec_path = write_spec(tmp_path / "s.yaml", tiny_model_dir, *texts)
    spec_path.write_text(spec_path.read_text().replace(str(texts[0]), "wikki"))
    code, _, err = run(["study", "run", str(spec_path), "--out", str(tmp_path / "out")], capsys)
    assert_one_line_error(code, err, "s.yaml:7:", "sources.0.name", "unknown source 'wikki'")


# ----------------------------------------------------------------- resumption


def table(db: Path, query: str) -> list[tuple]:
    with sqlite3.connect(db) as conn:
        return conn.execute(query).fetchall()


def _status(pid: int | str) -> dict[str, str]:
    """Fields of /proc/PID/status (Linux), empty when the process is gone."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return {}
    return {key: value.strip() for key, value in (line.split(":", 1) for line in lines if ":" in line)}


def _alive(pid: int) -> bool:
    return _status(pid).get("State", "Z")[:1] != "Z"  # zombies do not count


def _children(pid: int) -> list[int]:
    """Live child processes of ``pid``."""
    return [
        int(p.name)
        for p in Path("/proc").glob("[0-9]*")
        if _status(p.name).get("PPid") == str(pid) and _alive(int(p.name))
    ]


@pytest.mark.parametrize("jobs", [1, 2])
def test_sigkill_then_rerun_gives_one_row_per_cell_and_the_uninterrupted_results(tmp_path, tiny_model_dir, texts, jobs):
    spec_path = write_spec(tmp_path / "s.yaml", tiny_model_dir, *texts, sets=3)
    killed = tmp_path / "killed"
    command = [
        sys.executable,
        "-c",
        "from calibench.cli import main; main()",
        "study",
        "run",
        str(spec_path),
        "--out",
        str(killed),
        "--no-report",
        "--jobs",
        str(jobs),
    ]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    db = killed / DB_NAME
    deadline = time.time() + 600
    try:
        while time.time() < deadline:
            if db.exists():
                try:
                    if table(db, "SELECT COUNT(*) FROM cells WHERE status = 'done'")[0][0] >= 1:
                        break
                except sqlite3.OperationalError:
                    pass
            if proc.poll() is not None:
                break
            time.sleep(0.2)
    finally:
        workers = _children(proc.pid)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    if jobs > 1:  # orphaned workers notice the dead driver and exit instead of computing on
        assert workers, "the driver should have had worker processes"
        deadline = time.time() + 120
        while any(_alive(w) for w in workers) and time.time() < deadline:
            time.sleep(0.5)
        assert not any(_alive(w) for w in workers)
    done_before = table(db, "SELECT COUNT(*) FROM cells")[0][0]
    assert 1 <= done_before < 4, "the kill should land part-way through the 4 cells"

    summary = run_study(spec_path, killed, progress=False)
    assert summary.skipped == done_before and summary.done == 4 - done_before and summary.failed == 0
    assert table(db, "SELECT COUNT(*), COUNT(DISTINCT key) FROM cells") == [(4, 4)]
    assert table(db, "SELECT COUNT(*), COUNT(DISTINCT key) FROM results") == [(4, 4)]

    clean = tmp_path / "clean"
    run_study(spec_path, clean, progress=False)
    after = dict(table(db, "SELECT key, value FROM results"))
    reference = dict(table(clean / DB_NAME, "SELECT key, value FROM results"))
    if jobs == 1:
        assert after == reference  # same cells, bit-identical perplexities
    else:  # worker cells ran on cores // jobs threads: equal up to reduction order
        assert after.keys() == reference.keys()
        assert all(after[k] == pytest.approx(v, rel=1e-4) for k, v in reference.items())
    assert table(db, "SELECT recipe, set_index, set_id FROM sets") == table(
        clean / DB_NAME, "SELECT recipe, set_index, set_id FROM sets"
    )

    again = run_study(spec_path, killed, progress=False)
    assert again.skipped == 4 and again.done == 0


def test_a_failing_cell_is_recorded_and_the_study_goes_on(tmp_path, tiny_model_dir, texts):
    spec_path = write_spec(tmp_path / "s.yaml", tiny_model_dir, *texts, sets=1)
    # n x seq_len larger than the corpus: the set cannot be built, the cell fails, the dense cell still runs
    spec_path.write_text(spec_path.read_text().replace("seq_len: [32]", "seq_len: [200]").replace("n: [4]", "n: [900]"))
    summary = run_study(spec_path, tmp_path / "out", progress=False)
    assert summary.done == 1 and summary.failed == 1
    (error,) = table(tmp_path / "out" / DB_NAME, "SELECT error FROM cells WHERE status = 'failed'")[0]
    assert "room for" in error


# ----------------------------------------------------------------- Ray


def test_cells_run_through_a_real_local_ray_runtime(tmp_path, tiny_model_dir, texts):
    pytest.importorskip("ray")
    spec_path = write_spec(tmp_path / "s.yaml", tiny_model_dir, *texts, sets=2)
    summary = run_study(spec_path, tmp_path / "ray", executor="ray", progress=False)
    assert summary.done == 3 and summary.failed == 0
    local = tmp_path / "local"
    run_study(spec_path, local, progress=False)
    assert dict(table(tmp_path / "ray" / DB_NAME, "SELECT key, value FROM results")) == dict(
        table(local / DB_NAME, "SELECT key, value FROM results")
    )


# ----------------------------------------------------------------- report statistics


def fake_cell(method: str, source: str, index: int, n: int = 16) -> Cell:
    return Cell(
        model="m",
        method=method,
        method_name="" if method == "dense" else method,
        params={},
        source="" if method == "dense" else source,
        source_params={},
        num_sets=3,
        set_index=index,
        n=n,
        seq_len=64,
        seed=0,
        eval={"tasks": ["arc_easy", "piqa"], "limit": 20},
    )


def test_report_tables_match_an_independent_computation(tmp_path):
    from calibench.report.study import write_report
    from calibench.report.tables import AVERAGE

    rng = np.random.default_rng(0)
    store = Store(tmp_path)
    values: dict[tuple[str, str, int], dict[str, float]] = {}
    cells = [fake_cell("dense", "", 0)] + [
        fake_cell(m, s, i) for m in ("gptq", "wanda") for s in ("wiki", "code") for i in range(3)
    ]
    for cell in cells:
        scores = {"arc_easy": float(rng.uniform(0.3, 0.6)), "piqa": float(rng.uniform(0.5, 0.7))}
        values[(cell.method, cell.source, cell.set_index)] = scores
        rows = [
            {"task": t, "metric": "acc", "value": v, "stderr": 0.01, "n": 20, "limit": 20} for t, v in scores.items()
        ]
        rows.append({"task": "ppl:wiki", "metric": "perplexity", "value": float(rng.uniform(20, 40)), "n": 8})
        store.record_success(cell, rows, None, {}, 1.0)
    store.close()

    report = write_report(tmp_path)
    import pandas as pd

    frame = pd.read_csv(report.csv)
    assert len(frame) == len(cells) * 3
    md = report.markdown.read_text()
    for method in ("gptq", "wanda"):
        for source in ("wiki", "code"):
            averages = [np.mean(list(values[(method, source, i)].values())) for i in range(3)]
            mean, std = np.mean(averages), np.std(averages, ddof=1)
            spread = max(averages) - min(averages)
            row = (
                f"| m | {method} | {source} | 16 | 64 | 3 | {mean:.4f} | {std:.4f} | "
                f"{min(averages):.4f} | {max(averages):.4f} | {spread:.4f} |"
            )
            assert row in md, row
        means = {
            s: np.mean([np.mean(list(values[(method, s, i)].values())) for i in range(3)]) for s in ("wiki", "code")
        }
        best, worst = max(means, key=means.get), min(means, key=means.get)
        assert (
            f"| m | {method} | 16 | 64 | {best} | {means[best]:.4f} | {worst} | {means[worst]:.4f} | "
            f"{means[best] - means[worst]:.4f} |" in md
        )
    assert "--limit 20" in md and AVERAGE not in frame.task.unique()
    assert {p.name for p in report.plots} == {"accuracy_by_source.png", "perplexity_by_source.png", "task_spread.png"}
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in report.plots)
    assert report.html.read_text().count("data:image/png;base64,") == 3
    assert pd.read_parquet(report.parquet).shape == frame.shape


def test_worker_processes_give_the_same_cells_as_one_process(tmp_path, tiny_model_dir, texts, monkeypatch):
    spec_path = write_spec(tmp_path / "s.yaml", tiny_model_dir, *texts, sets=2, methods="wanda,magnitude")
    import calibench.study.executors as executors

    shown: list[str] = []
    real = executors.run_processes

    def recording(cells, sets, on_done, step, jobs):  # the driver's display, as the study hands it over
        return real(cells, sets, on_done, lambda text: (shown.append(text), step(text)), jobs)

    monkeypatch.setattr(executors, "run_processes", recording)
    summary = run_study(spec_path, tmp_path / "jobs", progress=False, jobs=2)
    monkeypatch.setattr(executors, "run_processes", real)
    assert summary.done == 5 and summary.failed == 0
    # the workers' own steps reach the driver (a log shows what a worker is doing, not only what is queued)
    assert any(text.startswith("compressing ") for text in shown)
    assert sum(text.startswith("evaluating ") for text in shown) == 5
    assert table(tmp_path / "jobs" / DB_NAME, "SELECT COUNT(*), COUNT(DISTINCT key) FROM results") == [(5, 5)]
    run_study(spec_path, tmp_path / "one", progress=False)
    parallel = dict(table(tmp_path / "jobs" / DB_NAME, "SELECT key, value FROM results"))
    serial = dict(table(tmp_path / "one" / DB_NAME, "SELECT key, value FROM results"))
    assert parallel.keys() == serial.keys()
    for key, value in serial.items():  # thread counts may move the last bits, nothing more
        assert parallel[key] == pytest.approx(value, rel=1e-4)


def test_jobs_below_one_is_refused(tmp_path, tiny_model_dir, texts, capsys):
    spec_path = write_spec(tmp_path / "s.yaml", tiny_model_dir, *texts, sets=1)
    code, _, err = run(["study", "run", str(spec_path), "--out", str(tmp_path / "o"), "--jobs", "0"], capsys)
    assert_one_line_error(code, err, "--jobs")
    assert not (tmp_path / "o").exists()


def test_curated_source_runs_cola_once_per_set_and_shares_the_pool(tmp_path, tiny_model_dir, tiny_encoder_dir, texts):
    train, heldout = texts
    spec_path = write_spec(tmp_path / "s.yaml", tiny_model_dir, train, heldout, sets=2)
    curated = (
        f"  - name: curated\n    sets: 2\n    params: {{sources: ['{train}'], capabilities: ['lm={heldout}'], "
        f"pool_size: 12, embedding_model: '{tiny_encoder_dir}', score_texts: 8, min_tokens: 8, n_init: 2}}\n"
    )
    text = spec_path.read_text()
    spec_path.write_text(text.replace("n: [4]", curated.rstrip("\n") + "\nn: [4]", 1))
    summary = run_study(spec_path, tmp_path / "out", progress=False)
    assert summary.failed == 0 and summary.done == 1 + 2 + 2
    rows = table(tmp_path / "out" / DB_NAME, "SELECT config, set_id FROM cells")
    set_ids = sorted({set_id for config, set_id in rows if json.loads(config)["source"] == "curated"})
    assert len(set_ids) == 2  # k-means seeds seed and seed + 1: two sets, each shared by its cell(s)
    from calibench.data.calibset import CalibrationSet
    from calibench.models import load_tokenizer

    tok = load_tokenizer(str(tiny_model_dir))
    sets = [CalibrationSet.load(tmp_path / "out" / "sets" / i, tokenizer=tok) for i in set_ids]
    assert all(s.manifest.source.name == "curated" and s.input_ids.shape == (4, 32) for s in sets)
    assert sets[0].manifest.parents == sets[1].manifest.parents  # one pool, two selections
    assert sorted(s.manifest.generator["stage3"]["kmeans"]["seed"] for s in sets) == [0, 1]


def test_noise_floor_table_matches_an_independent_computation(tmp_path):
    """Reruns of wiki#0 under two perturbations: the floor is the largest |change|, beside the across-set spread."""
    from calibench.report.frame import load_frame
    from calibench.report.sections import NOISE_HEADING
    from calibench.report.study import write_report
    from calibench.report.tables import AVERAGE, noise_floor_table

    rng = np.random.default_rng(1)
    store = Store(tmp_path)
    values = {}
    cells = [fake_cell("dense", "", 0)] + [fake_cell("wanda", s, i) for s in ("wiki", "code") for i in range(3)]
    reruns = [fake_cell("wanda", "wiki", 0).model_copy(update={"perturbation": p}) for p in ("threads", "eval_batch")]
    for cell in cells + reruns:
        base = values.get(("wiki", 0)) if cell.perturbation else None
        if base is None:
            scores = {"arc_easy": float(rng.uniform(0.3, 0.6)), "ppl:wiki": float(rng.uniform(20, 40))}
        else:  # a rerun moves each number a little
            scores = {t: v + float(rng.normal(0, 0.01 if t == "arc_easy" else 0.3)) for t, v in base.items()}
        if not cell.perturbation:
            values[(cell.source, cell.set_index)] = scores
        else:
            values[(cell.perturbation,)] = scores
        rows = [
            {"task": "arc_easy", "metric": "acc", "value": scores["arc_easy"], "n": 20, "limit": 20},
            {"task": "ppl:wiki", "metric": "perplexity", "value": scores["ppl:wiki"], "n": 8},
        ]
        store.record_success(cell, rows, None, {}, 1.0)
    store.close()
    assert len({c.key for c in cells + reruns}) == len(cells) + 2  # a rerun is its own cell

    report = write_report(tmp_path)
    frame, _, _ = load_frame(tmp_path)
    from calibench.report.tables import accuracy_table, perplexity_table

    grid = frame[frame.perturbation == ""]
    noise = noise_floor_table(frame, accuracy_table(grid), perplexity_table(grid)).set_index("task")
    for task in ("arc_easy", "ppl:wiki", AVERAGE):
        name = "arc_easy" if task == AVERAGE else task  # one accuracy task: the average is that task
        changes = {p: abs(values[(p,)][name] - values[("wiki", 0)][name]) for p in ("threads", "eval_batch")}
        assert noise.loc[task, "noise floor"] == pytest.approx(max(changes.values()))
        assert noise.loc[task, "max change (threads)"] == pytest.approx(changes["threads"])
        stds = [np.std([values[(s, i)][name] for i in range(3)], ddof=1) for s in ("wiki", "code")]
        means = [np.mean([values[(s, i)][name] for i in range(3)]) for s in ("wiki", "code")]
        assert noise.loc[task, "mean std across sets"] == pytest.approx(np.mean(stds))
        assert noise.loc[task, "source gap"] == pytest.approx(max(means) - min(means))
        assert noise.loc[task, "reruns"] == 2
    md = report.markdown.read_text()
    assert NOISE_HEADING in md and "plus 2 noise-floor rerun(s)" in md and "Cells: 7 finished" in md
    assert "noise_floor.png" in {p.name for p in report.plots}
    # the grid's own tables ignore the reruns: wiki keeps 3 sets
    assert "| m | wanda | wiki | 16 | 64 | arc_easy | 3 |" in md


def test_noise_floor_cells_rerun_with_their_perturbation(tmp_path, tiny_model_dir, texts):
    spec_path = write_spec(tmp_path / "s.yaml", tiny_model_dir, *texts, sets=2)
    spec_path.write_text(spec_path.read_text() + "noise_floor: {sets: 1, perturbations: [threads, eval_batch]}\n")
    spec = load_spec(spec_path)
    cells = expand(spec)
    perturbed = [c for c in cells if c.perturbation]
    assert [(c.set_index, c.perturbation) for c in perturbed] == [(0, "threads"), (0, "eval_batch")]
    originals = [c for c in cells if not c.perturbation]
    assert len(originals) == 3 and all(c.key != o.key for c in perturbed for o in originals)
    run_study(spec_path, tmp_path / "out", progress=False)
    records = {
        json.loads(cfg).get("perturbation", ""): json.loads(rec)
        for cfg, rec in table(tmp_path / "out" / DB_NAME, "SELECT config, record FROM cells")
    }
    import torch

    assert records["threads"]["torch_threads"] != torch.get_num_threads()
    assert records["eval_batch"]["eval_batch_size"] == 1 and records[""]["eval_batch_size"] == 8


def test_a_cached_set_swapped_for_another_valid_set_is_refused(tmp_path, tiny_model_dir, texts, capsys):
    import shutil

    from calibench.study.sets import SETS_DIR

    spec_path = write_spec(tmp_path / "s.yaml", tiny_model_dir, *texts, sets=2)
    out = tmp_path / "out"
    run_study(spec_path, out, progress=False)
    first, second = sorted((out / SETS_DIR).iterdir())
    shutil.rmtree(first)
    shutil.copytree(second, first)  # both verify on their own; one sits under the other's id
    code, _, err = run(["study", "run", str(spec_path), "--out", str(out), "--no-report"], capsys)
    assert_one_line_error(code, err, f"holds set {second.name}", "remove")


def test_perplexity_increase_table_and_matrix(tmp_path):
    """The transfer matrix: 100 (ppl / dense - 1) per set, mean and std across sets, one heatmap per method."""
    import pandas as pd

    from calibench.report.plots import plot_perplexity_matrix
    from calibench.report.tables import perplexity_increase_table

    rows = [
        {"model": "m", "method": "dense", "source": "-", "task": t, "metric": "perplexity", "value": v}
        for t, v in (("ppl:de", 40.0), ("ppl:en", 20.0))
    ]
    values = {
        ("de", "ppl:de"): [44.0, 46.0],
        ("de", "ppl:en"): [30.0, 32.0],
        ("en", "ppl:de"): [60.0, 62.0],
        ("en", "ppl:en"): [22.0, 22.0],
    }
    for (source, task), vs in values.items():
        rows += [
            {"model": "m", "method": "wanda", "source": source, "task": task, "metric": "perplexity", "value": v}
            for v in vs
        ]
    table = perplexity_increase_table(pd.DataFrame(rows)).set_index(["source", "task"])
    assert table.loc[("de", "ppl:de"), "increase % mean"] == pytest.approx(12.5)  # (10% + 15%) / 2
    assert table.loc[("de", "ppl:de"), "increase % std"] == pytest.approx(np.std([10.0, 15.0], ddof=1))
    assert table.loc[("en", "ppl:en"), "increase % mean"] == pytest.approx(10.0)
    assert table.loc[("en", "ppl:en"), "increase % std"] == pytest.approx(0.0)
    path = plot_perplexity_matrix(table.reset_index(), tmp_path / "m.png")
    assert path is not None and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_items_parquet_holds_every_item_and_recomputes_the_perplexity(tmp_path):
    """The per-item export is enough to recompute a cell's perplexity without the store."""
    import pandas as pd

    from calibench.report.study import write_report

    rng = np.random.default_rng(1)
    store = Store(tmp_path)
    truth = {}
    for cell in [fake_cell("dense", "", 0), fake_cell("gptq", "wiki", 0), fake_cell("gptq", "code", 1)]:
        windows = [{"window": w, "nll": float(rng.uniform(2, 4)), "tokens": 127} for w in range(5)]
        arc = [{"doc_hash": f"d{i}", "acc": bool(rng.integers(0, 2)), "text": "not kept"} for i in range(4)]
        ppl = float(np.exp(np.mean([w["nll"] for w in windows])))
        truth[cell.key] = ppl
        rows = [{"task": "ppl:wiki", "metric": "perplexity", "value": ppl, "n": 5}]
        store.record_success(cell, rows, None, {}, 1.0, samples={"ppl:wiki": windows, "arc_easy": arc})
    store.close()
    write_report(tmp_path)
    items = pd.read_parquet(tmp_path / "report" / "items.parquet")
    assert len(items) == 3 * (5 + 4) and "text" not in items.columns
    windows = items[items.task == "ppl:wiki"]
    for key, group in windows.groupby("key"):
        assert np.exp(group.nll.mean()) == pytest.approx(truth[key], rel=1e-12)
    assert set(items[items.task == "arc_easy"].acc.unique()) <= {0.0, 1.0}
    assert set(items.method) == {"dense", "gptq"} and set(items.source) == {"-", "wiki", "code"}
