"""``inspect experts``: routing counts on tiny MoE models (random weights, mechanics) against independent counts.

Two independent counts per family: a forward pre-hook on the expert container
(the expert ids the block hands its experts, which is what each expert
computes on), and the family's routing re-implemented here from the gate's
weight and the hidden states entering the MoE block.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from calibench.core.errors import CalibenchError
from calibench.core.plots import PNG_MAGIC
from calibench.inspect import ExpertRouting, expert_routing
from calibench.inspect import experts_math as em
from calibench.inspect.experts import route_counts
from calibench.inspect.experts_routers import find_moe_layers, recompute_top_k
from calibench.inspect.experts_run import JSON_NAME, heat_map_name, write_experts
from conftest import assert_one_line_error, corpus_text, run, tiny_llama_config
from fixtures.tiny_moe import MOE_FAMILIES, build_tiny_moe, save_tiny_moe


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("moe-corpus") / "corpus.txt"
    path.write_text("\n\n".join(corpus_text()), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def sets(corpus, tiny_tokenizer):
    from calibench.data.draw import build_calibration_set

    return {
        "long": build_calibration_set(str(corpus), tiny_tokenizer, n=8, seq_len=32, seed=0),
        "short": build_calibration_set(str(corpus), tiny_tokenizer, n=1, seq_len=4, seed=1),
    }


def _own_routing(model, block, hidden, config):
    """The family's routing, written from its paper/config semantics, from the block's input hidden states."""
    gate = block.gate
    logits = hidden.reshape(-1, hidden.shape[-1]).float() @ gate.weight.float().T
    k = config.num_experts_per_tok
    if config.model_type == "deepseek_v3":
        scores = logits.sigmoid() + gate.e_score_correction_bias
        groups = config.n_group
        per = scores.shape[-1] // groups
        group_best = scores.view(-1, groups, per).topk(2, dim=-1).values.sum(-1)
        allowed = torch.zeros_like(group_best, dtype=torch.bool)
        allowed.scatter_(1, group_best.topk(config.topk_group, dim=-1).indices, True)
        scores = scores.masked_fill(~allowed.repeat_interleave(per, dim=1), float("-inf"))
        return scores.topk(k, dim=-1).indices
    return torch.softmax(logits, dim=-1).topk(k, dim=-1).indices


def _independent_counts(model, ids, mask):
    """(expert-container pre-hook counts, own-routing counts), per MoE layer, over the real tokens only."""
    blocks = [
        m for m in model.modules() if hasattr(m, "gate") and hasattr(m, "experts") and hasattr(m.experts, "down_proj")
    ]
    n = blocks[0].gate.weight.shape[0]
    entered = [np.zeros(n, dtype=np.int64) for _ in blocks]
    own = [np.zeros(n, dtype=np.int64) for _ in blocks]
    keep = mask.reshape(-1).bool()
    handles = []
    for i, block in enumerate(blocks):

        def pre_experts(_m, args, i=i):
            entered[i] += np.bincount(args[1][keep].reshape(-1).numpy(), minlength=n)

        def pre_block(_m, args, i=i, block=block):
            chosen = _own_routing(model, block, args[0], model.config)
            own[i] += np.bincount(chosen[keep].reshape(-1).numpy(), minlength=n)

        handles += [block.experts.register_forward_pre_hook(pre_experts), block.register_forward_pre_hook(pre_block)]
    try:
        with torch.no_grad():
            model(input_ids=ids, attention_mask=mask, use_cache=False)
    finally:
        for h in handles:
            h.remove()
    return entered, own


@pytest.mark.parametrize("family", MOE_FAMILIES)
def test_counts_match_the_experts_inputs_and_an_independent_routing(family, tiny_tokenizer):
    model = build_tiny_moe(family, len(tiny_tokenizer), seed=3)
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(0, len(tiny_tokenizer), (3, 24), generator=generator)
    mask = torch.ones_like(ids)
    mask[1, 17:] = 0  # padded tails: not counted
    mask[2, 5:] = 0
    moe = find_moe_layers(model)
    expected_layers = [1, 2] if family == "deepseek_v3" else [0, 1]  # DeepSeek's first layer is dense
    assert [m.layer for m in moe] == expected_layers
    assert all(m.n_experts == 8 and m.top_k == 2 for m in moe)
    counts, modes, tokens = route_counts(model, moe, ids, mask, batch_size=2)
    entered, own = _independent_counts(model, ids, mask)
    assert tokens == int(mask.sum()) == 24 + 17 + 5
    assert modes == ["router"] * len(moe)
    for got, hook, mine in zip(counts, entered, own, strict=True):
        assert got.tolist() == hook.tolist() == mine.tolist()
        assert got.sum() == 2 * tokens  # each token counts for each of its top-2 experts


@pytest.mark.parametrize("family", MOE_FAMILIES)
def test_recomputed_top_k_from_logits_equals_the_routers_own_choice(family):
    """The fallback for routers that return only logits picks what the family's router picks."""
    model = build_tiny_moe(family, 300, seed=1)
    config = model.config
    hidden = torch.randn(64, 64, generator=torch.Generator().manual_seed(2))
    for moe in find_moe_layers(model):
        logits, _, indices = moe.router(hidden)
        again = recompute_top_k(
            logits,
            moe.top_k,
            scoring="sigmoid" if family == "deepseek_v3" else "softmax",
            bias=getattr(moe.router, "e_score_correction_bias", None),
            groups=getattr(config, "n_group", None) or 1,
            top_groups=getattr(config, "topk_group", None) or 1,
        )
        assert torch.equal(again.sort(-1).values, indices.sort(-1).values)


def test_starved_experts_and_the_comparison_across_sets(sets, tiny_tokenizer):
    model = build_tiny_moe("deepseek_v3", len(tiny_tokenizer))
    moe = find_moe_layers(model)
    moe[0].router.e_score_correction_bias[5] = -10.0  # expert 5 of the first MoE layer can never be chosen
    routing = expert_routing(model, sets, min_expert_tokens=4)
    long, short = routing.set("long"), routing.set("short")
    assert long.tokens == 256 and short.tokens == 4
    for result in (long, short):
        for counts, zero, starved, entropy in zip(result.counts, result.zero, result.starved, result.entropy):
            assert sum(counts) == 2 * result.tokens
            assert zero == [e for e, c in enumerate(counts) if c == 0]
            assert starved == [e for e, c in enumerate(counts) if c < 4]
            p = np.array([c for c in counts if c]) / sum(counts)
            assert entropy == pytest.approx(float(-(p * np.log(p)).sum() / np.log(8)))
    assert 5 in long.zero[0] and 5 in short.zero[0]
    assert long.coverage["min_layer"] == pytest.approx(7 / 8)  # only expert 5 of the first MoE layer starves
    assert {(u.layer, tuple(u.experts)) for u in routing.starved_everywhere} == {(1, (5,))}
    # 4 tokens x top-2 = 8 assignments over 8 experts: every expert has < 4 in the short set
    by_pair = {(s.set, s.covered_by, s.layer): s.experts for s in routing.starved_but_covered}
    assert by_pair[("short", "long", 1)] == [0, 1, 2, 3, 4, 6, 7]
    assert by_pair[("short", "long", 2)] == list(range(8))
    assert not any(s.set == "long" for s in routing.starved_but_covered)


def test_json_round_trip_heat_maps_and_determinism(sets, tiny_tokenizer, tmp_path):
    model = build_tiny_moe("qwen2_moe", len(tiny_tokenizer))
    first = expert_routing(model, sets, model_name="tiny-qwen2-moe")
    second = expert_routing(build_tiny_moe("qwen2_moe", len(tiny_tokenizer)), sets, model_name="tiny-qwen2-moe")
    assert first == second
    written = write_experts(first, tmp_path / "out")
    assert [p.name for p in written] == [JSON_NAME, heat_map_name("long"), heat_map_name("short")]
    assert all(p.read_bytes().startswith(PNG_MAGIC) for p in written[1:])
    assert ExpertRouting.from_json(tmp_path / "out" / JSON_NAME) == first
    assert ExpertRouting.from_json(first.to_json()) == first


def test_a_dense_model_is_refused(sets, tiny_tokenizer):
    from transformers import LlamaForCausalLM

    dense = LlamaForCausalLM(tiny_llama_config(tiny_tokenizer, hidden=64, layers=1)).eval()
    assert find_moe_layers(dense) == []
    with pytest.raises(CalibenchError, match="has no MoE layers"):
        expert_routing(dense, sets)


def test_counting_math():
    assert em.count_assignments([[0, 1], [1, 3]], 4).tolist() == [1, 2, 0, 1]
    assert em.routing_entropy([5, 5, 5, 5]) == pytest.approx(1.0)
    assert em.routing_entropy([9, 0, 0, 0]) == pytest.approx(0.0)
    assert em.routing_entropy([0, 0]) is None
    assert em.coverage_summary([[4, 4, 0, 1], [4, 4, 4, 4]], 4) == {"min_layer": 0.5, "mean_layer": 0.75, "all": 0.75}
    with pytest.raises(ValueError):
        em.count_assignments([[4]], 4)


def test_cli_writes_json_and_heat_maps(tmp_path, tiny_tokenizer, sets, capsys):
    model = save_tiny_moe(tmp_path / "mixtral", "mixtral", tiny_tokenizer)
    sets["long"].save(tmp_path / "long")
    out = tmp_path / "out"
    code, stdout, err = run(
        ["inspect", "experts", str(tmp_path / "long"), "-m", str(model), "-o", str(out), "--min-expert-tokens", "40"],
        capsys,
    )
    assert code == 0, err
    routing = ExpertRouting.from_json(out / JSON_NAME)
    assert routing.min_expert_tokens == 40 and routing.set("long").tokens == 256
    assert (out / heat_map_name("long")).is_file()
    assert "MoE layers" in stdout and "experts.json" in stdout
    code, _, err = run(["inspect", "experts", str(tmp_path / "long"), "-m", str(model), "-o", str(out)], capsys)
    assert_one_line_error(code, err, "already exists")


# ----------------------------------------------------------------- the study signal


def test_expert_coverage_signals_on_a_moe_model_and_not_on_a_dense_one(sets, tiny_tokenizer):
    import math

    from transformers import LlamaForCausalLM

    from calibench.predict import signals as S

    model = build_tiny_moe("deepseek_v3", len(tiny_tokenizer))
    find_moe_layers(model)[0].router.e_score_correction_bias[5] = -10.0
    probe = S.Probe(model, tiny_tokenizer, "tiny-deepseek", heldout=sets["long"])
    names = [s.name for s in S.parse_signals("experts")]
    assert names == ["experts.coverage", "experts.coverage_mean", "experts.entropy"]
    routing = expert_routing(model, {"long": sets["long"]})  # the signal's threshold is the default min_expert_tokens
    values = {name: S.compute(name, probe, sets["long"]) for name in names}
    assert all(v.reason is None for v in values.values())
    assert values["experts.coverage"].value == routing.sets[0].coverage["min_layer"] == pytest.approx(7 / 8)
    assert values["experts.coverage_mean"].value == pytest.approx(routing.sets[0].coverage["mean_layer"])
    assert values["experts.entropy"].value == pytest.approx(float(np.mean(routing.sets[0].entropy)))
    assert S.compute("experts.coverage", probe, sets["short"]).value == 0.0  # 4 tokens starve every expert
    assert S.get_signal("experts.coverage").sign == 1  # more experts calibrated: better

    dense = LlamaForCausalLM(tiny_llama_config(tiny_tokenizer, hidden=64, layers=1)).eval()
    dense_probe = S.Probe(dense, tiny_tokenizer, "tiny-llama", heldout=sets["long"])
    for name in names:
        value = S.compute(name, dense_probe, sets["long"])
        assert math.isnan(value.value) and "tiny-llama has no MoE layers (no router found)" in value.reason


@pytest.mark.parametrize("family", ["mixtral", "qwen3_moe", "deepseek_v3"])
def test_counts_equal_the_rows_entering_each_linearized_expert(family):
    """llm-compressor's linearized experts (a ModuleList of one MLP per expert, what its MoE calibration uses) are
    found too, and each expert MLP's own input rows, counted by a pre-hook on it, equal the routed counts."""
    from llmcompressor.modeling.moe.linearize import linearize_moe

    model = build_tiny_moe(family, 300, seed=5)
    ids = torch.randint(0, 300, (2, 20), generator=torch.Generator().manual_seed(4))
    mask = torch.ones_like(ids)
    fused, _, _ = route_counts(model, find_moe_layers(model), ids, mask)
    linearize_moe(model)
    moe = find_moe_layers(model)
    assert [type(layer.block.experts).__name__ for layer in moe] == ["LinearExperts2D"] * 2
    rows = [np.zeros(layer.n_experts, dtype=np.int64) for layer in moe]
    handles = []
    for i, layer in enumerate(moe):
        for e in range(layer.n_experts):

            def count(_m, args, i=i, e=e):
                rows[i][e] += args[0].shape[0]

            handles.append(layer.block.experts[e].register_forward_pre_hook(count))
    counts, modes, tokens = route_counts(model, moe, ids, mask)
    for h in handles:
        h.remove()
    assert [c.tolist() for c in counts] == [r.tolist() for r in rows] == [c.tolist() for c in fused]
    assert sum(int(c.sum()) for c in counts) == 2 * 2 * tokens  # two MoE layers, top-2
