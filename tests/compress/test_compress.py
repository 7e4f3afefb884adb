"""Compression on a tiny random Llama: exact sparsity, quantization grids, error ordering, determinism, reload."""

from __future__ import annotations

import json

import pytest
import torch

from calibench.compress import RECORD_FILE, compress
from calibench.compress.masks import is_nm_sparse, magnitude_prune_mask
from calibench.compress.metrics import effective_weight
from calibench.compress.validate import target_linears
from calibench.core.errors import CalibenchError, UnknownNameError
from conftest import assert_one_line_error, fresh_model, make_tokenizer, model_weights, run

pytestmark = pytest.mark.filterwarnings("ignore")


@pytest.fixture(scope="module")
def calib(tiny_text_set):
    return tiny_text_set


def layer0_linears(model):
    return {n: m for n, m in target_linears(model).items() if ".layers.0." in n}


def dense_layer0_inputs(model, calib):
    """Inputs of every layer-0 Linear on the calibration windows, from the dense model."""
    captured: dict[str, list[torch.Tensor]] = {}
    hooks = [
        module.register_forward_pre_hook(
            lambda mod, args, name=name: captured.setdefault(name, []).append(args[0].detach())
        )
        for name, module in layer0_linears(model).items()
    ]
    ids, mask = calib.to_torch()
    with torch.no_grad():
        model(input_ids=ids, attention_mask=mask)
    for hook in hooks:
        hook.remove()
    return {name: torch.cat([x.reshape(-1, x.shape[-1]) for x in xs]) for name, xs in captured.items()}


def layer0_output_error(dense, compressed, inputs):
    """sum over layer-0 Linears of ||X W^T - X W'^T||^2 on the dense inputs."""
    dense_mods, comp_mods = layer0_linears(dense), layer0_linears(compressed)
    total = 0.0
    for name, x in inputs.items():
        delta = dense_mods[name].weight.detach() - effective_weight(comp_mods[name])
        total += float((x @ delta.T).pow(2).sum())
    return total


# ----------------------------------------------------------------- sparsity


@pytest.mark.parametrize("method", ["wanda", "magnitude"])
def test_row_wise_methods_prune_exactly_half_of_every_row(tiny_model_dir, calib, tiny_tokenizer, method):
    result = compress(fresh_model(tiny_model_dir), calib, method, tokenizer=tiny_tokenizer, sparsity=0.5)
    for name, module in target_linears(result.model).items():
        zeros_per_row = (module.weight == 0).sum(dim=1)
        assert (zeros_per_row == module.in_features // 2).all(), name
    assert result.record["achieved"]["sparsity"] == pytest.approx(0.5, abs=1e-12)


def test_sparsegpt_prunes_the_requested_fraction_of_each_layer(tiny_model_dir, calib, tiny_tokenizer):
    result = compress(fresh_model(tiny_model_dir), calib, "sparsegpt", tokenizer=tiny_tokenizer, sparsity=0.6)
    for name, module in target_linears(result.model).items():
        fraction = float((module.weight == 0).float().mean())
        assert fraction == pytest.approx(0.6, abs=2e-3), name
    head = result.model.get_output_embeddings().weight
    assert float((head == 0).float().mean()) < 0.01  # lm_head stays dense


@pytest.mark.parametrize("method", ["wanda", "sparsegpt", "magnitude", "sparsegpt+gptq"])
def test_two_of_four_zeroes_two_of_every_four(tiny_model_dir, calib, tiny_tokenizer, method):
    extra = {"group_size": 64} if "gptq" in method else {}
    result = compress(fresh_model(tiny_model_dir), calib, method, tokenizer=tiny_tokenizer, structure="2:4", **extra)
    for name, module in target_linears(result.model).items():
        assert is_nm_sparse(effective_weight(module), 2, 4), name
    assert result.record["params"]["sparsity"] == 0.5


def test_magnitude_mask_matches_a_sort_per_row():
    torch.manual_seed(1)
    weight = torch.randn(6, 16)
    mask = magnitude_prune_mask(weight, 0.25)
    for row, row_mask in zip(weight, mask):
        smallest = set(row.abs().argsort()[:4].tolist())
        assert set(torch.nonzero(row_mask).flatten().tolist()) == smallest


# ----------------------------------------------------------------- quantization grids


@pytest.mark.parametrize(
    "method,bits,group", [("rtn", 4, 64), ("gptq", 4, 64), ("gptq", 3, 128), ("awq", 4, 64), ("rtn", 8, 128)]
)
def test_quantized_groups_take_at_most_2_to_the_bits_values(tiny_model_dir, calib, tiny_tokenizer, method, bits, group):
    result = compress(fresh_model(tiny_model_dir), calib, method, tokenizer=tiny_tokenizer, bits=bits, group_size=group)
    for name, module in target_linears(result.model).items():
        weight = effective_weight(module)
        groups = weight.reshape(weight.shape[0], -1, group)
        for row in range(0, weight.shape[0], 17):
            for g in range(groups.shape[1]):
                assert len(torch.unique(groups[row, g])) <= 2**bits, (name, row, g)
    expected_bits = bits + 16 / group
    assert result.record["achieved"]["bits_per_weight"] == pytest.approx(expected_bits)


def test_smoothquant_weights_are_8_bit_per_channel(tiny_model_dir, calib, tiny_tokenizer):
    result = compress(fresh_model(tiny_model_dir), calib, "smoothquant", tokenizer=tiny_tokenizer)
    for module in target_linears(result.model).values():
        weight = effective_weight(module)
        assert max(len(torch.unique(row)) for row in weight) <= 256


def test_smoothquant_static_activations_take_one_scale_per_tensor_from_the_calibration_set(
    tiny_model_dir, calib, tiny_tokenizer
):
    """--activations static: a per-tensor input scale fixed by the set (so it moves with the set); dynamic: none."""
    from calibench.data.builders import build_set

    other = build_set("random-vocab", tokenizer=tiny_tokenizer, n=calib.n, seq_len=calib.seq_len, seed=3)
    scales = []
    for calibration in (calib, other):
        model = compress(
            fresh_model(tiny_model_dir), calibration, "smoothquant", tokenizer=tiny_tokenizer, activations="static"
        ).model
        linears = target_linears(model)
        for module in linears.values():
            args = module.quantization_scheme.input_activations
            assert (args.dynamic, str(getattr(args.strategy, "value", args.strategy))) == (False, "tensor")
            assert module.input_scale.numel() == 1 and float(module.input_scale) > 0
        scales.append(torch.stack([m.input_scale.detach().reshape(()) for m in linears.values()]))
    assert not torch.allclose(scales[0], scales[1])
    dynamic = compress(fresh_model(tiny_model_dir), calib, "smoothquant", tokenizer=tiny_tokenizer).model
    for module in target_linears(dynamic).values():
        assert module.quantization_scheme.input_activations.dynamic is True


# ----------------------------------------------------------------- error ordering


def test_gptq_beats_rtn_and_sparsegpt_beats_magnitude_on_layer_output_error(tiny_model_dir, calib, tiny_tokenizer):
    dense = fresh_model(tiny_model_dir)
    inputs = dense_layer0_inputs(dense, calib)
    errors = {}
    for method, kwargs in [
        ("rtn", {"group_size": 64}),
        ("gptq", {"group_size": 64}),
        ("magnitude", {}),
        ("sparsegpt", {}),
    ]:
        result = compress(fresh_model(tiny_model_dir), calib, method, tokenizer=tiny_tokenizer, **kwargs)
        errors[method] = layer0_output_error(dense, result.model, inputs)
    assert errors["gptq"] < errors["rtn"]
    assert errors["sparsegpt"] < errors["magnitude"]


# ----------------------------------------------------------------- determinism and reload


@pytest.mark.parametrize("method", ["sparsegpt", "gptq"])
def test_same_inputs_and_seed_give_identical_weights(tiny_model_dir, calib, tiny_tokenizer, method):
    extra = {"group_size": 64} if method == "gptq" else {}
    first = model_weights(compress(fresh_model(tiny_model_dir), calib, method, tokenizer=tiny_tokenizer, **extra).model)
    second = model_weights(
        compress(fresh_model(tiny_model_dir), calib, method, tokenizer=tiny_tokenizer, **extra).model
    )
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)


@pytest.mark.parametrize(
    "method,kwargs",
    [
        ("gptq", {"group_size": 64}),
        ("wanda", {"structure": "2:4"}),
        ("sparsegpt+gptq", {"structure": "2:4", "group_size": 64}),
        ("smoothquant", {}),
    ],
)
def test_saved_checkpoint_reloads_with_identical_outputs(
    tiny_model_dir, calib, tiny_tokenizer, tmp_path, method, kwargs
):
    from transformers import AutoModelForCausalLM

    result = compress(fresh_model(tiny_model_dir), calib, method, tokenizer=tiny_tokenizer, **kwargs)
    result.save(tmp_path / "ckpt", tiny_tokenizer)
    record = json.loads((tmp_path / "ckpt" / RECORD_FILE).read_text())
    assert record["calibration_set"]["tokens_sha256"] == calib.sha256
    assert record["method"] == method and record["versions"]["llmcompressor"]
    config = json.loads((tmp_path / "ckpt" / "config.json").read_text())
    quantized = method != "wanda"
    # compressed-tensors 0.19 stores sparsity as explicit zeros: only quantization has a config
    assert ("quantization_config" in config) == quantized
    if quantized:
        assert config["quantization_config"]["quant_method"] == "compressed-tensors"
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "ckpt").eval()
    if not quantized:  # quantized reloads stay packed (CompressedLinear); outputs below prove them equal
        assert all(is_nm_sparse(effective_weight(m), 2, 4) for m in target_linears(reloaded).values())
    ids, _ = calib.to_torch()
    with torch.no_grad():
        assert torch.equal(result.model(ids[:3]).logits, reloaded(ids[:3]).logits)


# ----------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "method,kwargs,message",
    [
        ("gtpq", {}, "unknown method 'gtpq'"),
        ("wanda", {"sparsity": 1.0}, "strictly between 0 and 1"),
        ("wanda", {"sparsity": 0.0}, "strictly between 0 and 1"),
        ("sparsegpt", {"structure": "4:2"}, "0 < N < M"),
        ("sparsegpt", {"structure": "2-4"}, "N:M like 2:4"),
        ("wanda", {"structure": "2:4", "sparsity": 0.7}, "sparsity is 0.5 by definition"),
        ("rtn", {"bits": 3}, "does not support 3-bit"),
        ("awq", {"bits": 8}, "does not support 8-bit"),
        ("wanda", {"bits": 4}, "wanda does not use bits"),
        ("rtn", {"sparsity": 0.5}, "rtn does not use sparsity"),
        ("gptq", {"dampening": 0.1, "structure": "2:4"}, "gptq does not use structure"),
        ("magnitude", {"dampening": 0.1}, "magnitude does not use dampening"),
        ("gptq", {"group_size": 96}, "use --group-size 128"),
        ("gptq+sparsegpt", {}, "one pruning method then one quantization"),
    ],
)
def test_bad_parameters_fail_before_any_work(tiny_model_dir, calib, tiny_tokenizer, method, kwargs, message):
    model = fresh_model(tiny_model_dir)
    before = model_weights(model)
    with pytest.raises((CalibenchError, UnknownNameError), match=message):
        compress(model, calib, method, tokenizer=tiny_tokenizer, **kwargs)
    after = model_weights(model)
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_default_group_size_gives_way_when_128_does_not_divide(tmp_path, calib, tiny_tokenizer):
    from transformers import LlamaForCausalLM

    from conftest import tiny_llama_config

    config = tiny_llama_config(tiny_tokenizer, hidden=96)  # like SmolLM2's 576: not a multiple of 128
    model = LlamaForCausalLM(config).eval()
    model.save_pretrained(tmp_path / "m")
    tiny_tokenizer.save_pretrained(tmp_path / "m")
    model = LlamaForCausalLM.from_pretrained(tmp_path / "m").eval()
    with pytest.raises(CalibenchError, match="use --group-size 32"):
        compress(model, calib, "gptq", tokenizer=tiny_tokenizer, group_size=128)
    result = compress(model, calib, "rtn", tokenizer=tiny_tokenizer)
    assert result.record["params"]["group_size"] == 32
    assert any("does not divide" in note for note in result.notes)


def test_cli_compress_and_its_errors(tmp_path, tiny_model_dir, calib, capsys):
    calib.save(tmp_path / "set")
    out = tmp_path / "ckpt"
    code, stdout, err = run(
        [
            "compress",
            "--model",
            str(tiny_model_dir),
            "--calib",
            str(tmp_path / "set"),
            "--method",
            "wanda",
            "--structure",
            "2:4",
            "--out",
            str(out),
        ],
        capsys,
    )
    assert code == 0, err
    assert (out / RECORD_FILE).exists() and "sparsity 0.500" in stdout

    other_dir = tmp_path / "other"
    other = make_tokenizer(vocab_size=333)
    other.save_pretrained(other_dir)
    from transformers import BertConfig

    from conftest import tiny_llama_config

    tiny_llama_config(other).save_pretrained(other_dir)
    bert_dir = tmp_path / "bert"
    BertConfig(
        vocab_size=300, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64
    ).save_pretrained(bert_dir)
    calib_tokenizer = make_tokenizer()  # same vocabulary as the set: only the model is wrong
    calib_tokenizer.save_pretrained(bert_dir)

    cases = [
        (["--method", "nope"], "unknown method 'nope'"),
        (["--method", "wanda", "--sparsity", "1.5"], "strictly between 0 and 1"),
        (["--method", "wanda", "--structure", "3:2"], "0 < N < M"),
        (["--method", "rtn", "--bits", "5"], "does not support 5-bit"),
        (["--method", "gptq", "--group-size", "96"], "does not divide"),
        (["--method", "gptq", "--model", str(other_dir)], "was made with tokenizer"),
        (["--method", "gptq", "--model", str(bert_dir)], "could not load model"),
    ]
    for extra, fragment in cases:
        args = ["compress", "--calib", str(tmp_path / "set"), "--out", str(tmp_path / "bad")]
        if "--model" not in extra:
            args += ["--model", str(tiny_model_dir)]
        code, _, err = run(args + extra, capsys)
        assert_one_line_error(code, err, fragment)
        assert not (tmp_path / "bad").exists()


@pytest.mark.parametrize(
    "method,kwargs,folds",
    [
        ("rtn", {"group_size": 64}, True),  # weights not yet on the grid: the fold must quantize them
        ("gptq", {"group_size": 64}, True),
        ("smoothquant", {}, False),  # W8A8: activation quantization must stay in the forward
    ],
)
def test_folding_weight_quantization_leaves_outputs_unchanged(
    tiny_model_dir, calib, tiny_tokenizer, method, kwargs, folds
):
    from calibench.compress.fold import fold_weight_quantization

    model = fresh_model(tiny_model_dir)
    compress(model, calib, method, tokenizer=tiny_tokenizer, **kwargs)
    ids = torch.tensor(calib.input_ids[:2], dtype=torch.long)
    with torch.no_grad():
        before = model(ids).logits
    quantized = sum(1 for m in model.modules() if getattr(m, "quantization_scheme", None) is not None)
    folded = fold_weight_quantization(model)
    assert folded == (quantized if folds else 0) and quantized > 0
    with torch.no_grad():
        after = model(ids).logits
    assert torch.equal(before, after)
    assert fold_weight_quantization(model) == 0  # idempotent: nothing left to fold


@pytest.mark.parametrize("actorder,expected", [(False, None), (True, "static")])
def test_gptq_activation_order_is_what_the_parameters_say(actorder, expected):
    """llm-compressor turns an unset modifier actorder into STATIC; calibench passes its own choice explicitly."""
    from calibench.compress.methods import build_recipe, make_params, resolve

    methods = resolve("gptq")
    (modifier,) = build_recipe(methods, make_params(methods, actorder=actorder, group_size=64))
    resolved = modifier.resolve_quantization_config()
    (scheme,) = resolved.config_groups.values()
    assert (scheme.weights.actorder.value if scheme.weights.actorder else None) == expected
    (rtn,) = build_recipe(resolve("rtn"), make_params(resolve("rtn"), group_size=64))
    assert all(s.weights.actorder is None for s in rtn.config_groups.values())  # RTN has no column order
