"""Evaluation's per-process caches change no result: a study run with every cache cleared before each cell and
one reusing them store the same numbers, records and per-item samples, bit for bit."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

import calibench.study.executors as executors
from calibench.evaluation import cache
from calibench.study import run_study
from calibench.study.store import DB_NAME
from conftest import corpus_text

pytestmark = [pytest.mark.filterwarnings("ignore"), pytest.mark.usefixtures("one_thread")]

SPEC = """name: cache-parity
models: [{model}]
methods:
  - name: wanda
    params: {{sparsity: 0.5}}
sources:
  - name: {train}
    sets: 1
n: [4]
seq_len: [32]
eval:
  tasks: [ppl:wiki, "ppl:{heldout}", arc_easy, piqa]
  limit: 3
  batch_size: 4
  ppl_seq_len: 64
  ppl_max_windows: 3
  offline: true
"""


def stored(out: Path) -> dict[str, object]:
    """Every stored number and per-item sample, and each cell's record without its timings."""
    with sqlite3.connect(out / DB_NAME) as db:
        results = sorted(db.execute("SELECT key, task, metric, value, stderr, n, limit_ FROM results"))
        samples = sorted(db.execute("SELECT key, task, item, data FROM samples"))
        cells = {key: json.loads(record) for key, record in db.execute("SELECT key, record FROM cells")}
    for record in cells.values():
        record.pop("compression", None)  # wall time and peak memory
        for task in record["evaluation"]["tasks"]:
            task.pop("seconds")
    return {"results": results, "samples": samples, "records": cells}


def test_cached_and_uncached_cells_store_identical_results(tmp_path, offline_assets, tiny_model_dir, heldout_file,
                                                            monkeypatch):  # fmt: skip
    """A tiny model (the caches do not depend on it) on the real tasks: held-out texts of the pack and of a
    file, lm-eval's arc_easy and piqa from the offline mirrors."""
    train = tmp_path / "train.txt"
    train.write_text("\n\n".join(corpus_text(200, seed=0)))
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC.format(model=tiny_model_dir, train=train, heldout=heldout_file))
    original = executors.run_cell

    def cold_cell(*args, **kwargs):
        cache.clear_caches()
        return original(*args, **kwargs)

    monkeypatch.setattr(executors, "run_cell", cold_cell)
    cold = run_study(spec, tmp_path / "cold", progress=False)
    monkeypatch.setattr(executors, "run_cell", original)
    warm = run_study(spec, tmp_path / "warm", progress=False)  # every cell on the caches the cold run left
    assert cold.done == warm.done == 2 and cold.failed == warm.failed == 0

    for reused in (cache.HELDOUT_DOCS, cache.HELDOUT_IDS, cache.MIRROR_DATA, cache.ENV_INFO, cache.LM_TOKENIZERS):
        assert reused.hits > 0, f"{reused.name} was never reused"
    a, b = stored(tmp_path / "cold"), stored(tmp_path / "warm")
    assert len(a["results"]) >= 2 * 3 and len(a["samples"]) > 0
    assert a == b
