"""``--recipe FILE.yaml``: any llm-compressor recipe, run with a calibench calibration set."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch

from calibench.compress import RECORD_FILE, compress
from calibench.compress.recipe_file import load_recipe
from calibench.core.errors import CalibenchError
from conftest import assert_one_line_error, fresh_model, model_weights, run

pytestmark = pytest.mark.filterwarnings("ignore")

# The built-in gptq method's settings, spelled in llm-compressor's recipe format: W4 symmetric groups of 128,
# lm_head left dense by the same regex, dampening 0.01, static activation order.
GPTQ_RECIPE = r"""
quant_stage:
  quant_modifiers:
    GPTQModifier:
      ignore: ['re:(^|.*\.)lm_head\.?$']
      dampening_frac: 0.01
      actorder: static
      config_groups:
        group_0:
          targets: [Linear]
          weights: {num_bits: 4, type: int, symmetric: true, strategy: group, group_size: 128}
"""

FP8_DYNAMIC_RECIPE = r"""
quant_stage:
  quant_modifiers:
    QuantizationModifier:
      scheme: FP8_DYNAMIC
      targets: [Linear]
      ignore: ['re:(^|.*\.)lm_head\.?$']
"""


@pytest.fixture(scope="module")
def calib(tiny_text_set):
    return tiny_text_set


def write(tmp_path, text, name="recipe.yaml"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("text,method", [(GPTQ_RECIPE, "gptq"), (FP8_DYNAMIC_RECIPE, "fp8-dynamic")])
def test_a_recipe_with_a_methods_settings_gives_exactly_its_weights(
    tiny_model_dir, tiny_tokenizer, calib, tmp_path, text, method
):
    path = write(tmp_path, text)
    by_recipe = compress(fresh_model(tiny_model_dir), calib, recipe=path, tokenizer=tiny_tokenizer, seed=3)
    by_method = compress(fresh_model(tiny_model_dir), calib, method, tokenizer=tiny_tokenizer, seed=3)
    ours, theirs = model_weights(by_recipe.model), model_weights(by_method.model)
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)
    from calibench.compress.metrics import effective_weight

    # and the weights are quantized (FP8 keeps float weights plus scales: compare what the module computes with)
    dense = fresh_model(tiny_model_dir).model.layers[0].mlp.up_proj.weight
    assert not torch.equal(effective_weight(by_recipe.model.model.layers[0].mlp.up_proj), dense)
    assert by_recipe.record["modifiers"] == by_method.record["modifiers"]


def test_the_record_keeps_the_recipe_in_full(tiny_model_dir, tiny_tokenizer, calib, tmp_path):
    path = write(tmp_path, FP8_DYNAMIC_RECIPE)
    result = compress(fresh_model(tiny_model_dir), calib, recipe=path, tokenizer=tiny_tokenizer)
    result.save(tmp_path / "ckpt", tiny_tokenizer)
    path.write_text("changed after the run\n")  # the record must not depend on the file staying put
    record = json.loads((tmp_path / "ckpt" / RECORD_FILE).read_text())
    assert record["method"] == "recipe" and record["params"] == {}
    assert record["recipe"]["text"] == FP8_DYNAMIC_RECIPE
    assert record["recipe"]["sha256"] == hashlib.sha256(FP8_DYNAMIC_RECIPE.encode()).hexdigest()
    assert record["modifiers"] == ["QuantizationModifier"] and record["scheme"] == "FP8_DYNAMIC"
    assert record["calibration_set"]["tokens_sha256"] == calib.sha256
    config = json.loads((tmp_path / "ckpt" / "config.json").read_text())
    assert config["quantization_config"]["format"] == record["checkpoint_format"] == "float-quantized"


BAD = [
    ("missing", None, "no such recipe file"),
    ("yaml", "quant_stage:\n  quant_modifiers: [unclosed\n", "not valid YAML at line"),
    ("list", "- GPTQModifier\n", "expected a mapping like NAME_stage"),
    ("empty", "quant:\n  GPTQModifier: {}\n", "no modifiers found"),
    ("args", "quant_stage:\n  quant_modifiers:\n    GPTQModifier: W4A16\n", "must be a mapping of arguments"),
    (
        "unknown",
        "quant_stage:\n  quant_modifiers:\n    GPTQModifer: {scheme: W4A16}\n",
        "No modifier of type 'GPTQModifer' found",
    ),
    (
        "extra",
        "quant_stage:\n  quant_modifiers:\n    GPTQModifier: {scheme: W4A16, dampening: 0.1}\n",
        "GPTQModifier: dampening: Extra inputs are not permitted",
    ),
    (
        "scheme",
        "quant_stage:\n  quant_modifiers:\n    QuantizationModifier: {scheme: W5A5, targets: [Linear]}\n",
        "must either be a preset scheme name",
    ),
]


@pytest.mark.parametrize("case,text,message", BAD, ids=[b[0] for b in BAD])
def test_a_bad_recipe_is_one_line_naming_the_file_before_the_model_loads(tmp_path, calib, case, text, message):
    path = tmp_path / "bad.yaml" if text is None else write(tmp_path, text, "bad.yaml")
    with pytest.raises(CalibenchError) as info:
        load_recipe(path)
    line = str(info.value)
    assert message in line and str(tmp_path / "bad.yaml") in line and "\n" not in line
    # a model spec that cannot load: the recipe's error must come first
    with pytest.raises(CalibenchError, match=message.replace("(", r"\(").replace("[", r"\[")):
        compress(str(tmp_path / "no-model-here"), calib, recipe=path)


def test_recipe_and_method_are_exclusive_and_a_recipe_takes_no_parameters(tiny_model_dir, calib, tmp_path):
    path = write(tmp_path, FP8_DYNAMIC_RECIPE)
    model = fresh_model(tiny_model_dir)
    with pytest.raises(CalibenchError, match="not both"):
        compress(model, calib, "gptq", recipe=path)
    with pytest.raises(CalibenchError, match="not neither"):
        compress(model, calib)
    with pytest.raises(CalibenchError, match="drop bits"):
        compress(model, calib, recipe=path, bits=4)


def test_a_recipe_scheme_gets_the_same_dtype_check(tiny_model_dir, calib, tiny_tokenizer, tmp_path):
    path = write(
        tmp_path, "quant_stage:\n  quant_modifiers:\n    QuantizationModifier: {scheme: NVFP4A16, targets: [Linear]}\n"
    )
    model = fresh_model(tiny_model_dir)
    with pytest.raises(CalibenchError, match="^the NVFP4A16 scheme cannot run in float32 .*use --dtype bfloat16"):
        compress(model, calib, recipe=path, tokenizer=tiny_tokenizer)
    assert not any(hasattr(m, "quantization_scheme") for m in model.modules())


def test_llm_compressor_refusing_the_recipe_at_run_time_is_one_line(tmp_path, calib, tiny_tokenizer):
    from transformers import LlamaForCausalLM

    from conftest import tiny_llama_config

    LlamaForCausalLM(tiny_llama_config(tiny_tokenizer, hidden=96)).save_pretrained(tmp_path / "m")  # 96: not x128
    model = LlamaForCausalLM.from_pretrained(tmp_path / "m").eval()
    path = write(
        tmp_path,
        "quant_stage:\n  quant_modifiers:\n    GPTQModifier: {scheme: W4A16, targets: [Linear], ignore: [lm_head]}\n",
    )
    with pytest.raises(CalibenchError, match="failed in llm-compressor: .*not divisible by group_size") as info:
        compress(model, calib, recipe=path, tokenizer=tiny_tokenizer)
    assert "\n" not in str(info.value)


def test_cli_compresses_with_a_recipe(tmp_path, tiny_model_dir, calib, capsys):
    calib.save(tmp_path / "set")
    path = write(tmp_path, FP8_DYNAMIC_RECIPE)
    out = tmp_path / "ckpt"
    code, stdout, err = run(
        ["compress", "-m", str(tiny_model_dir), "-c", str(tmp_path / "set"), "--recipe", str(path), "-o", str(out)],
        capsys,
    )
    assert code == 0, err
    assert f"recipe {path}" in stdout
    record = json.loads((out / RECORD_FILE).read_text())
    assert record["method"] == "recipe" and record["recipe"]["text"] == FP8_DYNAMIC_RECIPE

    bad = write(tmp_path, "quant_stage:\n  quant_modifiers: [unclosed\n", "bad.yaml")
    code, _, err = run(
        [
            "compress",
            "-m",
            str(tiny_model_dir),
            "-c",
            str(tmp_path / "set"),
            "--recipe",
            str(bad),
            "-o",
            str(tmp_path / "bad-out"),
        ],
        capsys,
    )
    assert_one_line_error(code, err, f"recipe {bad}", "not valid YAML at line 3")
    assert not (tmp_path / "bad-out").exists()
