"""Summarization metrics against references: rouge-score itself, hand-worked fragments and novel n-grams,
the SummaC-ZS aggregation on a stub NLI, HaRiM+ on hand-made probabilities, the bootstrap, the FSP check."""

from __future__ import annotations

import math

import numpy as np
import pytest

from calibench.summarize.consistency import aggregate, sentence_matrix, summac_zs
from calibench.summarize.fragments import extractive_fragments, fragments
from calibench.summarize.harim import harim_from_logprobs
from calibench.summarize.metrics import LEXICAL_METRICS, lexical_metrics
from calibench.summarize.nli import FunctionNli
from calibench.summarize.novel_ngrams import novel_ngrams
from calibench.summarize.rouge import rouge_f1
from calibench.summarize.stats import bootstrap_mean, paired_bootstrap
from calibench.summarize.text import sentences, words
from calibench.summarize.validate import pair_accuracy

ARTICLE = "The quick brown fox jumps over the lazy dog."
SUMMARY = "The brown fox jumps quickly over the dog."

PAIRS = [
    ("the cat sat on the mat", "the cat ran"),
    (
        "Police arrested two men after the robbery in Leeds on Friday.",
        "Two men were arrested by police following a robbery in Leeds.",
    ),
    ("Running runners ran; the runner runs.", "A runner was running."),
    ("", "something"),
]


@pytest.mark.parametrize("prediction,target", PAIRS)
def test_rouge_matches_rouge_score(prediction, target):
    from rouge_score import rouge_scorer

    ref = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True).score(target, prediction)
    got = rouge_f1(prediction, target)
    assert got == {k: ref[k].fmeasure for k in ("rouge1", "rouge2", "rougeL")}


def test_rouge_by_hand():
    # unigrams: 2 of 3 shared each way -> P = R = F1 = 2/3; bigrams: "the cat" 1 of 2 -> 1/2
    got = rouge_f1("the cat sat", "the cat ran")
    assert got["rouge1"] == pytest.approx(2 / 3) and got["rouge2"] == pytest.approx(0.5)


def test_fragments_hand_worked():
    # S = the brown fox jumps quickly over the dog (8), A = the quick brown fox jumps over the lazy dog (9)
    # greedy fragments: [the] [brown fox jumps] (quickly: none) [over the] [dog]
    frag = fragments(SUMMARY, ARTICLE)
    assert frag.fragments == (("the",), ("brown", "fox", "jumps"), ("over", "the"), ("dog",))
    assert frag.coverage == pytest.approx(7 / 8)
    assert frag.density == pytest.approx((1 + 9 + 4 + 1) / 8)
    assert frag.compression == pytest.approx(9 / 8)


def test_fragments_take_the_longest_match_and_edge_cases():
    # "a b" occurs at 0 (length 2) and "a b c" at 3 (length 3): the longest wins
    assert extractive_fragments(list("abcx"), list("abyabc")) == [("a", "b", "c")]
    assert extractive_fragments(list("xyz"), list("abc")) == []
    copy = fragments(ARTICLE, ARTICLE)
    assert copy.coverage == 1.0 and copy.density == 9.0  # one fragment of the whole text
    empty = fragments("", ARTICLE)
    assert math.isnan(empty.coverage) and math.isnan(empty.density)


def test_novel_ngrams_hand_worked():
    got = novel_ngrams(SUMMARY, ARTICLE)
    assert got["novel_1"] == pytest.approx(1 / 7)  # 7 distinct words, 'quickly' is new
    assert got["novel_2"] == pytest.approx(4 / 7)  # the brown, jumps quickly, quickly over, the dog
    assert got["novel_3"] == pytest.approx(5 / 6)  # only 'brown fox jumps' is in the article
    assert novel_ngrams(ARTICLE, ARTICLE) == {"novel_1": 0.0, "novel_2": 0.0, "novel_3": 0.0}
    assert math.isnan(novel_ngrams("one two", ARTICLE)["novel_3"])


def test_text_helpers():
    assert words("Hello, World! 42") == ["hello", "world", "42"]
    assert sentences('First one. Second one!\nThird (line) here? "Quoted" four.') == [
        "First one.",
        "Second one!",
        "Third (line) here?",
        '"Quoted" four.',
    ]
    assert sentences("Mr. smith went.\n...\n") == ["Mr. smith went."]  # no split after an abbreviation; no empty pieces


def test_repeated_share_by_hand():
    from calibench.summarize.repetition import repeated_share

    # "in 2012 in 2012 in 2012": 3-grams (in,2012,in) (2012,in,2012) (in,2012,in) (2012,in,2012): 2 distinct of 4
    assert repeated_share("In 2012\nIn 2012\nIn 2012") == pytest.approx(0.5)
    assert repeated_share("The cat sat on the mat.") == 0.0  # 4 distinct 3-grams of 4
    assert repeated_share("Ink ink ink ink ink ink") == pytest.approx(1 - 1 / 4)
    assert math.isnan(repeated_share("Too short"))


def test_lexical_metrics_cover_every_name():
    got = lexical_metrics(SUMMARY, ARTICLE, "A fox jumped.")
    assert set(got) == set(LEXICAL_METRICS)
    assert got["words"] == 8 and got["src_rouge1"] > got["rouge1"]


# ----------------------------------------------------------------------- consistency on a stub NLI

TABLE = {
    ("A.", "X."): 0.1,
    ("A.", "Y."): 0.9,
    ("B.", "X."): 0.5,
    ("B.", "Y."): 0.2,
    ("C.", "X."): 0.3,
    ("C.", "Y."): 0.4,
}
STUB = FunctionNli(lambda p, h: [TABLE.get((a, b), 0.0) for a, b in zip(p, h)], "stub")


def test_summac_zs_aggregation_on_a_stub_nli():
    m = sentence_matrix(STUB, ["A.", "B.", "C."], ["X.", "Y."])
    assert m.tolist() == [[0.1, 0.9], [0.5, 0.2], [0.3, 0.4]]
    assert aggregate(m) == pytest.approx((0.5 + 0.9) / 2)  # best source sentence per summary sentence, averaged
    scores = summac_zs(STUB, ["A. B. C.", "B.", "A. C."], ["X. Y.", "Y.", ""])
    assert scores[0] == pytest.approx(0.7) and scores[1] == pytest.approx(0.2) and math.isnan(scores[2])


def test_summac_zs_batches_every_document_in_one_call():
    calls = []

    def fn(p, h):
        calls.append(len(p))
        return [TABLE.get((a, b), 0.0) for a, b in zip(p, h)]

    nli = FunctionNli(fn)
    batched = summac_zs(nli, ["A. B. C.", "A. C."], ["X. Y.", "Y."])
    assert calls == [6]  # 6 + 2 pairs, of which the second document's (A, Y) and (C, Y) were already asked
    assert batched == [summac_zs(STUB, ["A. B. C."], ["X. Y."])[0], summac_zs(STUB, ["A. C."], ["Y."])[0]]


def test_summac_zs_scores_a_repeated_sentence_once_with_the_same_result():
    calls = []

    def fn(p, h):
        calls.append(len(p))
        return [TABLE.get((a, b), 0.0) for a, b in zip(p, h)]

    loop = "Y.\nY.\nY.\nX."
    assert summac_zs(FunctionNli(fn), ["A. B. C."], [loop]) == pytest.approx([(0.9 * 3 + 0.5) / 4])
    assert calls == [6]  # 3 source sentences x 2 distinct summary sentences, not x 4


def test_pair_accuracy_counts_strict_wins():
    from calibench.summarize.data import FactualPair

    pairs = [FactualPair("s", "good", "bad"), FactualPair("s", "good", "good"), FactualPair("s", "bad", "good")]
    score = lambda src, summ: [1.0 if x == "good" else 0.0 for x in summ]  # noqa: E731
    got = pair_accuracy(score, pairs)
    assert got["accuracy"] == pytest.approx(1 / 3) and got["ties"] == 1 and got["pairs"] == 3


# ----------------------------------------------------------------------- HaRiM+ and the bootstrap


def test_harim_plus_by_hand():
    lp_src, lp_lm = np.log([0.5, 0.8]), np.log([0.25, 0.8])
    harim = ((1 - 0.5) * (1 - 0.25) + (1 - 0.8) * (1 - 0.0)) / 2
    got = harim_from_logprobs(lp_src, lp_lm)
    assert got["harim_plus"] == pytest.approx(np.mean(lp_src) - 7 * harim)
    assert got["harim_gain"] == pytest.approx(np.mean(lp_src - lp_lm))
    assert math.isnan(harim_from_logprobs(np.zeros(0), np.zeros(0))["harim_plus"])


def test_bootstrap_is_seeded_and_paired():
    x = np.arange(20, dtype=float)
    a, b = bootstrap_mean(x), bootstrap_mean(x)
    assert a == b and a.low < a.mean == 9.5 < a.high and a.n == 20
    same = paired_bootstrap(x, x)
    assert same.mean == same.low == same.high == 0.0
    shifted = paired_bootstrap(x, x + 1 + 0.01 * np.sin(x))
    assert 0.99 < shifted.low <= shifted.high < 1.01  # pairing removes the between-document spread
    with_nan = paired_bootstrap([1.0, math.nan, 3.0], [2.0, 5.0, math.nan])
    assert with_nan.n == 1 and with_nan.mean == 1.0


def test_degeneration_lines_count_loops_and_restrict_consistency():
    from calibench.summarize.compare import Run, degeneration_lines, items_by_doc

    def item(doc, response, summac):
        return {"doc_hash": doc, "response": response, "metrics": {"summac_zs": summac}}

    fine = "The council approved the new budget on Monday."
    loop = "In 2012\nIn 2012\nIn 2012\nIn 2012"
    base = Run("dense", "summ:x", items_by_doc([item(f"d{i}", fine, 0.5) for i in range(6)]), {})
    other = Run(
        "pruned",
        "summ:x",
        items_by_doc(
            [item("d0", loop, 0.99), item("d1", loop, 0.99), item("d2", "Ok", 0.9)]
            + [item(f"d{i}", fine, 0.6) for i in (3, 4, 5)]
        ),
        {},
    )
    assert other.items["d0"]["metrics"]["repeat_3"] > 0.5  # filled in from the response
    (line,) = degeneration_lines(base, [other])
    assert "dense 0/6, pruned 3/6" in line  # two loops and one summary under 3 words
    assert "on the 3 documents where neither degenerated: +0.1000" in line


def test_token_logprobs_keeps_only_target_logits_and_matches_the_full_softmax(tiny_model_dir):
    """The judge's target log-probs equal an independent full-logit log-softmax, per row alone (no padding), while
    the head only ever sees the positions that predict a target token (memory: batch x kept x vocabulary)."""
    import torch
    from transformers import AutoModelForCausalLM

    from calibench.summarize.harim import token_logprobs

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    rng = np.random.default_rng(0)
    vocab = model.config.vocab_size
    contexts = [rng.integers(3, vocab, n).tolist() for n in (120, 90, 131, 40)]
    targets = [rng.integers(3, vocab, n).tolist() for n in (7, 12, 0, 5)]
    widths: list[int] = []
    hook = model.lm_head.register_forward_hook(lambda m, a, o: widths.append(a[0].shape[1]))
    got = token_logprobs(model, contexts, targets, batch_size=1)
    hook.remove()
    assert sorted(widths) == sorted(len(t) for t in targets if t)  # one row a forward: exactly its target positions
    assert got[2].size == 0
    hook = model.lm_head.register_forward_hook(lambda m, a, o: widths.append(a[0].shape[1]))
    widths.clear()
    batched = token_logprobs(model, contexts, targets, batch_size=4)  # padded together: the same numbers
    hook.remove()
    assert widths == [sum(len(t) for t in targets)]  # one forward: the union of the three rows' positions
    for a, b in zip(got, batched):
        np.testing.assert_allclose(a, b, atol=2e-5)
    with torch.inference_mode():
        for c, t, lp in zip(contexts, targets, got):
            if not t:
                continue
            full = model(input_ids=torch.tensor([c + t])).logits[0].float().log_softmax(-1)
            want = full[torch.arange(len(c) - 1, len(c) + len(t) - 1), torch.tensor(t)].numpy()
            np.testing.assert_allclose(lp, want, atol=2e-5)
