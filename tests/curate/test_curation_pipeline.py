"""COLA stages 1-2, curate() and the CLI on a tiny model, tiny encoder and local-file sources (seconds)."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
from tests.conftest import WORDS, assert_one_line_error, run

from calibench.core.errors import CalibenchError
from calibench.curate.processing import (
    ProcessingSettings,
    boxed_answer,
    process_documents,
    reformat_text,
    truncate_at_paragraph,
)
from calibench.curate.scoring import (
    ScoreMatrix,
    capability_weights,
    symmetric_kl,
    token_distribution,
    token_similarity,
)
from calibench.data.sources.base import ListDocuments

# ------------------------------------------------------------------ stage 1


def test_capability_weights_general_and_targeted():
    assert capability_weights(["a", "b"]) == {"a": 1.0, "b": 1.0}
    assert capability_weights(["a", "b", "c"], "targeted", "b") == {"a": 0.2, "b": 1.0, "c": 0.2}
    with pytest.raises(CalibenchError, match="needs --target"):
        capability_weights(["a"], "targeted")
    with pytest.raises(CalibenchError, match="not one of"):
        capability_weights(["a"], "targeted", "z")
    with pytest.raises(CalibenchError, match="goes with --mode targeted"):
        capability_weights(["a"], "general", "a")


def test_a_source_without_documents_is_refused_before_any_work():
    from calibench.curate import CurationConfig

    with pytest.raises(CalibenchError, match="source 'random-vocab' has no documents"):
        CurationConfig(sources=["wiki", "random-vocab"]).check()


def test_token_similarity_bounds(tiny_tokenizer):
    p = token_distribution(["the quick brown fox"] * 3, tiny_tokenizer)
    q = token_distribution(["seven wizards box heavy jugs of liquid"] * 3, tiny_tokenizer)
    assert p.shape == (len(tiny_tokenizer),) and np.isclose(p.sum(), 1.0)
    assert token_similarity(p, p) == pytest.approx(1.0)
    assert symmetric_kl(p, q) == pytest.approx(symmetric_kl(q, p))
    assert 0.0 <= token_similarity(p, q) < 1.0


def test_score_matrix_formula_and_selection():
    m = ScoreMatrix(
        ["wiki", "math", "code"],
        ["cs", "math", "code"],
        0.6,
        embedding=np.array([[0.9, 0.1, 0.1], [0.3, 0.95, 0.2], [0.1, 0.3, 0.9]]),
        tokens=np.array([[0.8, 0.6, 0.5], [0.6, 0.9, 0.6], [0.5, 0.6, 0.9]]),
        settings={},
    )
    np.testing.assert_allclose(m.scores, 0.6 * m.embedding + 0.4 * m.tokens)
    general = capability_weights(m.capabilities)
    assert m.select(general) == ["wiki", "math", "code"]  # the best source of every capability
    targeted = capability_weights(m.capabilities, "targeted", "math")
    assert m.select(targeted) == ["math"]
    assert m.select(targeted, top_k=2)[0] == "math" and len(m.select(targeted, top_k=2)) == 2
    np.testing.assert_allclose(m.weighted(targeted), m.scores @ np.array([0.2, 1, 0.2]) / 1.4)
    rec = m.record(targeted)
    assert rec["scores"][1][1] == pytest.approx(0.6 * 0.95 + 0.4 * 0.9)
    assert rec["weights"]["math"] == 1.0


# ------------------------------------------------------------------ stage 2


def test_reformat_math_and_gsm8k():
    math = "Problem:\nWhat is $1+1$?\n\nSolution:\nWe add: $1+1=\\boxed{\\frac{4}{2}}$."
    assert (
        reformat_text(math)
        == "Question: What is $1+1$?\nReasoning: We add: $1+1=\\boxed{\\frac{4}{2}}$.\nAnswer: \\frac{4}{2}"
    )
    gsm = "Question: Tom has 2 apples and buys 3. How many?\nAnswer: 2 + 3 = 5 apples.\n#### 5"
    assert (
        reformat_text(gsm)
        == "Question: Tom has 2 apples and buys 3. How many?\nReasoning: 2 + 3 = 5 apples.\nAnswer: 5"
    )
    assert reformat_text("plain prose") is None
    assert boxed_answer("no box") is None


def test_truncation_at_paragraph_boundary(tiny_tokenizer):
    paras = [" ".join(WORDS[i : i + 8]) for i in range(0, 24, 8)]
    text = "\n\n".join(paras)
    full = tiny_tokenizer(text, add_special_tokens=False)["input_ids"]
    ids, how = truncate_at_paragraph(text, tiny_tokenizer, len(full))
    assert how == "none" and ids == full
    ids, how = truncate_at_paragraph(text, tiny_tokenizer, len(full) - 2)
    assert how == "paragraph"
    assert tiny_tokenizer.decode(ids) == "\n\n".join(paras[:2])
    ids, how = truncate_at_paragraph(paras[0], tiny_tokenizer, 3)
    assert how == "hard" and len(ids) == 3


def test_processing_filters_packs_and_pads(tiny_tokenizer):
    docs = ListDocuments(["tiny"] + [" ".join(random.Random(i).choices(WORDS, k=30)) for i in range(40)])
    settings = ProcessingSettings(min_tokens=5)
    out = process_documents(docs, tiny_tokenizer, 6, 48, np.random.default_rng(0), settings)
    assert out.tokens.shape == (6, 48) and out.mask.all()  # packed: full windows, no padding
    assert out.stats["too_short"] <= 1
    # each window starts with its first document
    first = docs.batch([out.documents[0][0]])[0]
    start = tiny_tokenizer(first, add_special_tokens=False)["input_ids"]
    assert out.tokens[0, : len(start)].tolist() == start[:48]
    assert len({d for w in out.documents for d in w}) == sum(len(w) for w in out.documents)  # no reuse
    padded = process_documents(
        docs, tiny_tokenizer, 4, 200, np.random.default_rng(0), ProcessingSettings(min_tokens=5, pack=False)
    )
    assert padded.mask.sum(1).max() < 200 and (padded.mask.sum(1) >= 5).all()
    from calibench.core.errors import CorpusTooShortError

    with pytest.raises(CorpusTooShortError, match="only"):
        process_documents(docs, tiny_tokenizer, 100, 48, np.random.default_rng(0), settings)


# ------------------------------------------------------------------ curate() on a tiny model


def _write(path, seed, vocab):
    rnd = random.Random(seed)
    docs = [" ".join(rnd.choices(vocab, k=rnd.randint(20, 60))) + "." for _ in range(120)]
    path.write_text("\n\n".join(docs), encoding="utf-8")
    return str(path)


@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
    d = tmp_path_factory.mktemp("corpora")
    return {
        "a": _write(d / "a.txt", 1, WORDS[:10]),
        "b": _write(d / "b.txt", 2, WORDS[10:]),
        "ref_a": _write(d / "ref_a.txt", 3, WORDS[:10]),
        "ref_b": _write(d / "ref_b.txt", 4, WORDS[10:]),
    }


def _config(corpora, encoder, **kw):
    from calibench.curate import CurationConfig

    base = dict(
        sources=[corpora["a"], corpora["b"]],
        capabilities=[f"cap_a={corpora['ref_a']}", f"cap_b={corpora['ref_b']}"],
        n=6,
        seq_len=32,
        pool_size=40,
        embedding_model=str(encoder),
        score_texts=8,
        min_tokens=8,
        n_init=3,
        batch_size=16,
    )
    base.update(kw)
    return CurationConfig(**base)


def test_curate_records_every_stage_and_selects_nearest_centroids(
    tiny_model_dir, tiny_tokenizer, tiny_encoder_dir, corpora
):
    from sklearn.cluster import KMeans

    from calibench.curate import curate

    result = curate(str(tiny_model_dir), _config(corpora, tiny_encoder_dir), tokenizer=tiny_tokenizer)
    calib, pool = result.calib, result.pool
    m = calib.manifest
    assert (m.source.name, m.source.kind, m.sampling.mode) == ("curated", "curated", "curated")
    assert m.parents == [pool.set_id] and calib.input_ids.shape == (6, 32) and pool.n == 40
    g = m.generator
    assert np.array(g["stage1"]["scores"]).shape == (2, 2)
    assert g["stage1"]["alpha"] == 0.6 and g["stage1"]["mode"] == "general"
    assert set(g["stage1"]["selected_sources"]) <= {corpora["a"], corpora["b"]}
    assert g["pool"]["size"] == 40 and g["pool"]["set_id"] == pool.set_id
    assert g["stage3"]["projection"]["dim"] == 64 and g["stage3"]["layers"]["count"] == 2
    km = g["stage3"]["kmeans"]
    assert km["seed"] == 0 and km["k"] == 6 and km["n_init"] == 3
    assert g["chosen_pool_indices"] == km["chosen_pool_indices"] == result.selection.indices
    # the rows are the chosen pool rows
    assert np.array_equal(calib.input_ids, pool.input_ids[g["chosen_pool_indices"]])
    # nearest member of each centroid of an independent scikit-learn run on the same features
    feats = result.features
    ref = KMeans(n_clusters=6, n_init=3, random_state=0).fit(feats)
    nearest = ((feats[None].astype(np.float64) - ref.cluster_centers_[:, None]) ** 2).sum(-1).argmin(1)
    assert set(nearest.tolist()) <= set(g["chosen_pool_indices"])
    assert g["metrics"]["coverage"] > 0 and g["metrics"]["diversity"] > 0
    # the same seed gives the same set, byte for byte
    again = curate(str(tiny_model_dir), _config(corpora, tiny_encoder_dir), tokenizer=tiny_tokenizer)
    assert again.calib.set_id == calib.set_id and again.calib.manifest == calib.manifest
    # the random baseline draws from the very same pool
    rnd = curate(
        str(tiny_model_dir), _config(corpora, tiny_encoder_dir, selection="random", seed=3), tokenizer=tiny_tokenizer
    )
    assert rnd.pool.set_id == pool.set_id and rnd.calib.manifest.parents == [pool.set_id]
    assert rnd.calib.manifest.source.name == "curation-pool-random"


def test_curate_cli_and_stats_pool(tiny_model_dir, tiny_encoder_dir, corpora, tmp_path, capsys):
    out = tmp_path / "cur"
    argv = [
        "data",
        "curate",
        "--model",
        str(tiny_model_dir),
        "--sources",
        f"{corpora['a']},{corpora['b']}",
        "--capabilities",
        f"cap_a={corpora['ref_a']},cap_b={corpora['ref_b']}",
        "--mode",
        "targeted",
        "--target",
        "cap_b",
        "--n",
        "5",
        "--seq-len",
        "32",
        "--pool-size",
        "30",
        "--embedding-model",
        str(tiny_encoder_dir),
        "--score-texts",
        "8",
        "--min-tokens",
        "8",
        "--n-init",
        "2",
        "--top-k",
        "2",
        "--proxy",
        "wanda",
        "--max-windows",
        "2",
        "--out",
        str(out),
    ]
    code, stdout, err = run(argv, capsys)
    assert code == 0, err
    assert "stage 1" in stdout and "coverage" in stdout and "proxy evaluation" in stdout
    proxy = json.loads((out / "proxy.json").read_text())
    assert [r["set"] for r in proxy["results"]] == ["curated", "random"]
    assert set(proxy["results"][0]["perplexity"]) == {"cap_a", "cap_b"}
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["generator"]["stage1"]["weights"] == {"cap_a": 0.2, "cap_b": 1.0}
    assert (out / "pool" / "manifest.json").is_file()
    code, stdout, err = run(
        [
            "data",
            "stats",
            str(out),
            "--model",
            str(tiny_model_dir),
            "--pool",
            str(out / "pool"),
            "--out",
            str(tmp_path / "s.json"),
        ],
        capsys,
    )
    assert code == 0, err
    assert "coverage" in stdout
    row = json.loads((tmp_path / "s.json").read_text())["sets"][0]
    assert row["activation_metrics"]["rows_in_pool"] == 5
    # the stats hook measures in its own projection (seed 0): same features as curate's seed-0 run
    assert row["activation_coverage"] == pytest.approx(manifest["generator"]["metrics"]["coverage"], rel=1e-4)


@pytest.mark.parametrize(
    "extra, fragments",
    [
        (["--mode", "targeted"], ("--target",)),
        (["--capabilities", "telepathy"], ("unknown capability 'telepathy'",)),
        (["--n", "50", "--pool-size", "10"], ("--pool-size 10", "smaller than n 50")),
        (["--sources", "nosuchsource"], ("unknown source",)),
        (["--alpha", "2"], ("--alpha",)),
    ],
)
def test_curate_cli_one_line_errors(tiny_model_dir, tmp_path, capsys, extra, fragments):
    argv = ["data", "curate", "--model", str(tiny_model_dir), "--out", str(tmp_path / "x"), "--seq-len", "32", *extra]
    code, _, err = run(argv, capsys)
    assert_one_line_error(code, err, *fragments)
    assert not (tmp_path / "x").exists()


def test_stats_pool_needs_model(tiny_model_dir, tiny_tokenizer, tmp_path, capsys):
    from calibench.data.calibset import CalibrationSet, SamplingRecord, SourceRecord

    calib = CalibrationSet.create(
        np.ones((2, 8), np.int32),
        tiny_tokenizer,
        source=SourceRecord(name="x", kind="x", split="s"),
        sampling=SamplingRecord(mode="m", bos=False),
        seed=0,
    )
    calib.save(tmp_path / "s")
    code, _, err = run(["data", "stats", str(tmp_path / "s"), "--pool", str(tmp_path / "s")], capsys)
    assert_one_line_error(code, err, "--pool needs --model")


def test_proxy_evaluation_compresses_and_scores_each_capability(tiny_model_dir, tiny_tokenizer, corpora):
    from calibench.curate.proxy import proxy_evaluate
    from calibench.data.draw import build_calibration_set

    calib = build_calibration_set(corpora["a"], tiny_tokenizer, n=4, seq_len=32, seed=0)
    caps = [f"cap_a={corpora['ref_a']}", f"cap_b={corpora['ref_b']}"]
    r = proxy_evaluate(str(tiny_model_dir), calib, "wanda", caps, tokenizer=tiny_tokenizer, seq_len=32, max_windows=3)
    assert set(r.perplexity) == {"cap_a", "cap_b"} and all(np.isfinite(v) and v > 1 for v in r.perplexity.values())
    assert r.windows == {"cap_a": 3, "cap_b": 3}
    assert r.compression["achieved"] and r.record()["set_id"] == calib.set_id


def test_curate_cli_proxy_rejects_unknown_method_first(tiny_model_dir, tmp_path, capsys):
    argv = [
        "data",
        "curate",
        "--model",
        str(tiny_model_dir),
        "--out",
        str(tmp_path / "x"),
        "--seq-len",
        "32",
        "--proxy",
        "wandaa",
    ]
    code, _, err = run(argv, capsys)
    assert_one_line_error(code, err, "unknown method 'wandaa'")


def test_curate_seeds_shares_one_capture_and_equals_curate_per_seed(
    tiny_model_dir, tiny_tokenizer, tiny_encoder_dir, corpora
):
    from calibench.curate import curate
    from calibench.curate.pipeline import curate_seeds

    config = _config(corpora, tiny_encoder_dir)
    together = curate_seeds(str(tiny_model_dir), [0, 3], config, tokenizer=tiny_tokenizer)
    for seed, result in zip([0, 3], together):
        alone = curate(str(tiny_model_dir), config, tokenizer=tiny_tokenizer, seed=seed)
        assert result.calib.set_id == alone.calib.set_id and result.calib.manifest == alone.calib.manifest
        assert np.array_equal(result.features, alone.features)
    assert together[0].pool.set_id == together[1].pool.set_id
    assert together[0].calib.set_id != together[1].calib.set_id
