"""Set-against-set comparisons and the int8 activation error, against independent computations.

Spearman against scipy's ``spearmanr``, the per-layer comparison against a
recomputation from the raw per-channel maxima, and the quantization error
against numpy fake quantization of activations captured in full by plain
hooks on the held-out windows.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from conftest import corpus_text, fresh_model

pytestmark = [pytest.mark.filterwarnings("ignore"), pytest.mark.usefixtures("one_thread")]


@pytest.fixture(scope="module")
def corpus_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("compare-text") / "corpus.txt"
    path.write_text("\n\n".join(corpus_text()), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def sets(corpus_file, tiny_tokenizer):
    from calibench.data.builders import build_set

    a = build_set(str(corpus_file), tokenizer=tiny_tokenizer, n=6, seq_len=32, seed=0)
    b = build_set("random-vocab", tokenizer=tiny_tokenizer, n=6, seq_len=32, seed=1)
    heldout = build_set(str(corpus_file), tokenizer=tiny_tokenizer, n=4, seq_len=32, seed=7)
    return a, b, heldout


@pytest.fixture(scope="module")
def model(tiny_model_dir):
    return fresh_model(tiny_model_dir)


@pytest.fixture(scope="module")
def stats(model, sets):
    from calibench.inspect import activation_stats

    a, b, _ = sets
    return {"text": activation_stats(model, a), "random": activation_stats(model, b)}


def test_spearman_matches_scipy_with_ties_and_is_undefined_for_constants():
    from scipy.stats import spearmanr

    from calibench.inspect.compare import spearman

    rng = np.random.default_rng(0)
    a = rng.integers(0, 5, 50).astype(float)  # many ties
    b = a + rng.normal(0, 2, 50)
    assert spearman(a, b) == pytest.approx(spearmanr(a, b).statistic, abs=1e-12)
    assert spearman(a, -a) == pytest.approx(-1.0)
    assert spearman([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]) is None


def test_top_channels_and_jaccard():
    from calibench.inspect.compare import jaccard, top_channels

    assert top_channels([0.1, 5.0, 5.0, 3.0, 9.0], 3) == {4, 1, 2}
    assert top_channels([1.0, 1.0, 1.0], 2) == {0, 1}  # ties: the lower index, deterministically
    assert jaccard({1, 2, 3}, {2, 3, 4}) == pytest.approx(0.5)
    assert jaccard(set(), set()) == 1.0


def test_pair_comparison_matches_a_recomputation_from_the_channel_maxima(stats):
    from scipy.stats import spearmanr

    from calibench.inspect.compare import compare_pair, top_channels

    pair = compare_pair(stats["text"], stats["random"], labels=("text", "random"), top_k=4)
    assert (pair.a, pair.b, pair.top_k) == ("text", "random", 4)
    other = {s.name: s for s in stats["random"].sites}
    checked = 0
    for layer in pair.layers:
        sites = [s for s in stats["text"].sites if s.kind == layer.kind and s.layer == layer.layer]
        rhos = [spearmanr(s.channel_max_abs, other[s.name].channel_max_abs).statistic for s in sites]
        overlaps = [
            len(top_channels(s.channel_max_abs, 4) & top_channels(other[s.name].channel_max_abs, 4))
            / len(top_channels(s.channel_max_abs, 4) | top_channels(other[s.name].channel_max_abs, 4))
            for s in sites
        ]
        assert layer.spearman == pytest.approx(np.mean(rhos), abs=1e-9)
        assert layer.jaccard == pytest.approx(np.mean(overlaps))
        assert layer.max_ratio == pytest.approx(
            max(s.max_abs for s in sites) / max(other[s.name].max_abs for s in sites)
        )
        checked += 1
    assert checked == 2 * 2  # two layers, each with linear inputs and a residual stream


def test_a_set_against_itself_is_perfectly_stable_and_a_scaled_copy_moves_only_in_size(stats):
    from calibench.inspect.compare import compare_sets, stability_summary

    text = stats["text"]
    doubled = text.model_copy(
        update={
            "sites": [
                s.model_copy(update={"channel_max_abs": [2 * v for v in s.channel_max_abs], "max_abs": 2 * s.max_abs})
                for s in text.sites
            ]
        }
    )
    same = {"x": text, "y": text, "z": doubled}
    comparisons = compare_sets(same, top_k=4)
    assert [(c.a, c.b) for c in comparisons] == [("x", "y"), ("x", "z"), ("y", "z")]
    summary = stability_summary(same, comparisons)
    for kind in summary.kinds:
        assert kind.mean_spearman == pytest.approx(1.0) and kind.min_jaccard == 1.0
        # ratios 1, 1/2, 1/2 in every layer: geometric mean of max(r, 1/r) is 2^(2/3)
        assert kind.max_ratio_spread == pytest.approx(2 ** (2 / 3))
        assert kind.worst_max_ratio == pytest.approx(2.0)


def test_real_sets_of_different_text_differ(stats):
    from calibench.inspect.compare import compare_sets, stability_summary

    summary = stability_summary(stats, compare_sets(stats))
    assert summary.pairs == 1 and {k.kind for k in summary.kinds} == {"linear_input", "residual"}
    assert all(k.max_ratio_spread > 1.0 for k in summary.kinds)


# ------------------------------------------------------------------ quantization error


def _capture_linear_inputs(model, heldout, names):
    import torch

    modules = dict(model.named_modules())
    store = {name: [] for name in names}
    ids, mask = heldout.to_torch()
    handles = [
        modules[name].register_forward_pre_hook(
            lambda _m, args, n=name: store[n].append(args[0][mask.bool()].double().numpy())
        )
        for name in names
    ]
    try:
        with torch.no_grad():
            model(input_ids=ids, attention_mask=mask)
    finally:
        for h in handles:
            h.remove()
    return {name: np.concatenate(parts) for name, parts in store.items()}


def _naive_error(x, scale_max, bits=8):
    qmax = 2 ** (bits - 1) - 1
    if scale_max is None:  # dynamic per token
        scale = np.abs(x).max(axis=1, keepdims=True) / qmax
    else:
        scale = np.float64(np.float32(scale_max) / np.float32(qmax))
    q = np.clip(np.round(x / scale), -qmax, qmax) * scale
    return float(((x - q) ** 2).sum()), float((x**2).sum()), int((np.abs(x) > scale_max).sum()) if scale_max else 0


def test_quant_error_matches_numpy_fake_quantization(model, sets, stats):
    from calibench.inspect.quant_error import activation_quant_error, static_scales

    _, _, heldout = sets
    scales = {label: static_scales(s) for label, s in stats.items()}
    report = activation_quant_error(model, heldout, scales, batch_size=3)
    names = list(scales["text"])
    assert all("k_proj" not in n and "up_proj" not in n for n in names)  # shared inputs are scored once
    full = _capture_linear_inputs(model, heldout, names)
    assert report.tokens == int(heldout.attention_mask.sum())
    totals = {label: [0.0, 0.0] for label in scales}
    dyn_total = [0.0, 0.0]
    for row in report.layers:
        layer_names = [n for n in names if f"layers.{row.layer}." in n]
        for label in scales:
            parts = [_naive_error(full[n], scales[label][n]) for n in layer_names]
            num, den = sum(p[0] for p in parts), sum(p[1] for p in parts)
            assert row.static[label] == pytest.approx(num / den, rel=1e-3)
            count = sum(full[n].size for n in layer_names)
            assert row.clipped[label] == pytest.approx(sum(p[2] for p in parts) / count, abs=2 / count)
            totals[label][0] += num
            totals[label][1] += den
        parts = [_naive_error(full[n], None) for n in layer_names]
        assert row.dynamic == pytest.approx(sum(p[0] for p in parts) / sum(p[1] for p in parts), rel=1e-3)
        dyn_total[0] += sum(p[0] for p in parts)
        dyn_total[1] += sum(p[1] for p in parts)
    assert report.total_dynamic == pytest.approx(dyn_total[0] / dyn_total[1], rel=1e-3)
    for label, (num, den) in totals.items():
        assert report.total_static[label] == pytest.approx(num / den, rel=1e-3)
        assert report.sqnr_db(label) == pytest.approx(-10 * math.log10(num / den), rel=1e-3)


def test_scales_calibrated_on_the_heldout_text_itself_clip_nothing(model, sets):
    from calibench.inspect import activation_stats
    from calibench.inspect.quant_error import activation_quant_error, static_scales

    _, _, heldout = sets
    report = activation_quant_error(model, heldout, {"self": static_scales(activation_stats(model, heldout))})
    assert all(row.clipped["self"] == 0.0 for row in report.layers)


def test_a_calibrated_max_far_below_the_heldout_activations_clips_and_costs():
    """Half the true max clips: static error far above dynamic, and the clipped share is what numpy counts."""
    import torch

    from calibench.inspect.quant_error import fake_quantize_dynamic_per_token, fake_quantize_static

    x = torch.tensor([[1.0, -2.0, 4.0, 0.5], [8.0, 0.1, -0.2, 0.3]])
    static = fake_quantize_static(x, max_abs=4.0)
    assert float(static.max()) == pytest.approx(4.0)  # 8 clipped to the calibrated max
    assert float(((x - static) ** 2).sum()) > 15.9
    dynamic = fake_quantize_dynamic_per_token(x)
    assert float((x - dynamic).abs().max()) <= 8.0 / 127 / 2 + 1e-6  # within half a step of row 2's grid


def test_quant_error_refuses_scales_from_another_layer_filter(model, sets, stats):
    from calibench.core.errors import CalibenchError
    from calibench.inspect import activation_stats
    from calibench.inspect.quant_error import activation_quant_error, static_scales

    a, _, heldout = sets
    only_layer_0 = static_scales(activation_stats(model, a, layers=r"layers\.0\."))
    with pytest.raises(CalibenchError, match="no scale for"):
        activation_quant_error(model, heldout, {"a": only_layer_0})
    with pytest.raises(CalibenchError, match="at least one set"):
        activation_quant_error(model, heldout, {})
