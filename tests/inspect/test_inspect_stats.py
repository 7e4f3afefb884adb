"""Streaming activation statistics against a naive computation over activations captured in full.

The naive side registers its own plain hooks, keeps every real-token
activation of every site, and computes each statistic with numpy in float64;
the streaming side must agree (quantiles within the histogram's stated
resolution).  A planted outlier channel must be found where it was planted,
padding must not matter, the same inputs must give the same numbers, and a
layer filter matching nothing must fail with one line.
"""

from __future__ import annotations

import numpy as np
import pytest

from conftest import corpus_text, repadded

pytestmark = [pytest.mark.filterwarnings("ignore"), pytest.mark.usefixtures("one_thread")]

SEQ_LEN = 40


@pytest.fixture(scope="module")
def calib(tmp_path_factory, tiny_tokenizer):
    from calibench.data.builders import build_set

    path = tmp_path_factory.mktemp("inspect-text") / "corpus.txt"
    path.write_text("\n\n".join(corpus_text()), encoding="utf-8")
    calib = build_set(str(path), tokenizer=tiny_tokenizer, n=6, seq_len=SEQ_LEN, seed=0, mode="sample", bos="never")
    lengths = calib.attention_mask.sum(axis=1)
    assert (lengths < SEQ_LEN).any() and (lengths > 1).all(), lengths  # some rows padded, none empty
    return calib


def _load(model_dir):
    import torch
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()


@pytest.fixture(scope="module")
def model(tiny_model_dir):
    return _load(tiny_model_dir)


def _capture(model, calib, batch_size=2):
    """Every site's real-token activations in full: {site name: (x (N, H) float64, sample, position, token)}."""
    import torch

    from calibench.inspect import all_sites

    sites = all_sites(model)
    store: dict[str, list] = {s.name: [] for s in sites}
    state: dict = {}

    def keep(name, tensor):
        m = state["mask"].bool()
        rows, cols = torch.nonzero(m, as_tuple=True)
        store[name].append(
            (
                tensor[m].float().double().numpy(),
                (rows + state["begin"]).numpy(),
                cols.numpy(),
                state["ids"][rows, cols].numpy(),
            )
        )

    handles = []
    for s in sites:
        if s.kind == "linear_input":
            handles.append(s.module.register_forward_pre_hook(lambda _m, a, n=s.name: keep(n, a[0])))
        else:
            handles.append(
                s.module.register_forward_hook(
                    lambda _m, _a, out, n=s.name: keep(n, out[0] if isinstance(out, tuple) else out)
                )
            )
    ids, mask = calib.to_torch()
    try:
        with torch.no_grad():
            for begin in range(0, ids.shape[0], batch_size):
                state.update(begin=begin, ids=ids[begin : begin + batch_size], mask=mask[begin : begin + batch_size])
                model(input_ids=state["ids"], attention_mask=state["mask"], use_cache=False)
    finally:
        for h in handles:
            h.remove()
    return {name: tuple(np.concatenate([part[i] for part in parts]) for i in range(4)) for name, parts in store.items()}


def _naive_massive(x, sample, position, token, threshold, ratio):
    a = np.abs(x)
    median = np.median(a, axis=1, keepdims=True)
    rows, channels = np.nonzero((a > threshold) & (a >= ratio * median))
    return {(int(c), int(sample[r]), int(position[r]), int(token[r])): float(a[r, c]) for r, c in zip(rows, channels)}


# ------------------------------------------------------------------ naive parity


def test_every_statistic_matches_a_naive_computation(model, calib):
    from calibench.inspect import activation_stats
    from calibench.inspect.accumulators import BIN_RATIO

    # thresholds low enough that a random tiny model has outlier counts and "massive" entries to compare
    stats = activation_stats(
        model,
        calib,
        batch_size=2,
        int8_threshold=1.5,
        massive_threshold=0.5,
        massive_ratio=5.0,
        massive_top_k=100_000,
        quantiles=(0.0, 0.5, 0.9, 0.99, 1.0),
    )
    full = _capture(model, calib)
    # q/k/v read one tensor, gate/up another: each is measured once, under the first, naming the others
    assert {s.name for s in stats.sites} == {n for n in full if not n.endswith(("k_proj", "v_proj", "up_proj"))}
    q = next(s for s in stats.sites if s.role == "self_attn.q_proj")
    gate = next(s for s in stats.sites if s.role == "mlp.gate_proj")
    assert q.shared == ["self_attn.k_proj", "self_attn.v_proj"] and gate.shared == ["mlp.up_proj"]
    for name in full:
        if name.endswith(("k_proj", "v_proj")):
            np.testing.assert_array_equal(full[name][0], full[name.replace(name[-6:], "q_proj")][0])
    assert any(s.kind == "residual" for s in stats.sites) and any(s.kind == "linear_input" for s in stats.sites)
    real = int(calib.attention_mask.sum())
    assert stats.tokens == real
    counted_any = massive_any = False
    for site in stats.sites:
        x, sample, position, token = full[site.name]
        a = np.abs(x)
        assert site.tokens == real == x.shape[0]
        np.testing.assert_allclose(site.channel_max_abs, a.max(axis=0), rtol=1e-6)
        np.testing.assert_allclose(site.channel_mean_abs, a.mean(axis=0), rtol=1e-6)
        np.testing.assert_allclose(site.channel_rms, np.sqrt((x**2).mean(axis=0)), rtol=1e-6)
        assert site.max_abs == pytest.approx(a.max(), rel=1e-6)
        for key, value in site.quantiles.items():
            exact = float(np.quantile(a, float(key), method="inverted_cdf"))
            assert exact / BIN_RATIO <= value <= exact * BIN_RATIO, (site.name, key, value, exact)
        d = x - x.mean(axis=1, keepdims=True)
        kurt = ((d**4).mean(axis=1) / (d**2).mean(axis=1) ** 2).mean()
        assert site.kurtosis == pytest.approx(kurt, rel=1e-7)
        counts = (a >= 1.5).sum(axis=0)
        assert site.int8_counts == counts.tolist()
        counted_any |= bool(counts.any())
        naive = _naive_massive(x, sample, position, token, 0.5, 5.0)
        got = {(m.channel, m.sample, m.position, m.token_id): m.value for m in site.massive}
        assert site.massive_total == len(naive) == len(got)
        assert got.keys() == naive.keys()
        massive_any |= bool(naive)
        for m in site.massive:
            assert m.layer == site.layer and m.site == site.name
            assert m.value == pytest.approx(naive[(m.channel, m.sample, m.position, m.token_id)], rel=1e-6)
    assert counted_any and massive_any  # the comparison was not vacuous


def test_massive_list_keeps_the_top_k_by_magnitude(model, calib):
    from calibench.inspect import activation_stats

    stats = activation_stats(
        model, calib, layers=r"layers\.0\.mlp\.gate_proj$", massive_threshold=0.5, massive_ratio=5.0, massive_top_k=5
    )
    (site,) = stats.sites
    x, sample, position, token = _capture(model, calib)[site.name]
    naive = _naive_massive(x, sample, position, token, 0.5, 5.0)
    assert site.massive_total == len(naive) > 5
    expected = sorted(naive.values(), reverse=True)[:5]
    np.testing.assert_allclose([m.value for m in site.massive], expected, rtol=1e-6)


def test_kurtosis_is_pearson_not_excess():
    import torch

    from calibench.inspect.accumulators import TokenKurtosis

    acc = TokenKurtosis()
    acc.update(torch.randn(64, 20_000, generator=torch.Generator().manual_seed(0)))
    assert acc.result() == pytest.approx(3.0, abs=0.05)


def test_histogram_quantiles_within_stated_resolution():
    import torch

    from calibench.inspect.accumulators import BIN_RATIO, LogHistogram

    x = torch.exp(torch.randn(50_000, generator=torch.Generator().manual_seed(1)) * 4)  # spans many decades
    x[:10] = 0.0
    hist = LogHistogram()
    for chunk in x.split(7_000):
        hist.update(chunk.unsqueeze(1))
    values = np.abs(x.double().numpy())
    for q in (0.0001, 0.01, 0.25, 0.5, 0.75, 0.99, 0.9999, 1.0):
        exact = float(np.quantile(values, q, method="inverted_cdf"))
        assert exact / BIN_RATIO <= hist.quantile(q) <= exact * BIN_RATIO, q
    assert hist.quantile(0.0) == 0.0  # zeros fall in the underflow bin


# ------------------------------------------------------------------ planted outlier


def test_planted_outlier_channel_is_found(tiny_model_dir, calib):
    import torch

    from calibench.inspect import activation_stats

    model = _load(tiny_model_dir)
    channel = 17
    real = calib.input_ids[calib.attention_mask.astype(bool)]
    token = int(np.bincount(real).argmax())  # the most frequent real token
    with torch.no_grad():
        model.get_input_embeddings().weight[token, channel] = 1e4  # enters the residual stream at every layer
    where = {(int(s), int(p)) for s, p in zip(*np.nonzero((calib.input_ids == token) & (calib.attention_mask == 1)))}
    fraction = len(where) / real.size
    stats = activation_stats(model, calib, massive_top_k=1_000, outlier_position_fraction=fraction / 2)

    residuals = [s for s in stats.sites if s.kind == "residual"]
    assert [s.layer for s in residuals] == [0, 1]
    for site in residuals:
        assert int(np.argmax(site.channel_max_abs)) == channel
        assert site.max_abs > 9e3
        found = {(m.sample, m.position) for m in site.massive}
        assert found == where
        assert all(m.channel == channel and m.token_id == token and m.layer == site.layer for m in site.massive)
    # after RMSNorm the planted channel is ~sqrt(hidden) = 11 >= 6 at exactly the planted positions
    for layer in (0, 1):
        q = next(s for s in stats.sites if s.layer == layer and s.role == "self_attn.q_proj")
        assert q.int8_counts[channel] == len(where)
    q_features = [f for f in stats.outlier_features if f.role == "self_attn.q_proj"]
    assert [(f.channel, f.layers) for f in q_features] == [(channel, [0, 1])]
    assert q_features[0].layer_fraction == 1.0
    assert q_features[0].max_position_fraction == pytest.approx(fraction)


def test_outlier_feature_rule_thresholds():
    from calibench.inspect import SiteStats, outlier_features

    def site(layer, counts):
        return SiteStats(
            name=f"l.{layer}",
            kind="linear_input",
            layer=layer,
            role="mlp.down_proj",
            width=3,
            tokens=100,
            channel_max_abs=[0.0] * 3,
            channel_mean_abs=[0.0] * 3,
            channel_rms=[0.0] * 3,
            max_abs=0.0,
            quantiles={},
            kurtosis=None,
            int8_counts=counts,
            massive_total=0,
            massive=[],
        )

    # channel 0: 6% of positions in 1 of 4 layers (25%): an outlier;
    # channel 1: 5% everywhere: not; channel 2: 6% in none
    sites = [site(0, [6, 5, 0]), site(1, [0, 5, 0]), site(2, [0, 5, 0]), site(3, [1, 5, 0])]
    found = outlier_features(sites)
    assert [(f.channel, f.layers) for f in found] == [(0, [0])]
    assert outlier_features(sites, layer_fraction=0.5) == []
    # the residual stream is not a matmul input: the LLM.int8 rule leaves it to the massive-activation statistics
    residual = [site.model_copy(update={"kind": "residual", "role": ""}) for site in sites]
    assert outlier_features(residual) == []
    assert [f.channel for f in outlier_features(sites, position_fraction=0.05)] == [0, 1]


# ------------------------------------------------------------------ padding, determinism, errors


def test_padding_is_ignored(model, calib, tiny_tokenizer):
    from calibench.inspect import activation_stats
    from calibench.inspect.accumulators import BIN_RATIO

    kwargs = dict(int8_threshold=1.5, massive_threshold=0.5, massive_ratio=5.0, massive_top_k=100_000)
    base = activation_stats(model, calib, **kwargs)
    other = activation_stats(model, repadded(calib, tiny_tokenizer, extra=9, pad_id=7), **kwargs)
    assert base.tokens == other.tokens and base.seq_len + 9 == other.seq_len
    for a, b in zip(base.sites, other.sites):
        assert a.name == b.name and a.tokens == b.tokens
        for field in ("channel_max_abs", "channel_mean_abs", "channel_rms"):
            np.testing.assert_allclose(getattr(a, field), getattr(b, field), rtol=1e-4, atol=1e-6)
        assert a.kurtosis == pytest.approx(b.kurtosis, rel=1e-4)
        for key in a.quantiles:
            assert a.quantiles[key] / BIN_RATIO <= b.quantiles[key] <= a.quantiles[key] * BIN_RATIO
        assert sum(abs(x - y) for x, y in zip(a.int8_counts, b.int8_counts)) <= 2  # only float ties at 1.5 may flip
        assert abs(a.massive_total - b.massive_total) <= 2


def test_same_inputs_give_identical_stats(model, calib):
    from calibench.inspect import ActivationStats, activation_stats

    first = activation_stats(model, calib, batch_size=3)
    second = activation_stats(model, calib, batch_size=3)
    assert first.model_dump() == second.model_dump()
    assert ActivationStats.model_validate_json(first.model_dump_json()) == first  # JSON round trip


def test_layer_filter_picks_sites(model, calib):
    from calibench.inspect import activation_stats, find_sites

    names = [s.name for s in find_sites(model, r"layers\.1\.mlp\.")]
    assert names and all(".layers.1.mlp." in n for n in names)
    stats = activation_stats(model, calib, layers=r"layers\.0\.self_attn\.q_proj$")
    assert [s.name for s in stats.sites] == ["model.layers.0.self_attn.q_proj"]


@pytest.mark.parametrize("pattern", ["no_such_module", "layers\\.("])
def test_bad_layer_filter_is_one_line_error(model, calib, pattern):
    from calibench.core.errors import CalibenchError
    from calibench.inspect import activation_stats

    with pytest.raises(CalibenchError) as info:
        activation_stats(model, calib, layers=pattern)
    message = str(info.value)
    assert "\n" not in message and "layer filter" in message


def test_non_finite_activations_raise_and_remove_hooks(tiny_model_dir, calib):
    import torch

    from calibench.core.errors import CalibenchError
    from calibench.inspect import activation_stats

    model = _load(tiny_model_dir)
    with torch.no_grad():
        model.get_input_embeddings().weight[int(calib.input_ids[0, 0])] = float("inf")
    with pytest.raises(CalibenchError) as info:
        activation_stats(model, calib)
    assert "\n" not in str(info.value) and ("inf" in str(info.value) or "nan" in str(info.value))
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def test_half_precision_model_with_gemma_sized_residuals(tiny_model_dir, calib):
    """A bfloat16 model whose residual reaches 1e5 (Gemma-like): float32 accumulation keeps everything finite."""
    import torch
    from transformers import AutoModelForCausalLM

    from calibench.inspect import activation_stats

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.bfloat16).eval()
    token = int(calib.input_ids[0, 0])
    with torch.no_grad():
        model.get_input_embeddings().weight[token, 3] = 1e5
    stats = activation_stats(model, calib, layers=r"layers\.0$")
    (site,) = stats.sites
    assert site.max_abs == pytest.approx(1e5, rel=0.01)
    assert all(np.isfinite(site.channel_rms)) and np.isfinite(site.kurtosis)
    assert site.massive and site.massive[0].channel == 3 and site.massive[0].token_id == token
