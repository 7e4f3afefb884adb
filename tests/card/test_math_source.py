"""The offline ``math`` source shares no text with any offline benchmark, and the card flags the old overlap.

The source used to hold the pack's GSM8K documents, which are the test split
the offline ``gsm8k`` task scores.  A set built that way (from the GSM8K test
texts, formatted as the source formatted them) must be flagged against
``gsm8k`` by the card's measured n-gram check alone, with no source declaring
it; the current ``math`` source, checked whole, must overlap no offline task.
"""

from __future__ import annotations

import re

import pytest

from calibench.card import gather, render
from calibench.card.benchmarks import TASK, offline_benchmarks
from calibench.card.contamination import benchmark_overlap, index_windows, normalize
from calibench.data.sources.offline import (
    CALIBRATION,
    OFFLINE_DOMAINS,
    OfflineDomain,
    OfflineSource,
    _requests,
    is_heldout,
)

pytestmark = [pytest.mark.integration, pytest.mark.filterwarnings("ignore")]

_CALCULATOR = re.compile(r"<<[^>]*>>")


def old_gsm8k_texts() -> list[str]:
    """The GSM8K part of the ``math`` source as it was built before: the pack's gsm8k (test) documents."""
    return [f"Question: {doc['question']}\nAnswer: {_CALCULATOR.sub('', doc['answer'])}" for doc in _requests("gsm8k")]


def test_a_set_built_the_old_way_is_flagged_against_gsm8k(offline_assets, tiny_tokenizer):
    from calibench.data.draw import build_calibration_set

    texts = old_gsm8k_texts()
    assert len(texts) == 1319  # the whole test split lm-eval's gsm8k scores
    # declares nothing: the flag must come from the measured overlap
    old = OfflineSource(OfflineDomain("math-old", "GSM8K texts, formatted as the old math source", lambda: texts, ()))
    calib = build_calibration_set(old, tiny_tokenizer, n=8, seq_len=96, seed=0)
    sheet = gather(calib, tiny_tokenizer, benchmarks=offline_benchmarks({"gsm8k", "arc_easy"}))
    c = sheet.contamination
    assert c.declared == {}
    found = {o.benchmark: o for o in c.overlaps}
    assert found["gsm8k"].items_hit > 0 and found["gsm8k"].windows_hit > 0
    assert found["arc_easy"].items_hit == 0
    assert c.flagged() == ["gsm8k"]
    assert "**Flagged: gsm8k.**" in render(sheet)
    # each reported item's quoted n-gram is in that test row's text
    from calibench.evaluation.mirrors import build_mirror

    rows = build_mirror("gsm8k").splits["test"]
    for hit in found["gsm8k"].top:
        index = int(re.fullmatch(r"test\[(\d+)\]", hit.label).group(1))
        assert hit.example in " ".join(normalize(rows[index]["question"] + " " + rows[index]["answer"]))


def test_the_old_source_overlapped_gsm8k_item_for_item(offline_assets):
    """Checked whole, every GSM8K test item the old source held is found (the check misses none)."""
    texts = old_gsm8k_texts()
    gsm8k = next(t for t in offline_benchmarks({"gsm8k"}).texts if t.name == "gsm8k")
    calibration_part = [t for t in texts if not is_heldout(t)]
    overlap = benchmark_overlap(index_windows(calibration_part), "gsm8k", gsm8k.items, labels=gsm8k.labels)
    assert overlap.items_hit >= len(calibration_part)  # each of its documents is one test item


def test_the_math_source_overlaps_no_offline_task(offline_assets):
    math = next(d for d in OFFLINE_DOMAINS if d.name == "math")
    assert "gsm8k" not in math.shares_items_with
    docs = OfflineSource(math).documents(CALIBRATION)
    texts = docs.batch(range(len(docs)))
    assert len(texts) > 4000  # the MATH solutions are all there
    assert not any(t.startswith("Question:") for t in texts)
    index = index_windows(texts)
    benchmarks = offline_benchmarks()
    tasks = [t for t in benchmarks.texts if t.kind == TASK]
    assert {t.name for t in tasks} >= {"gsm8k", "arc_challenge", "sciq", "boolq"}
    hits = {t.name: benchmark_overlap(index, t.name, t.items).items_hit for t in tasks}
    assert hits == dict.fromkeys(hits, 0)
