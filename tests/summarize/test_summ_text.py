"""Sentence splitting of lowercased text, and NLI pairs whose hypothesis alone fills the model's input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from calibench.summarize.consistency import summac_zs
from calibench.summarize.nli import FunctionNli, HfNli, encode_pairs
from calibench.summarize.text import sentences
from conftest import make_tokenizer

pytestmark = pytest.mark.filterwarnings("ignore")


# ----------------------------------------------------------------- sentences


def test_lowercased_text_has_sentences():
    text = "the council approved the plan on monday. residents objected! will it pass? officials think so."
    assert sentences(text) == [
        "the council approved the plan on monday.",
        "residents objected!",
        "will it pass?",
        "officials think so.",
    ]
    assert sentences(text.upper()) == [s.upper() for s in sentences(text)]  # case does not decide


def test_abbreviations_and_numbers_do_not_end_sentences():
    assert sentences("dr. smith met mr. jones at 3 p.m. in st. louis. the u.s. team won 2.5 points.") == [
        "dr. smith met mr. jones at 3 p.m. in st. louis.",
        "the u.s. team won 2.5 points.",
    ]
    assert sentences("she wrote it, e.g. book one. sales rose in 2019. no. they fell.") == [
        "she wrote it, e.g. book one.",
        "sales rose in 2019.",
        "no.",
        "they fell.",
    ]


def test_closing_quotes_stay_with_their_sentence():
    assert sentences('he said "we will win." then he left. (it was late.) the end') == [
        'he said "we will win."',
        "then he left.",
        "(it was late.)",
        "the end",
    ]


def test_a_lowercased_summary_is_scored_per_sentence():
    """SummaC-ZS takes the mean over summary sentences: one unsupported sentence of two halves the score."""
    source = "the bridge opened on monday. the mayor cut the ribbon."

    def supports(premises, hypotheses):
        return [1.0 if h.rstrip(".") in p else 0.0 for p, h in zip(premises, hypotheses)]

    score = summac_zs(FunctionNli(supports), [source], ["the bridge opened on monday. aliens landed."])
    assert score == [0.5]  # one sentence would have scored 0


# ----------------------------------------------------------------- NLI inputs


LONG = " ".join(f"claim{i % 37} word{i % 11}" for i in range(120))  # far more than 32 tokens


def test_a_hypothesis_longer_than_the_input_is_cut_in_its_row_only():
    tok = make_tokenizer()
    premises = ["the cat sat on the mat in the kitchen " * 8, "a short premise", "the dog ran"]
    hypotheses = ["the cat sat", LONG, "a dog ran home"]
    with pytest.raises(Exception, match="too short"):  # what the batch did before: every row lost
        tok(premises, hypotheses, truncation="only_first", max_length=32)
    enc, cut = encode_pairs(tok, premises, hypotheses, 32, padding="max_length", return_tensors="np")
    assert cut == 1 and enc["input_ids"].shape == (3, 32)
    for i in (0, 2):  # the other rows exactly as a batch of their own encodes them
        alone = tok([premises[i]], [hypotheses[i]], truncation="only_first", max_length=32, padding="max_length")
        assert enc["input_ids"][i].tolist() == alone["input_ids"][0]
    premise_ids = tok("a short premise", add_special_tokens=False)["input_ids"]
    row = enc["input_ids"][1].tolist()
    assert row[: len(premise_ids)] == premise_ids  # the premise kept whole, the hypothesis's end dropped
    assert int(enc["attention_mask"][1].sum()) == 32


@pytest.fixture(scope="module")
def tiny_nli_dir(tmp_path_factory):
    from transformers import BertConfig, BertForSequenceClassification

    tok = make_tokenizer()
    path = tmp_path_factory.mktemp("tiny-nli")
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(tok),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        pad_token_id=tok.pad_token_id,
        num_labels=2,
        id2label={0: "entailment", 1: "not_entailment"},
        label2id={"entailment": 0, "not_entailment": 1},
    )
    BertForSequenceClassification(config).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def test_hf_nli_scores_every_row_when_one_hypothesis_is_too_long(tiny_nli_dir):
    nli = HfNli(str(tiny_nli_dir), batch_size=8, max_length=48)
    premises = ["the cat sat on the mat", "a short premise", "the dog ran home"]
    hypotheses = ["the cat sat", LONG, "a dog ran"]
    together = nli(premises, hypotheses)
    assert together.shape == (3,) and np.isfinite(together).all() and nli.hypotheses_cut == 1
    alone = np.concatenate([nli([p], [h]) for p, h in zip(premises, hypotheses)])
    np.testing.assert_allclose(together, alone, atol=1e-5)  # each row as if scored by itself
