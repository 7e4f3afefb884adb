"""Set statistics: each one against a straightforward computation on small hand-made inputs."""

from __future__ import annotations

import json
import math
from collections import Counter

import numpy as np
import pytest

from calibench.data.calibset import CalibrationSet, SamplingRecord, SourceRecord
from calibench.data.stats import separator_ids, set_statistics
from calibench.data.stats.perplexity import set_perplexity
from calibench.data.stats.text import (
    document_lengths,
    mean_document_length,
    ngram_diversity,
    ngram_ratios,
    repetition_rate,
    text_statistics,
    vocabulary_coverage,
    windows_of,
    zipf_fit,
)

W = [np.array([5, 6, 5, 6, 5, 7]), np.array([1, 5, 6, 2, 8])]


def naive_ngrams(window, n):
    return [tuple(window[i : i + n]) for i in range(len(window) - n + 1)]


def test_ngram_ratios_by_hand():
    # unigrams: 11 tokens, distinct {1,2,5,6,7,8}
    # bigrams: (5,6)(6,5)(5,6)(6,5)(5,7) + (1,5)(5,6)(6,2)(2,8): 9, distinct 6 ((7,1) spans two windows: not counted)
    # trigrams: (5,6,5)(6,5,6)(5,6,5)(6,5,7) + (1,5,6)(5,6,2)(6,2,8): 7, distinct 6
    # 4-grams: (5,6,5,6)(6,5,6,5)(5,6,5,7) + (1,5,6,2)(5,6,2,8): 5, distinct 5
    ratios = ngram_ratios(W)
    assert ratios == {1: 6 / 11, 2: 6 / 9, 3: 6 / 7, 4: 5 / 5}
    assert ngram_diversity(W) == pytest.approx((6 / 11 + 6 / 9 + 6 / 7 + 1) / 4)


def test_ngram_diversity_matches_a_naive_count_on_random_windows():
    rng = np.random.default_rng(0)
    windows = [rng.integers(0, 6, size=rng.integers(1, 30)) for _ in range(7)]
    expected = []
    for n in (1, 2, 3, 4):
        grams = [g for w in windows for g in naive_ngrams(w.tolist(), n)]
        if grams:
            expected.append(len(set(grams)) / len(grams))
    assert ngram_diversity(windows) == pytest.approx(sum(expected) / len(expected))


def test_repetition_rate_by_hand():
    # [1,2,3,4,1,2,3,4,1]: 1234 2341 3412 4123 1234 2341 -> 6 occurrences, 2 repeats
    # [9,9,9,9,9]: 9999 9999 -> 2 occurrences, 1 repeat
    # [1,2,3,4]: 1234 -> 1 occurrence, 0 repeats (seen in another window: not a repeat)
    windows = [np.array([1, 2, 3, 4, 1, 2, 3, 4, 1]), np.array([9, 9, 9, 9, 9]), np.array([1, 2, 3, 4]), np.array([3])]
    assert repetition_rate(windows) == pytest.approx(3 / 9)
    naive_total = naive_repeats = 0
    for w in windows:
        seen = set()
        for g in naive_ngrams(w.tolist(), 4):
            naive_total += 1
            naive_repeats += g in seen
            seen.add(g)
    assert repetition_rate(windows) == pytest.approx(naive_repeats / naive_total)
    assert math.isnan(repetition_rate([np.array([1, 2])]))


def test_zipf_exact_power_law():
    # counts 60/r for r = 1..6: ln c = ln 60 - 1 * ln r exactly
    counts = [60, 30, 20, 15, 12, 10]
    tokens = np.concatenate([np.full(c, 100 + r) for r, c in enumerate(counts)])
    rng = np.random.default_rng(1)
    rng.shuffle(tokens)
    s, a = zipf_fit([tokens[:70], tokens[70:]])
    assert s == pytest.approx(1.0) and a == pytest.approx(math.log(60))


def test_zipf_matches_closed_form_least_squares():
    rng = np.random.default_rng(2)
    windows = [rng.zipf(1.5, size=300) % 50 for _ in range(3)]
    counts = sorted(Counter(np.concatenate(windows).tolist()).values(), reverse=True)
    x = [math.log(r) for r in range(1, len(counts) + 1)]
    y = [math.log(c) for c in counts]
    mx, my = sum(x) / len(x), sum(y) / len(y)
    slope = sum((xi - mx) * (yi - my) for xi, yi in zip(x, y)) / sum((xi - mx) ** 2 for xi in x)
    s, a = zipf_fit(windows)
    assert s == pytest.approx(-slope) and a == pytest.approx(my - slope * mx)


def test_vocabulary_coverage_by_hand():
    assert vocabulary_coverage(W, 100) == pytest.approx(6 / 100)


def test_document_lengths_by_hand():
    windows = [np.array([0, 5, 6, 7, 2, 0, 8, 9, 0]), np.array([4, 4, 0, 0, 4]), np.array([0, 2])]
    # runs: [5,6,7] [8,9] | [4,4] [4] (runs cut by the window edges count) | none
    assert document_lengths(windows, {0, 2}) == [3, 2, 2, 1]
    assert mean_document_length(windows, [0, 2]) == pytest.approx(2.0)
    assert document_lengths([np.array([3, 3, 3])], []) == [3]


def test_windows_of_drops_masked_tokens():
    ids = np.array([[1, 2, 3], [4, 5, 6]])
    mask = np.array([[1, 1, 0], [1, 1, 1]])
    assert [w.tolist() for w in windows_of(ids, mask)] == [[1, 2], [4, 5, 6]]


def test_text_statistics_bundle():
    stats = text_statistics(W, 100, [1, 2])
    assert stats["tokens"] == 11 and stats["distinct_tokens"] == 6 and stats["documents"] == 3
    assert stats["mean_document_length"] == pytest.approx((6 + 2 + 1) / 3)  # [5,6,5,6,5,7] [5,6] [8]


# --------------------------------------------------------------------------- with a tokenizer and model


def make_set(tokenizer, ids, mode="document", generator=None):
    source = SourceRecord(name="hand", kind="local", split="train")
    return CalibrationSet.create(
        np.asarray(ids),
        tokenizer,
        source=source,
        sampling=SamplingRecord(mode=mode, bos=False),
        seed=0,
        generator=generator,
    )


def test_perplexity_matches_a_naive_token_loop(tiny_model_dir, tiny_tokenizer):
    import torch

    from calibench.models import load_model

    model = load_model(tiny_model_dir)
    rng = np.random.default_rng(0)
    calib = make_set(tiny_tokenizer, rng.integers(4, len(tiny_tokenizer), size=(3, 12)))
    total, count = 0.0, 0
    with torch.no_grad():
        for row in calib.input_ids.tolist():
            for i in range(1, len(row)):
                logits = model(input_ids=torch.tensor([row[:i]])).logits[0, -1]
                total -= torch.log_softmax(logits.double(), -1)[row[i]].item()
                count += 1
    assert set_perplexity(calib, model) == pytest.approx(math.exp(total / count), rel=1e-5)
    stats = set_statistics(calib, tiny_tokenizer, model)
    assert stats["perplexity"] == pytest.approx(math.exp(total / count), rel=1e-5)


def test_separators_include_generator_tokens_and_concat_joiner(tiny_tokenizer):
    specials = {tiny_tokenizer.convert_tokens_to_ids(t) for t in ("<s>", "</s>", "<pad>", "<unk>")}
    plain = make_set(tiny_tokenizer, [[5, 6, 7]])
    assert set(separator_ids(plain, tiny_tokenizer)) == specials
    generated = make_set(tiny_tokenizer, [[5, 6, 7]], generator={"start_token": {"id": 9}, "stop_token_ids": [10]})
    assert set(separator_ids(generated, tiny_tokenizer)) == specials | {9, 10}
    concat = make_set(tiny_tokenizer, [[5, 6, 7]], mode="concat")
    joiner = tiny_tokenizer("\n\n", add_special_tokens=False)["input_ids"]
    assert set(separator_ids(concat, tiny_tokenizer)) == specials | (set(joiner) if len(joiner) == 1 else set())


def test_set_statistics_without_model(tiny_tokenizer):
    eos = tiny_tokenizer.eos_token_id
    calib = make_set(tiny_tokenizer, [[5, 6, eos, 7, 8, 9], [5, 5, 5, 5, 5, 5]])
    stats = set_statistics(calib, tiny_tokenizer)
    assert stats["perplexity"] is None and stats["documents"] == 3
    assert stats["mean_document_length"] == pytest.approx((2 + 3 + 6) / 3)
    assert stats["vocab_coverage"] == pytest.approx(6 / len(tiny_tokenizer))
    assert stats["repetition_rate"] == pytest.approx(2 / 6)  # 3 + 3 four-grams; 55555.. repeats twice


def test_cli_stats_several_sets_without_model(tiny_tokenizer, tiny_model_dir, tmp_path, capsys):
    from calibench.cli import main

    for i in range(2):
        make_set(tiny_tokenizer, np.arange(20).reshape(2, 10) + 4 + i).save(tmp_path / f"s{i}")
    # the recorded tokenizer name is the in-memory one here, so name the model
    try:
        main(
            [
                "data",
                "stats",
                str(tmp_path / "s0"),
                str(tmp_path / "s1"),
                "-m",
                str(tiny_model_dir),
                "--out",
                str(tmp_path / "st.json"),
            ]
        )
    except SystemExit as exc:
        assert not exc.code
    out = capsys.readouterr().out
    data = json.loads((tmp_path / "st.json").read_text())
    assert len(data["sets"]) == 2 and "n-gram" in data["definitions"] and "Zipf" in out


def test_cli_stats_bad_directory(tmp_path, capsys):
    from calibench.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["data", "stats", str(tmp_path / "nope")])
    assert exc.value.code == 2 and capsys.readouterr().err.startswith("error: ")
