"""vLLM evaluation without vLLM: its engine settings reach lm-eval's VLLM arguments from `calibench eval`, from
``evaluate()`` and from a study spec; a study cell hands vLLM a saved compressed-tensors checkpoint; and a machine
without vLLM or a GPU is refused in one line before any work.

Where vLLM itself would load, the ``vllm`` registry entry is swapped (``BACKENDS.temporarily``) for one that
records what it was given and stops there: everything before it (the CLI, settings, the study runner's save) is
the real code path.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from calibench.core.errors import CalibenchError
from calibench.evaluation.backends import BACKENDS, Backend, LmInputs, model_args_string, vllm_model_args
from calibench.evaluation.settings import VLLM_FIELDS, BackendSettings, EvalSettings
from conftest import assert_one_line_error, copa_rows, run

pytestmark = pytest.mark.usefixtures("one_thread")


class Captured(CalibenchError):
    """Raised by the recording backend once it has what vLLM would get."""


@pytest.fixture
def fake_copa_mirror(monkeypatch):
    """Serve copa offline from synthetic rows instead of the data pack."""
    from calibench.evaluation import lmeval
    from calibench.evaluation.mirrors import Mirror

    monkeypatch.setattr(lmeval, "build_mirror", lambda task, root=None: Mirror(
        "copa", {"validation": copa_rows()}, {"validation": "synthetic"}))  # fmt: skip


@pytest.fixture
def recording_vllm():
    """The vllm backend with its engine replaced by a recorder: ``seen`` gets the VLLM arguments and, while the
    directory still exists, what is in it."""
    seen: dict = {}

    def make(inputs: LmInputs):
        seen["args"] = vllm_model_args(inputs)
        path = Path(inputs.path)
        seen["files"] = sorted(p.name for p in path.iterdir())
        seen["config"] = json.loads((path / "config.json").read_text())
        seen["path"] = path
        raise Captured("recorded")

    fake = Backend("vllm", "records lm-eval's VLLM arguments", None, "", "", needs_path=True, needs_torch_model=False,
                   make=make)  # fmt: skip
    with BACKENDS.temporarily("vllm", fake):
        yield seen


# -- one definition ---------------------------------------------------------------------------------------


def test_eval_and_study_share_one_definition_of_the_backend_settings():
    from calibench.study.spec import EvalSpec

    assert issubclass(EvalSettings, BackendSettings) and issubclass(EvalSpec, BackendSettings)
    for name in ("backend", *VLLM_FIELDS):
        assert EvalSettings.model_fields[name].default == EvalSpec.model_fields[name].default
    assert (BackendSettings().tensor_parallel_size, BackendSettings().gpu_memory_utilization) == (1, 0.9)
    # defaults stay out of a cell's key: a study keyed before these settings existed resumes
    assert set(EvalSpec(tasks=["ppl:wiki"]).model_dump()) == {"tasks", "limit", "batch_size", "ppl_seq_len",
                                                              "ppl_max_windows", "offline"}  # fmt: skip


def test_vllm_model_args_carry_the_engine_settings():
    engine = BackendSettings(backend="vllm", tensor_parallel_size=4, gpu_memory_utilization=0.8, max_model_len=4096)
    inputs = LmInputs(None, None, "/ckpt/w4a16", 16, "bfloat16", "cuda", engine=engine)
    args = vllm_model_args(inputs)
    assert args == {"pretrained": "/ckpt/w4a16", "dtype": "bfloat16", "batch_size": 16, "seed": 1234,
                    "tensor_parallel_size": 4, "gpu_memory_utilization": 0.8, "max_model_len": 4096}  # fmt: skip
    expected = "pretrained=/ckpt/w4a16,dtype=bfloat16,batch_size=16,seed=1234,tensor_parallel_size=4,"
    assert model_args_string(args) == expected + "gpu_memory_utilization=0.8,max_model_len=4096"
    # defaults: no max_model_len (vLLM takes the model's), a dtype vLLM has no name for becomes auto
    plain = vllm_model_args(LmInputs(None, None, "/m", 8, "float64", "cuda", engine=BackendSettings(backend="vllm")))
    assert plain["dtype"] == "auto" and "max_model_len" not in plain and plain["tensor_parallel_size"] == 1


# -- the settings reach lm-eval's VLLM: CLI and Python API ----------------------------------------------------


def test_cli_options_reach_the_vllm_model_args(tiny_model_dir, fake_copa_mirror, recording_vllm, capsys):
    code, _, err = run(["eval", "-m", str(tiny_model_dir), "--tasks", "copa", "--offline", "--backend", "vllm",
                        "--tensor-parallel-size", "2", "--gpu-memory-utilization", "0.5", "--max-model-len", "128",
                        "--batch-size", "4"], capsys)  # fmt: skip
    assert_one_line_error(code, err, "recorded")
    assert recording_vllm["args"] == {"pretrained": str(tiny_model_dir), "dtype": "auto", "batch_size": 4,
                                      "seed": 1234, "tensor_parallel_size": 2, "gpu_memory_utilization": 0.5,
                                      "max_model_len": 128}  # fmt: skip


def test_python_settings_reach_the_vllm_model_args(tiny_model_dir, fake_copa_mirror, recording_vllm):
    from calibench.evaluation import evaluate

    settings = EvalSettings(tasks="copa", backend="vllm", tensor_parallel_size=3, gpu_memory_utilization=0.6)
    with pytest.raises(Captured):
        evaluate(str(tiny_model_dir), settings=settings, offline=True, max_model_len=96)  # a keyword overrides
    args = recording_vllm["args"]
    assert (args["tensor_parallel_size"], args["gpu_memory_utilization"], args["max_model_len"]) == (3, 0.6, 96)


# -- refusals, one line, before any work ----------------------------------------------------------------------


def test_vllm_settings_without_the_vllm_backend_are_refused(tiny_model_dir, capsys, tmp_path):
    from calibench.evaluation import evaluate
    from calibench.study.spec import load_spec

    with pytest.raises(CalibenchError, match=r"^tensor_parallel_size: applies to backend vllm only \(the backend "):
        evaluate(str(tiny_model_dir), "ppl:wiki", tensor_parallel_size=2)
    code, _, err = run(["eval", "-m", str(tiny_model_dir), "--tasks", "ppl:wiki", "--max-model-len", "64"], capsys)
    assert_one_line_error(code, err, "--max-model-len: applies to backend vllm only")
    spec = tmp_path / "s.yaml"
    spec.write_text(f"models: [{tiny_model_dir}]\nmethods: [{{name: magnitude}}]\nsources: [{{name: random-vocab}}]\n"
                    "n: [2]\nseq_len: [16]\neval:\n  tasks: [copa]\n  gpu_memory_utilization: 0.5\n")  # fmt: skip
    with pytest.raises(CalibenchError, match=r"s\.yaml:\d+: eval\.gpu_memory_utilization: applies to backend vllm"):
        load_spec(spec)


@pytest.mark.skipif(torch.cuda.is_available(), reason="the refusal of a machine without a GPU")
def test_a_machine_without_a_gpu_is_refused():
    from calibench.evaluation.backends import check_gpu

    with pytest.raises(CalibenchError, match=r"^--backend vllm needs a CUDA GPU and this machine has none"):
        check_gpu(BACKENDS.get("vllm"))
    check_gpu(BACKENDS.get("hf"))  # the HF backend runs anywhere


def _spec(model_dir: Path, **change):
    from calibench.study.spec import StudySpec

    grid = {"models": [str(model_dir)], "methods": [{"name": "rtn"}], "sources": [{"name": "random-vocab"}],
            "n": [2], "seq_len": [16], "device": "cpu",
            "eval": {"tasks": ["copa"], "offline": True, "backend": "vllm", "tensor_parallel_size": 2,
                     "gpu_memory_utilization": 0.5, "max_model_len": 64}}  # fmt: skip
    grid.update(change)
    return StudySpec.model_validate(grid)


@pytest.mark.skipif(torch.cuda.is_available(), reason="the refusal of a machine without vLLM or a GPU")
def test_study_preflight_refuses_vllm_here(tiny_model_dir):
    from calibench.study.preflight import check_vllm

    with pytest.raises(CalibenchError, match=r"^eval\.backend vllm runs on CUDA GPUs and the study's device is cpu"):
        check_vllm(_spec(tiny_model_dir))
    with pytest.raises(CalibenchError, match=r"^eval\.backend vllm needs vLLM: pip install vllm"):
        check_vllm(_spec(tiny_model_dir, device="auto"))
    with BACKENDS.temporarily("vllm", Backend("vllm", "", None, "", "", True, False, lambda _: None, needs_gpu=True)):
        with pytest.raises(CalibenchError, match=r"^eval\.backend vllm needs a CUDA GPU and this machine has none"):
            check_vllm(_spec(tiny_model_dir, device="auto"))
    check_vllm(_spec(tiny_model_dir, device="auto"), executor="ray")  # Ray workers check their own


# -- a study cell hands vLLM its saved compressed-tensors checkpoint ----------------------------------------------


def test_a_study_cell_hands_vllm_its_saved_compressed_checkpoint(tiny_model_dir, tiny_text_set, fake_copa_mirror,
                                                                  recording_vllm):  # fmt: skip
    from calibench.study.cells import expand
    from calibench.study.runner import run_cell

    cell = next(c for c in expand(_spec(tiny_model_dir)) if not c.is_dense)
    with pytest.raises(Captured):
        run_cell(cell, tiny_text_set)
    seen = recording_vllm
    assert seen["args"]["pretrained"] == str(seen["path"])
    assert (seen["args"]["tensor_parallel_size"], seen["args"]["gpu_memory_utilization"],
            seen["args"]["max_model_len"]) == (2, 0.5, 64)  # fmt: skip
    # a compressed-tensors checkpoint (the weights were not folded back to plain floats), with its tokenizer
    quant = seen["config"]["quantization_config"]
    assert quant["quant_method"] == "compressed-tensors" and quant["format"] == "pack-quantized"
    assert {"config.json", "model.safetensors", "calibench.json", "tokenizer.json"} <= set(seen["files"])
    assert not seen["path"].exists()  # removed once the evaluation is over, also when it failed


def test_the_checkpoint_holds_the_compressed_weights(tiny_model_dir, tiny_text_set, tiny_tokenizer):
    """What vLLM would load is the model the cell compressed: decompressed, the same weights."""
    from safetensors import safe_open
    from transformers import AutoModelForCausalLM

    from calibench.compress import compress
    from calibench.compress.fold import fold_weight_quantization
    from calibench.study.cells import expand
    from calibench.study.runner import vllm_checkpoint
    from conftest import fresh_model

    cells = expand(_spec(tiny_model_dir))
    dense = next(c for c in cells if c.is_dense)
    record: dict = {}
    with vllm_checkpoint(dense, None, tiny_tokenizer, record) as path:
        assert path == Path(tiny_model_dir)  # the dense cell's own checkpoint, nothing written
    assert Path(tiny_model_dir).is_dir()
    model = fresh_model(tiny_model_dir)
    result = compress(model, tiny_text_set, "rtn", tokenizer=tiny_tokenizer, seed=0)
    cell = next(c for c in cells if not c.is_dense)
    record = {"compression": result.record}
    with vllm_checkpoint(cell, model, tiny_tokenizer, record) as path:
        assert json.loads((path / "config.json").read_text())["quantization_config"]["format"] == "pack-quantized"
        loaded = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
        saved = path
        with safe_open(str(path / "model.safetensors"), "pt") as f:
            stored = list(f.keys())  # packed 4-bit weights, not plain floats
    assert not saved.exists() and record["eval_checkpoint"].startswith("compressed-tensors")
    ids = torch.as_tensor(tiny_text_set.input_ids[:2]).long()
    with torch.no_grad():
        expected = model(ids).logits  # the fake-quantized model the cell compressed
        fold_weight_quantization(model)
        torch.testing.assert_close(model(ids).logits, expected)  # folding is exact: the HF path's model
        torch.testing.assert_close(loaded(ids).logits, expected, atol=1e-4, rtol=1e-4)
    assert len([k for k in stored if k.endswith("weight_packed")]) == 7 * loaded.config.num_hidden_layers
