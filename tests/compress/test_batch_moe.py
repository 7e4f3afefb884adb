"""Calibration batch size, all-experts MoE calibration and the onload device of compress().

Hessian statistics are observed where GPTQ accumulates them: llm-compressor's own ``accumulate_hessian`` is
wrapped (it still runs) to count, per module, the token rows it adds.  Routing is counted independently, by
forward hooks on each MoE block's router in the uncompressed model.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from calibench.compress import compress
from calibench.compress.calibration import batched_dataset, collate_batch, length_batches
from calibench.core.errors import CalibenchError
from conftest import fresh_model, model_weights

pytestmark = [pytest.mark.filterwarnings("ignore"), pytest.mark.usefixtures("one_thread")]


@pytest.fixture
def hessian_rows(monkeypatch):
    """Token rows GPTQ adds to each module's Hessian, by module object (the real function still runs)."""
    import llmcompressor.modifiers.gptq.base as gptq_base

    rows: dict[int, int] = {}
    original = gptq_base.accumulate_hessian

    def counting(inp, module, hessian, num_samples):
        rows[id(module)] = rows.get(id(module), 0) + inp.reshape(-1, inp.shape[-1]).shape[0]
        return original(inp, module, hessian, num_samples)

    monkeypatch.setattr(gptq_base, "accumulate_hessian", counting)
    return rows


def ragged_set(calib, tokenizer, lengths):
    """The same windows cut to ``lengths`` real tokens (the rest masked)."""
    from calibench.data.calibset import CalibrationSet

    mask = (np.arange(calib.seq_len)[None, :] < np.asarray(lengths)[:, None]).astype(np.uint8)
    ids = np.where(mask == 1, calib.input_ids, tokenizer.pad_token_id)
    manifest = calib.manifest
    return CalibrationSet.create(
        ids, tokenizer, source=manifest.source, sampling=manifest.sampling, seed=manifest.seed, attention_mask=mask
    )


# ----------------------------------------------------------------------------------------- batch size


def test_length_batches_never_mix_lengths():
    lengths = [32, 20, 32, 32, 20, 7, 32, 32]
    batches = length_batches(lengths, 3)
    assert batches == [[0, 2, 3], [6, 7], [1, 4], [5]]
    assert length_batches(lengths, 1) == [[i] for i in (0, 2, 3, 6, 7, 1, 4, 5)]


def test_batched_dataset_holds_exactly_the_real_tokens(tiny_text_set, tiny_tokenizer):
    calib = ragged_set(tiny_text_set, tiny_tokenizer, [32, 20, 32, 32, 20, 7, 32, 32])
    dataset, passes = batched_dataset(calib, 3)
    assert passes == len(dataset) == 4
    got = [collate_batch([dataset[i]]) for i in range(passes)]
    assert [tuple(b["input_ids"].shape) for b in got] == [(3, 32), (2, 32), (2, 20), (1, 7)]
    assert all(bool((b["attention_mask"] == 1).all()) for b in got)  # nothing padded
    order = [0, 2, 3, 6, 7, 1, 4, 5]
    rows = [row for b in got for row in b["input_ids"].tolist()]
    keep = calib.attention_mask.astype(bool)
    assert rows == [calib.input_ids[i][keep[i]].tolist() for i in order]


def test_batching_feeds_gptq_the_same_tokens_and_weights(tiny_model_dir, tiny_text_set, tiny_tokenizer, hessian_rows):
    calib = ragged_set(tiny_text_set, tiny_tokenizer, [32, 20, 32, 32, 20, 7, 32, 32])
    results, rows = {}, {}
    for batch in (1, 4):
        hessian_rows.clear()
        model = fresh_model(tiny_model_dir)
        result = compress(model, calib, "gptq", tokenizer=tiny_tokenizer, group_size=64, calib_batch_size=batch)
        q_proj = model.model.layers[0].self_attn.q_proj
        rows[batch] = hessian_rows[id(q_proj)]
        results[batch] = result
    # padded positions would add rows: every Hessian saw exactly the set's real tokens, at both batch sizes
    assert rows[1] == rows[4] == calib.num_tokens == 32 * 5 + 20 * 2 + 7
    assert results[4].record["calibration"] == {
        "calib_batch_size": 4, "forward_passes": 4, "moe_calibrate_all_experts": False, "onload_device": "cpu",
    }  # fmt: skip
    assert results[1].record["calibration"]["forward_passes"] == 8
    assert any("4 forward passes, not 2" in note for note in results[4].notes)
    first, second = model_weights(results[1].model), model_weights(results[4].model)
    for name in first:  # float summation order only: the same weights up to rounding of a few grid points
        assert torch.allclose(first[name].float(), second[name].float(), atol=0.05), name


def test_batch_size_is_checked_before_any_work(tiny_model_dir, tiny_text_set, tiny_tokenizer):
    model = fresh_model(tiny_model_dir)
    before = model_weights(model)
    with pytest.raises(CalibenchError, match="calib_batch_size: Input should be greater than or equal to 1, got 0"):
        compress(model, tiny_text_set, "gptq", tokenizer=tiny_tokenizer, calib_batch_size=0)
    assert all(torch.equal(before[k], v) for k, v in model_weights(model).items())


def test_checkpoint_records_the_calibration(tiny_model_dir, tiny_text_set, tiny_tokenizer, tmp_path):
    from calibench.compress.checkpoint import CHECKPOINT_FILE, verify

    result = compress(fresh_model(tiny_model_dir), tiny_text_set, "rtn", tokenizer=tiny_tokenizer, group_size=64,
                      calib_batch_size=4)  # fmt: skip
    out = result.save(tmp_path / "ckpt", tiny_tokenizer)
    record = json.loads((out / CHECKPOINT_FILE).read_text())
    assert record["calibration"] == result.record["calibration"]
    assert record["calibration"]["calib_batch_size"] == 4 and record["calibration"]["forward_passes"] == 2
    assert verify(out) is None


# ----------------------------------------------------------------------------------------- onload device


def test_onload_device_is_validated_and_recorded(tiny_model_dir, tiny_text_set, tiny_tokenizer):
    model = fresh_model(tiny_model_dir)
    if not torch.cuda.is_available():
        with pytest.raises(CalibenchError) as err:
            compress(model, tiny_text_set, "rtn", tokenizer=tiny_tokenizer, group_size=64, onload_device="cuda")
        assert "\n" not in str(err.value) and str(err.value).startswith("onload_device cuda asked for a CUDA GPU")
    with pytest.raises(CalibenchError, match="invalid device 'tpu9'"):
        compress(model, tiny_text_set, "rtn", tokenizer=tiny_tokenizer, group_size=64, onload_device="tpu9")
    seen = []
    import llmcompressor.pipelines.sequential.pipeline as sequential

    original = sequential.set_onload_device

    def spy(module, device):
        seen.append(torch.device(device))
        return original(module, device)

    sequential.set_onload_device = spy
    try:
        result = compress(model, tiny_text_set, "gptq", tokenizer=tiny_tokenizer, group_size=64, onload_device="cpu")
    finally:
        sequential.set_onload_device = original
    assert seen == [torch.device("cpu")]  # llm-compressor's pipeline onloaded layers where compress() was told
    assert result.record["calibration"]["onload_device"] == "cpu"


# ----------------------------------------------------------------------------------------- mixture of experts


def tiny_moe(family: str, tokenizer):
    """A 2-layer MoE of 8 experts, 1 routed per token, from a config (random weights)."""
    from transformers import MixtralConfig, MixtralForCausalLM, Qwen3MoeConfig, Qwen3MoeForCausalLM

    common = dict(
        vocab_size=len(tokenizer), hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        max_position_embeddings=128, num_experts_per_tok=1, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )  # fmt: skip
    torch.manual_seed(0)
    if family == "qwen3_moe":
        config = Qwen3MoeConfig(**common, intermediate_size=128, moe_intermediate_size=32, num_experts=8, head_dim=16)
        model = Qwen3MoeForCausalLM(config).eval()
    else:
        model = MixtralForCausalLM(MixtralConfig(**common, intermediate_size=32, num_local_experts=8)).eval()
    with (
        torch.no_grad()
    ):  # decisive routers: at the init scale (0.02) router logits nearly tie, and rounding flips them
        for block in model.model.layers:
            block.mlp.gate.weight.mul_(50)
    return model


def route_counter(model) -> dict[tuple[int, int], int]:
    """(layer, expert) -> tokens each MoE block's router sends there in its first forward, counted by forward hooks.

    With a one-window set that first forward is the calibration pass of the layer's subgraph (later ones are
    llm-compressor's propagation of the compressed layer), so this counts the routing GPTQ calibrated with.
    """
    counts: dict[tuple[int, int], int] = {}
    done: set[int] = set()
    for layer, block in enumerate(model.model.layers):

        def hook(module, args, output, layer=layer):
            if layer in done:
                return
            done.add(layer)
            for expert in output[-1].reshape(-1).tolist():
                counts[(layer, expert)] = counts.get((layer, expert), 0) + 1

        block.mlp.gate.register_forward_hook(hook)
    return counts


def expert_rows(model, rows: dict[int, int]) -> dict[tuple[int, int], int]:
    """(layer, expert) -> token rows GPTQ added to that expert's gate/up Hessian (llm-compressor's linearized
    experts: model.layers.L.mlp.experts.E.up_proj)."""
    return {
        (layer, expert): rows.get(id(block.mlp.experts[expert].up_proj), 0)
        for layer, block in enumerate(model.model.layers)
        for expert in range(block.mlp.experts.num_experts)
    }


@pytest.mark.parametrize("family", ["qwen3_moe", "mixtral"])
def test_all_experts_calibration_gives_every_expert_statistics(family, tiny_text_set, tiny_tokenizer, hessian_rows):
    window = tiny_text_set.input_ids[:1, :4]  # 4 tokens, 1 expert each, 8 experts: most experts get none
    from calibench.data.calibset import CalibrationSet

    manifest = tiny_text_set.manifest
    calib = CalibrationSet.create(window, tiny_tokenizer, source=manifest.source, sampling=manifest.sampling,
                                  seed=manifest.seed)  # fmt: skip
    seen, routed = {}, {}
    for flag in (False, True):
        hessian_rows.clear()
        model = tiny_moe(family, tiny_tokenizer)
        routed[flag] = route_counter(model)
        result = compress(model, calib, "gptq", tokenizer=tiny_tokenizer, group_size=32, moe_calibrate_all_experts=flag)
        seen[flag] = expert_rows(model, hessian_rows)
        assert result.record["calibration"]["moe_calibrate_all_experts"] is flag
    # routed only: each expert's Hessian holds exactly the tokens its router sent it, none for the starved ones
    assert seen[False] == {key: routed[False].get(key, 0) for key in seen[False]}
    for layer in range(2):
        counts = [seen[False][(layer, e)] for e in range(8)]
        assert sum(counts) == calib.num_tokens and counts.count(0) >= 4  # one expert per token: most get none
    # all experts: every expert of every layer saw every token
    assert set(seen[True].values()) == {calib.num_tokens}
    assert result.record["calibration"]["moe_expert_layers"] == 2


def test_all_experts_on_a_dense_model_is_one_line_before_any_work(tiny_model_dir, tiny_text_set, tiny_tokenizer):
    model = fresh_model(tiny_model_dir)
    before = model_weights(model)
    with pytest.raises(CalibenchError) as err:
        compress(model, tiny_text_set, "gptq", tokenizer=tiny_tokenizer, moe_calibrate_all_experts=True)
    assert str(err.value) == (
        f"--moe-calibrate-all-experts: {tiny_model_dir} (llama) is a dense model, it has no experts to calibrate: "
        "drop the option"
    )
    assert all(torch.equal(before[k], v) for k, v in model_weights(model).items())


def test_moe_problem_from_the_config_alone(tiny_tokenizer):
    from transformers import LlamaConfig, MixtralConfig, SwitchTransformersConfig

    from calibench.compress.calibration import moe_problem

    assert moe_problem(MixtralConfig(num_local_experts=4), "m") is None
    assert "is a dense model" in moe_problem(LlamaConfig(), "m")
    # a MoE family whose experts llm-compressor 0.14 has no calibration module for
    assert "has no expert calibration module for m (switch_transformers)" in moe_problem(
        SwitchTransformersConfig(), "m"
    )


def test_cell_key_changes_only_with_non_default_calibration_options():
    from calibench.study.cells import Cell

    base = dict(model="m", method="gptq", method_name="gptq", params={}, source="wiki", source_params={}, num_sets=1,
                set_index=0, n=8, seq_len=32, seed=0, eval={"tasks": ["ppl:wiki"]})  # fmt: skip
    plain = Cell(**base)
    assert Cell(**base, calib_batch_size=1, moe_calibrate_all_experts=False).key == plain.key
    keys = {plain.key, Cell(**base, calib_batch_size=4).key, Cell(**base, moe_calibrate_all_experts=True).key}
    assert len(keys) == 3
