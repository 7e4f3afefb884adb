"""The cheap signals: token statistics against naive code, the truncated compression against the full one,
the reconstruction error's zero and monotonicity, and determinism of every registered signal."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
import torch

from calibench.core.errors import CalibenchError, UnknownNameError
from calibench.predict import signals as S
from calibench.predict.reconstruction import output_error, reconstruction, truncated_copy
from calibench.predict.tokens import distinct_share, token_entropy, unigram_js
from conftest import corpus_text, fresh_model

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.filterwarnings("ignore")]


# ----------------------------------------------------------------- token statistics (pure)


def _naive_distribution(windows):
    counts = Counter(int(t) for w in windows for t in w)
    total = sum(counts.values())
    return {t: c / total for t, c in counts.items()}


def test_token_statistics_match_naive_counting():
    rng = np.random.default_rng(0)
    a = [rng.integers(0, 30, size=int(rng.integers(5, 40))) for _ in range(6)]
    b = [rng.integers(10, 60, size=int(rng.integers(5, 40))) for _ in range(4)]
    p, q = _naive_distribution(a), _naive_distribution(b)
    assert token_entropy(a) == pytest.approx(-sum(v * math.log2(v) for v in p.values()))
    total = sum(len(w) for w in a)
    assert distinct_share(a) == pytest.approx(len(p) / total)
    vocab = set(p) | set(q)
    m = {t: (p.get(t, 0) + q.get(t, 0)) / 2 for t in vocab}
    kl = lambda x: sum(v * math.log2(v / m[t]) for t, v in x.items() if v > 0)  # noqa: E731
    assert unigram_js(a, b) == pytest.approx((kl(p) + kl(q)) / 2)
    assert unigram_js(a, a) == pytest.approx(0.0, abs=1e-12)
    assert unigram_js([np.array([1, 2])], [np.array([3, 4])]) == pytest.approx(1.0)
    assert math.isnan(token_entropy([]))


# ----------------------------------------------------------------- registry


def test_signal_registry_names_groups_and_signs():
    assert [s.name for s in S.parse_signals("outliers")] == S.groups()["outliers"]
    picked = S.parse_signals("reconstruction,stats.eval_js,coverage")
    assert [s.name for s in picked] == [
        "reconstruction",
        "reconstruction.token",
        "stats.eval_js",
        "coverage",
        "coverage.diversity",
    ]
    assert len(S.parse_signals(None)) == len(S.SIGNALS)
    assert S.get_signal("reconstruction").sign == -1 and S.get_signal("outliers.kurtosis").sign == 0
    assert all(s.sign in (-1, 0, 1) for _, s in S.SIGNALS.items())
    assert [s.name for _, s in S.SIGNALS.items() if s.per_method] == ["reconstruction", "reconstruction.token"]
    with pytest.raises(UnknownNameError, match="unknown signal 'recon'.*known: coverage"):
        S.parse_signals("recon")


# ----------------------------------------------------------------- the truncated compression


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_model_dir, tiny_tokenizer):
    from calibench.data.draw import build_calibration_set

    root = tmp_path_factory.mktemp("signals")
    train, heldout = root / "train.txt", root / "heldout.txt"
    train.write_text("\n\n".join(corpus_text(200, seed=0)))
    heldout.write_text("\n\n".join(corpus_text(60, seed=7)))
    calib = build_calibration_set(str(train), tiny_tokenizer, n=8, seq_len=32, seed=0)
    other = build_calibration_set(str(train), tiny_tokenizer, n=8, seq_len=32, seed=1)
    held = build_calibration_set(str(heldout), tiny_tokenizer, n=8, seq_len=32, seed=0)
    return {"calib": calib, "other": other, "heldout": held, "heldout_path": heldout}


def test_truncated_copy_is_independent_and_computes_the_same_first_layers(tiny_model_dir, world):
    model = fresh_model(tiny_model_dir)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    shell = truncated_copy(model, 1)
    assert shell.config.num_hidden_layers == 1 and model.config.num_hidden_layers == 2
    assert len(shell.model.layers) == 1 and len(model.model.layers) == 2
    with torch.no_grad():
        for p in shell.parameters():
            p.add_(1.0)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # the original is untouched
    relative, per_token, tokens = output_error(model, truncated_copy(model, 1), world["heldout"], 1)
    assert relative == 0.0 and per_token == 0.0 and tokens == world["heldout"].num_tokens
    with pytest.raises(CalibenchError, match="between 1 and the model's 2"):
        truncated_copy(model, 3)


def test_truncated_compression_equals_the_first_layers_of_a_full_compression(tiny_model_dir, tiny_tokenizer, world):
    """The signal runs the real method: llm-compressor's sequential pipeline on k layers gives the full run's k
    layers."""
    from calibench.compress import compress
    from calibench.study.runner import quiet_libraries

    model = fresh_model(tiny_model_dir)
    shell = truncated_copy(model, 1)
    with quiet_libraries():
        compress(shell, world["calib"], "wanda", tokenizer=tiny_tokenizer, sparsity=0.5)
        full = fresh_model(tiny_model_dir)
        compress(full, world["calib"], "wanda", tokenizer=tiny_tokenizer, sparsity=0.5)
    truncated_layer = dict(shell.model.layers[0].named_parameters())
    for name, weight in full.model.layers[0].named_parameters():
        torch.testing.assert_close(truncated_layer[name], weight, rtol=0, atol=1e-6)
    assert float((full.model.layers[0].mlp.up_proj.weight == 0).float().mean()) == pytest.approx(0.5, abs=0.01)
    # and the dense model the signal reads from was never compressed
    assert float((model.model.layers[0].mlp.up_proj.weight == 0).float().mean()) < 0.01


def test_reconstruction_error_grows_with_sparsity(tiny_model_dir, tiny_tokenizer, world):
    model = fresh_model(tiny_model_dir)
    errors = [
        reconstruction(
            model, world["calib"], "wanda", world["heldout"], params={"sparsity": s}, k=1, tokenizer=tiny_tokenizer
        ).relative_error
        for s in (0.2, 0.5, 0.8)
    ]
    assert 0 < errors[0] < errors[1] < errors[2]


# ----------------------------------------------------------------- every signal, twice


def _values(model_dir, tokenizer, world):
    model = fresh_model(model_dir)
    probe = S.make_probe(
        model, tokenizer, str(model_dir), [f"ppl:{world['heldout_path']}"], 32, heldout_windows=8, k_layers=1
    )
    return {
        (name, calib): S.compute(name, probe, world[calib], "gptq", {"group_size": 0}).value
        for name in S.SIGNALS
        for calib in ("calib", "other")
    }


def test_every_signal_is_deterministic_and_tells_sets_apart(tiny_model_dir, tiny_tokenizer, world):
    first = _values(tiny_model_dir, tiny_tokenizer, world)
    second = _values(tiny_model_dir, tiny_tokenizer, world)
    assert first.keys() == second.keys()
    for key, value in first.items():
        assert value == second[key] or (math.isnan(value) and math.isnan(second[key])), key
    # the two sets are different draws: at least the set-dependent continuous signals differ
    for name in ("reconstruction", "coverage", "stats.mean_nll", "stats.eval_js", "outliers.kurtosis"):
        assert math.isfinite(first[(name, "calib")]) and first[(name, "calib")] != first[(name, "other")], name


def test_coverage_is_the_curation_metric_against_the_heldout_windows(tiny_model_dir, tiny_tokenizer, world):
    """The coverage signal equals data stats --pool's coverage with the held-out windows as the pool."""
    from calibench.curate.setstats import pool_statistics

    model = fresh_model(tiny_model_dir)
    probe = S.make_probe(
        model, tiny_tokenizer, str(tiny_model_dir), [f"ppl:{world['heldout_path']}"], 32, heldout_windows=8, k_layers=1
    )
    expected = pool_statistics([world["calib"]], probe.heldout, model)[0]
    assert S.compute("coverage", probe, world["calib"]).value == pytest.approx(expected["coverage"], rel=1e-5)
    assert S.compute("coverage.diversity", probe, world["calib"]).value == pytest.approx(
        expected["diversity"], rel=1e-5
    )
