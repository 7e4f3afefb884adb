"""Dtype and device handling, and study cells that get fresh models without a deep copy of a base model."""

from __future__ import annotations

import copy
import sqlite3

import pytest
import test_study
import torch
from test_study import write_spec

from calibench.core.errors import CalibenchError
from calibench.models import checkpoint_dtype, load_model, resolve_device, resolve_dtype
from calibench.study import load_spec, run_study
from calibench.study.cells import expand
from calibench.study.store import DB_NAME
from conftest import assert_one_line_error, run

pytestmark = pytest.mark.filterwarnings("ignore")
texts = test_study.texts  # the study suite's fixture, re-used here
NO_CUDA = not torch.cuda.is_available()


# ----------------------------------------------------------------- dtype and device


def test_auto_dtype_is_float32_on_cpu_and_the_checkpoint_dtype_on_a_gpu(tiny_model_dir, monkeypatch):
    import json

    config = json.loads((tiny_model_dir / "config.json").read_text())
    assert checkpoint_dtype(tiny_model_dir) == getattr(
        torch, config.get("dtype") or config.get("torch_dtype") or "float32"
    )
    assert resolve_dtype("auto", "cpu", tiny_model_dir) == torch.float32
    assert resolve_dtype("bfloat16", "cpu", tiny_model_dir) == torch.bfloat16
    # on a GPU machine auto follows the checkpoint: simulate one for the resolution alone
    monkeypatch.setattr("calibench.models.resolve_device", lambda device: torch.device("cuda", 0))
    monkeypatch.setattr("calibench.models.checkpoint_dtype", lambda spec: torch.bfloat16)
    assert resolve_dtype("auto", "cuda", tiny_model_dir) == torch.bfloat16


@pytest.mark.skipif(not NO_CUDA, reason="checks the CPU-only message")
@pytest.mark.parametrize("device", ["cuda", "cuda:0", "cuda:3"])
def test_a_cuda_device_on_a_machine_without_one_is_one_line(device):
    with pytest.raises(CalibenchError, match="asked for a CUDA GPU, but this machine has none"):
        resolve_device(device)


@pytest.mark.parametrize("device", ["gpu", "cuda:x", "tpu"])
def test_an_invalid_device_is_refused(device):
    with pytest.raises(CalibenchError, match="device"):
        resolve_device(device)


def test_bfloat16_load_then_compress_and_evaluate(tiny_model_dir, tiny_tokenizer, tmp_path):
    """The bf16 path end to end: weights load as bf16 (no float32 on the way), Wanda prunes them in bf16,
    the checkpoint saves and reloads in bf16, and perplexity is finite and close to the float32 run's."""
    from transformers import AutoModelForCausalLM

    from calibench.compress import compress
    from calibench.data.builders import build_sets
    from calibench.evaluation import evaluate
    from conftest import corpus_text

    train, heldout = tmp_path / "train.txt", tmp_path / "heldout.txt"
    train.write_text("\n\n".join(corpus_text(200, seed=0)))
    heldout.write_text("\n\n".join(corpus_text(60, seed=7)))
    calib = build_sets(str(train), tokenizer=tiny_tokenizer, n=4, seq_len=32, seed=0)[0]
    ppl = {}
    for dtype in ("bfloat16", "float32"):
        model = load_model(tiny_model_dir, dtype=dtype, device="cpu")
        assert all(p.dtype == getattr(torch, dtype) for p in model.parameters())
        result = compress(model, calib, "wanda", tokenizer=tiny_tokenizer, sparsity=0.5)
        assert model.dtype == getattr(torch, dtype) and abs(result.record["achieved"]["sparsity"] - 0.5) < 0.02
        if dtype == "bfloat16":
            out = result.save(tmp_path / "ckpt", tiny_tokenizer)
            reloaded = AutoModelForCausalLM.from_pretrained(out, dtype="auto")
            assert reloaded.dtype == torch.bfloat16
            weights = dict(model.named_parameters())
            for name, param in reloaded.named_parameters():
                assert torch.equal(param, weights[name]), name
        evaluation = evaluate(model, f"ppl:{heldout}", tokenizer=tiny_tokenizer, seq_len=32, max_windows=4)
        ppl[dtype] = evaluation.rows[0].value
    assert ppl["bfloat16"] == pytest.approx(ppl["float32"], rel=0.05)


# ----------------------------------------------------------------- study cells


def _rows(db):
    with sqlite3.connect(db) as con:
        return sorted(con.execute("SELECT key, task, metric, value FROM results").fetchall())


def test_study_cells_reload_instead_of_deep_copying_and_match_a_direct_run(
    tmp_path, tiny_model_dir, tiny_tokenizer, texts, monkeypatch
):
    """No cell deep-copies a model, and each cell's numbers equal compress+evaluate on a freshly loaded model."""
    from calibench.compress import compress
    from calibench.compress.fold import fold_weight_quantization
    from calibench.evaluation import evaluate

    real_deepcopy = copy.deepcopy

    def no_model_copies(obj, *args, **kwargs):
        assert not isinstance(obj, torch.nn.Module), "a cell deep-copied a model"
        return real_deepcopy(obj, *args, **kwargs)

    monkeypatch.setattr(copy, "deepcopy", no_model_copies)
    spec_path = write_spec(tmp_path / "s.yaml", tiny_model_dir, *texts, sets=2, methods="wanda")
    done = run_study(spec_path, tmp_path / "study", progress=False)
    assert (done.done, done.failed) == (3, 0)
    monkeypatch.setattr(copy, "deepcopy", real_deepcopy)

    from calibench.data.calibset import CalibrationSet

    stored = {(key, task, metric): value for key, task, metric, value in _rows(tmp_path / "study" / DB_NAME)}
    spec = load_spec(spec_path)
    train, heldout = texts
    with sqlite3.connect(tmp_path / "study" / DB_NAME) as con:
        set_ids = dict(con.execute("SELECT key, set_id FROM cells").fetchall())
    for cell in expand(spec):
        model = load_model(tiny_model_dir, dtype="float32", device="cpu")
        if not cell.is_dense:
            calib = CalibrationSet.load(tmp_path / "study" / "sets" / set_ids[cell.key])
            compress(model, calib, "wanda", tokenizer=tiny_tokenizer, seed=cell.seed, sparsity=0.5)
            fold_weight_quantization(model)
        direct = evaluate(model, f"ppl:{heldout}", tokenizer=tiny_tokenizer, seq_len=32, max_windows=4).rows[0]
        assert stored[(cell.key, f"ppl:{heldout}", "perplexity")] == direct.value


def test_study_stores_per_item_results_that_pair_across_cells(tmp_path, tiny_model_dir, texts):
    import math

    from calibench.study.store import Store

    spec_path = write_spec(tmp_path / "s.yaml", tiny_model_dir, *texts, sets=2, methods="wanda")
    run_study(spec_path, tmp_path / "study", progress=False)
    store = Store(tmp_path / "study")
    task = f"ppl:{texts[1]}"
    samples = store.samples(task)
    values = {row["key"]: row["value"] for row in store.rows() if row["task"] == task}
    store.close()
    assert set(k for k, _ in samples) == set(values) and len(values) == 3
    ids = {tuple(sorted(items)) for items in samples.values()}
    assert ids == {("window:0", "window:1", "window:2", "window:3")}  # the same items in every cell: pairable
    for (key, _), items in samples.items():
        mean_nll = sum(item["nll"] for item in items.values()) / len(items)
        assert math.exp(mean_nll) == pytest.approx(values[key], rel=1e-9)


def test_spec_dtype_reaches_the_cells_and_keeps_default_keys(tmp_path, tiny_model_dir, texts):
    spec_path = write_spec(tmp_path / "s.yaml", tiny_model_dir, *texts, sets=1)
    default_keys = [c.key for c in expand(load_spec(spec_path))]
    spec_path.write_text(spec_path.read_text() + "device: cpu\noffload: true\n")
    assert [c.key for c in expand(load_spec(spec_path))] == default_keys  # where cells run is not what they are
    spec_path.write_text(spec_path.read_text() + "dtype: bfloat16\n")
    spec = load_spec(spec_path)
    assert all(c.dtype == "bfloat16" for c in expand(spec))
    assert [c.key for c in expand(spec)] != default_keys  # a dtype is
    done = run_study(spec, tmp_path / "study", progress=False)
    assert (done.done, done.failed) == (2, 0)
    import json

    with sqlite3.connect(tmp_path / "study" / DB_NAME) as con:
        records = [json.loads(r) for (r,) in con.execute("SELECT record FROM cells WHERE status = 'done'")]
    assert {r["dtype"] for r in records} == {"bfloat16"} and {r["device"] for r in records} == {"cpu"}


@pytest.mark.parametrize(
    "line,fragment", [("dtype: float8", "unknown dtype 'float8'"), ("device: gpu0", "invalid device 'gpu0'")]
)
def test_bad_runtime_fields_name_the_line(tmp_path, tiny_model_dir, texts, capsys, line, fragment):
    spec_path = write_spec(tmp_path / "s.yaml", tiny_model_dir, *texts, sets=1)
    spec_path.write_text(spec_path.read_text() + line + "\n")
    code, _, err = run(["study", "run", str(spec_path), "--out", str(tmp_path / "out")], capsys)
    assert_one_line_error(code, err, fragment, "s.yaml:")
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(not NO_CUDA, reason="checks the CPU-only message")
def test_a_cuda_study_on_a_cpu_machine_fails_before_any_work(tmp_path, tiny_model_dir, texts, capsys):
    spec_path = write_spec(tmp_path / "s.yaml", tiny_model_dir, *texts, sets=1)
    spec_path.write_text(spec_path.read_text() + "device: cuda\n")
    code, _, err = run(["study", "run", str(spec_path), "--out", str(tmp_path / "out")], capsys)
    assert_one_line_error(code, err, "has none")
    assert not (tmp_path / "out").exists()


def test_ray_shares_give_each_task_a_gpu_and_its_cores():
    from calibench.study.executors import ray_shares

    assert ray_shares({"CPU": 16, "GPU": 4}, "auto") == {"num_gpus": 1, "num_cpus": 4}
    assert ray_shares({"CPU": 16, "GPU": 4}, "cpu") == {"num_gpus": 0, "num_cpus": 1}
    assert ray_shares({"CPU": 2}, "auto") == {"num_gpus": 0, "num_cpus": 1}
    with pytest.raises(CalibenchError, match="no GPU"):
        ray_shares({"CPU": 8}, "cuda")
