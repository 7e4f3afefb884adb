"""The compressed-tensors preset schemes as methods: checkpoints, reloads, and refusals before any work."""

from __future__ import annotations

import json

import pytest
import torch

from calibench.compress import METHODS, RECORD_FILE, compress
from calibench.compress.methods import DEFAULT_IGNORE, make_params
from calibench.compress.metrics import effective_weight
from calibench.compress.presets import PRESETS, Preset, check_scheme_runnable
from calibench.compress.validate import target_linears
from calibench.core.errors import CalibenchError
from conftest import assert_one_line_error, fresh_model, model_weights, run

pytestmark = pytest.mark.filterwarnings("ignore")

# What each deployed scheme must look like in the saved config.json, written out from the compressed-tensors
# documentation of the presets (not read from calibench's table, so a wrong table entry fails here):
# format, weights (bits, type, strategy, group size, symmetric), input activations (bits, type, strategy, dynamic).
EXPECTED = {
    "w4a16": ("pack-quantized", (4, "int", "group", 128, True), None),
    "w4a16-asym": ("pack-quantized", (4, "int", "group", 128, False), None),
    "w8a16": ("pack-quantized", (8, "int", "group", 128, True), None),
    "w8a8": ("int-quantized", (8, "int", "channel", None, True), (8, "int", "token", True)),
    "fp8": ("float-quantized", (8, "float", "tensor", None, True), (8, "float", "tensor", False)),
    "fp8-dynamic": ("float-quantized", (8, "float", "channel", None, True), (8, "float", "token", True)),
    "nvfp4a16": ("nvfp4-pack-quantized", (4, "float", "tensor_group", 16, True), None),
    "nvfp4": ("nvfp4-pack-quantized", (4, "float", "tensor_group", 16, True), (4, "float", "tensor_group", "local")),
}

# every preset in float32 where it runs, and each modifier path (GPTQ, observers, FP4) once in bfloat16
RUNS = [(name, torch.float32) for name, p in PRESETS.items() if "float32" in p.dtypes] + [
    ("w4a16", torch.bfloat16),
    ("fp8", torch.bfloat16),
    ("nvfp4a16", torch.bfloat16),
    ("nvfp4", torch.bfloat16),
]


@pytest.fixture(scope="module")
def calib(tiny_text_set):
    return tiny_text_set


# ----------------------------------------------------------------- the table


def test_every_preset_is_a_registered_method_that_matches_the_library():
    from compressed_tensors.quantization.quant_scheme import PRESET_SCHEMES

    assert set(EXPECTED) == set(PRESETS)
    for name, preset in PRESETS.items():
        method = METHODS.get(name)
        assert method.preset is preset and method.kind == "quantization"
        assert preset.scheme in PRESET_SCHEMES
        assert preset.bits == preset.quantization_scheme().weights.num_bits
        (modifier,) = method.build(make_params([method]), DEFAULT_IGNORE)
        assert type(modifier).__name__ == preset.modifier
        # the table's "reads calibration data" is what llm-compressor decides for the modifier it builds
        assert modifier.requires_calibration_data == preset.reads_calibration == method.reads_calibration, name


@pytest.mark.parametrize("name,dtype", RUNS, ids=[f"{n}-{str(d)[6:]}" for n, d in RUNS])
def test_preset_saves_the_deployed_checkpoint_and_reloads_to_the_same_logits(
    tiny_model_dir, tiny_tokenizer, calib, tmp_path, name, dtype
):
    from transformers import AutoModelForCausalLM

    ids, _ = calib.to_torch()
    dense = fresh_model(tiny_model_dir, dtype)
    with torch.no_grad():
        dense_logits = dense(ids[:3]).logits
    result = compress(dense, calib, name, tokenizer=tiny_tokenizer)
    with torch.no_grad():
        logits = result.model(ids[:3]).logits
    assert not torch.equal(logits, dense_logits)  # something was quantized
    fmt, weights, activations = EXPECTED[name]
    if weights[1] == "int":  # integer codes: at most 2^bits distinct values per group (or per row, per-channel)
        bits, _, _, group_size, _ = weights
        for module in target_linears(result.model).values():
            groups = effective_weight(module).reshape(module.out_features, -1, group_size or module.in_features)
            assert max(len(torch.unique(g)) for row in groups[::17] for g in row) <= 2**bits
    result.save(tmp_path / "ckpt", tiny_tokenizer)

    config = json.loads((tmp_path / "ckpt" / "config.json").read_text())["quantization_config"]
    assert config["quant_method"] == "compressed-tensors" and config["format"] == fmt
    (group,) = config["config_groups"].values()
    w = group["weights"]
    assert (w["num_bits"], w["type"], w["strategy"], w["group_size"], w["symmetric"]) == weights
    a = group["input_activations"]
    assert (None if a is None else (a["num_bits"], a["type"], a["strategy"], a["dynamic"])) == activations
    assert any("lm_head" in pattern for pattern in config["ignore"])

    record = json.loads((tmp_path / "ckpt" / RECORD_FILE).read_text())
    preset = PRESETS.get(name)
    assert record["method"] == name and record["scheme"] == preset.scheme
    assert record["modifiers"] == [preset.modifier] and record["checkpoint_format"] == config["format"]
    assert record["dtype"] == str(dtype).removeprefix("torch.") and record["device"] == "cpu"
    assert record["params"] == ({"actorder": True, "dampening": 0.01} if preset.modifier == "GPTQModifier" else {})
    # what the record says was achieved: few weights rounded to zero, and the code width plus the scales' overhead
    done = record["achieved"]
    assert done["sparsity"] < 0.3 and done["quantized_layers"] == done["target_layers"]
    if fmt == "nvfp4-pack-quantized":  # 4-bit codes + a float8 scale per 16 weights
        assert done["bits_per_weight"] == pytest.approx(4.5)
    else:
        assert w["num_bits"] < done["bits_per_weight"] <= w["num_bits"] + 1

    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "ckpt").eval()
    assert next(reloaded.parameters()).dtype == dtype
    with torch.no_grad():
        torch.testing.assert_close(reloaded(ids[:3]).logits, logits, rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------- refusals before any work


@pytest.mark.parametrize("name", [n for n, p in PRESETS.items() if "float32" not in p.dtypes])
def test_a_preset_that_cannot_run_in_float32_is_refused_before_any_work(tiny_model_dir, tiny_tokenizer, calib, name):
    model = fresh_model(tiny_model_dir)
    before = model_weights(model)
    with pytest.raises(
        CalibenchError, match=f"^{name} cannot run in float32 .*: use --dtype bfloat16, or choose w4a16$"
    ):
        compress(model, calib, name, tokenizer=tiny_tokenizer)
    after = model_weights(model)
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not any(hasattr(m, "quantization_scheme") for m in model.modules())


def test_the_float32_nvfp4_refusal_is_still_needed(tiny_model_dir, calib, tiny_tokenizer, tmp_path):
    """What the refusal guards against: a float32 NVFP4 checkpoint that does not run once reloaded.

    When compressed-tensors decompresses FP4 into the model's dtype, this fails: allow float32 in the table.
    """
    from transformers import AutoModelForCausalLM

    from calibench.compress.api import _run_stage

    model = fresh_model(tiny_model_dir)
    method = METHODS.get("nvfp4a16")
    _run_stage(model, calib, method.build(make_params([method]), DEFAULT_IGNORE), 0, tiny_tokenizer)
    model.save_pretrained(tmp_path / "ckpt", save_compressed=True)
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "ckpt").eval()
    ids, _ = calib.to_torch()
    with pytest.raises(RuntimeError, match="same dtype"), torch.no_grad():
        reloaded(ids[:1])


def test_a_preset_that_needs_a_gpu_is_refused_on_cpu_only():
    gpu_only = Preset(
        "fancy",
        "NVFP4",
        "QuantizationModifier",
        "nvfp4-pack-quantized",
        4,
        "test entry",
        False,
        cpu=False,
        cpu_reason="its kernels are CUDA-only",
    )
    with pytest.raises(
        CalibenchError,
        match=r"^the NVFP4 scheme needs a CUDA GPU \(its kernels are CUDA-only\): "
        r"run on a GPU \(--device cuda\)",
    ):
        check_scheme_runnable([gpu_only], torch.float32, torch.device("cpu"))
    check_scheme_runnable([gpu_only], torch.float32, "cuda:0")  # only the device type is read
    check_scheme_runnable(
        [METHODS.get("gptq"), METHODS.get("w4a16")], torch.float16, "cpu"
    )  # no preset, or one that runs


def test_a_grouped_preset_that_does_not_divide_the_model_is_refused_in_one_line(tmp_path, calib, tiny_tokenizer):
    from transformers import LlamaForCausalLM

    from conftest import tiny_llama_config

    model = LlamaForCausalLM(tiny_llama_config(tiny_tokenizer, hidden=96)).eval()  # like SmolLM2's 576
    with pytest.raises(
        CalibenchError,
        match=r"^w4a16 quantizes weights in groups of 128, which does not divide the "
        r"input dimension\(s\) \[96, 192\] .*use gptq --group-size 32",
    ):
        compress(model, calib, "w4a16", tokenizer=tiny_tokenizer)


def test_preset_parameters_are_the_modifiers_own(tiny_model_dir, calib, tiny_tokenizer):
    model = fresh_model(tiny_model_dir)
    with pytest.raises(CalibenchError, match="w4a16 does not use bits, group_size"):
        compress(model, calib, "w4a16", tokenizer=tiny_tokenizer, bits=8, group_size=64)
    with pytest.raises(CalibenchError, match="fp8-dynamic does not use dampening .*no parameters"):
        compress(model, calib, "fp8-dynamic", tokenizer=tiny_tokenizer, dampening=0.1)


# ----------------------------------------------------------------- CLI


def test_compress_help_lists_every_registered_method(capsys):
    from calibench.cli.compress_cmd import METHOD_HELP

    assert all(name in METHOD_HELP.replace(",", " ").replace(";", " ").split() for name in METHODS)
    code, out, err = run(["compress", "--help"], capsys)
    assert code == 0, err
    for option in ("--method", "--recipe", "--dtype", "--device", "nvfp4"):
        assert option in out


def test_cli_runs_a_preset_in_the_dtype_asked_for(tmp_path, tiny_model_dir, calib, capsys):
    calib.save(tmp_path / "set")
    out = tmp_path / "ckpt"
    code, stdout, err = run(
        [
            "compress",
            "-m",
            str(tiny_model_dir),
            "-c",
            str(tmp_path / "set"),
            "--method",
            "nvfp4a16",
            "--dtype",
            "bfloat16",
            "--device",
            "cpu",
            "-o",
            str(out),
        ],
        capsys,
    )
    assert code == 0, err
    record = json.loads((out / RECORD_FILE).read_text())
    assert record["dtype"] == "bfloat16" and record["scheme"] == "NVFP4A16" and "bfloat16, cpu" in stdout
    assert json.loads((out / "config.json").read_text())["quantization_config"]["format"] == "nvfp4-pack-quantized"


def test_cli_errors_before_loading_anything(tmp_path, tiny_model_dir, calib, capsys):
    calib.save(tmp_path / "set")
    (tmp_path / "r.yaml").write_text(
        "quant_stage:\n  quant_modifiers:\n    QuantizationModifier: {scheme: FP8_DYNAMIC}\n"
    )
    cases = [
        ([], "give exactly one of --method NAME and --recipe FILE.yaml"),
        (["--method", "w4a16", "--recipe", str(tmp_path / "r.yaml")], "give exactly one of --method"),
        (["--method", "nvfp4"], "nvfp4 cannot run in float32"),  # auto on CPU is float32
        (["--method", "nvfp4", "--dtype", "float16"], "use --dtype bfloat16"),
        (["--method", "w4a16", "--dtype", "float8"], "Invalid value for '--dtype': 'float8' is not one of"),
        (["--method", "w4a16", "--device", "tpu"], "invalid device 'tpu'"),
        (["--method", "w4a16", "--bits", "8"], "w4a16 does not use bits"),
        (["--recipe", str(tmp_path / "r.yaml"), "--bits", "8"], "--recipe sets its own parameters: drop --bits"),
        (["--recipe", str(tmp_path / "missing.yaml")], "no such recipe file"),
    ]
    if not torch.cuda.is_available():
        cases.append((["--method", "w4a16", "--device", "cuda"], "asked for a CUDA GPU, but this machine has none"))
    for extra, fragment in cases:
        args = ["compress", "-m", str(tiny_model_dir), "-c", str(tmp_path / "set"), "-o", str(tmp_path / "bad")]
        code, _, err = run(args + extra, capsys)
        assert_one_line_error(code, err, fragment)
        assert not (tmp_path / "bad").exists()


def test_cli_checks_the_scheme_before_the_model_is_loaded(tmp_path, calib, capsys):
    """A model directory that would fail to load: the scheme refusal must come first."""
    from conftest import make_tokenizer, tiny_llama_config

    broken = tmp_path / "broken"
    tokenizer = make_tokenizer()
    tokenizer.save_pretrained(broken)
    tiny_llama_config(tokenizer).save_pretrained(broken)  # a config and no weights
    calib.save(tmp_path / "set")
    code, _, err = run(
        ["compress", "-m", str(broken), "-c", str(tmp_path / "set"), "--method", "nvfp4", "-o", str(tmp_path / "out")],
        capsys,
    )
    assert_one_line_error(code, err, "nvfp4 cannot run in float32")
