"""Perplexity protocol: equals an independent naive computation; windows, BOS and joins as specified."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from conftest import corpus_text

pytestmark = pytest.mark.usefixtures("one_thread")


def naive_perplexity(model, tokenizer, docs, seq_len, bos_id=None):
    """The papers' protocol written out plainly: one Python loop, one window at a time, float64."""
    ids = tokenizer("\n\n".join(docs), add_special_tokens=False)["input_ids"]
    body = seq_len - 1 if bos_id is not None else seq_len
    total_nll, total_tokens, start, windows = 0.0, 0, 0, 0
    while start + body <= len(ids):
        window = ([bos_id] if bos_id is not None else []) + ids[start : start + body]
        start += body
        windows += 1
        with torch.no_grad():
            logprobs = torch.log_softmax(model(torch.tensor([window])).logits[0].double(), dim=-1)
        for t in range(1, len(window)):
            total_nll -= logprobs[t - 1, window[t]].item()
            total_tokens += 1
    return math.exp(total_nll / total_tokens), windows, total_tokens


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    return model, AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.mark.parametrize("bos", ["never", "always"])
def test_perplexity_equals_naive_computation(tiny, bos):
    from calibench.evaluation import perplexity

    model, tokenizer = tiny
    docs = corpus_text(40, seed=3)
    result = perplexity(model, tokenizer, docs, seq_len=48, bos=bos, batch_size=3)
    expected, windows, tokens = naive_perplexity(
        model, tokenizer, docs, 48, tokenizer.bos_token_id if bos == "always" else None
    )
    assert result.windows == windows > 3
    assert result.tokens == tokens == windows * 47
    assert result.bos is (bos == "always")
    assert math.isclose(result.perplexity, expected, rel_tol=1e-4)


def test_evaluate_on_a_local_file_equals_naive_computation(tiny, tiny_model_dir, tmp_path):
    """The whole API path (task parsing, file source, model loading by spec) gives the naive number."""
    from calibench.evaluation import evaluate

    model, tokenizer = tiny
    docs = corpus_text(30, seed=4)
    path = tmp_path / "heldout.txt"
    path.write_text("\n\n".join(docs), encoding="utf-8")
    result = evaluate(str(tiny_model_dir), f"ppl:{path}", seq_len=64, batch_size=4)
    expected, windows, _ = naive_perplexity(model, tokenizer, docs, 64)
    row = result.rows[0]
    assert (row.task, row.metric, row.n, row.limit) == (f"ppl:{path}", "perplexity", windows, None)
    assert math.isclose(row.value, expected, rel_tol=1e-4)
    record = result.record(f"ppl:{path}")
    assert record.details["bos"] is False and record.details["seq_len"] == 64
    assert result.settings["bos"] == "auto" and result.settings["bos_resolved"] is False


def test_windows_are_consecutive_non_overlapping_and_drop_the_tail():
    from calibench.evaluation import cut_windows

    ids = np.arange(23)
    plain = cut_windows(ids, 5)
    assert plain.tolist() == [list(range(i, i + 5)) for i in range(0, 20, 5)]  # 20..22 dropped
    with_bos = cut_windows(ids, 5, bos_id=99)
    assert with_bos[:, 0].tolist() == [99] * 5
    assert with_bos[:, 1:].ravel().tolist() == list(range(20))  # 4 text tokens per window, tail 20..22 dropped
    assert cut_windows(ids, 5, max_windows=2).tolist() == plain[:2].tolist()
    assert cut_windows(ids[:3], 5).shape == (0, 5)


def test_bos_auto_follows_the_tokenizer(tiny_tokenizer):
    from calibench.core.errors import CalibenchError
    from calibench.evaluation.perplexity import resolve_bos_option

    class AddsBos:
        bos_token_id = 7

        def __call__(self, text, **kwargs):
            return {"input_ids": [7, 8]}

    assert resolve_bos_option(tiny_tokenizer, "auto") is False  # this tokenizer adds nothing
    assert resolve_bos_option(AddsBos(), "auto") is True
    assert resolve_bos_option(tiny_tokenizer, "always") is True
    assert resolve_bos_option(AddsBos(), "never") is False
    with pytest.raises(CalibenchError, match="--bos"):
        resolve_bos_option(tiny_tokenizer, "sometimes")


def test_joined_text_is_tokenized_once(tiny_tokenizer):
    """Tokens at document boundaries come from the joined text, not from per-document pieces."""
    from calibench.evaluation.perplexity import tokenize_joined

    docs = ["alpha beta", "gamma", "delta epsilon"]
    ids = tokenize_joined(docs, tiny_tokenizer, "\n\n")
    assert ids.tolist() == tiny_tokenizer("alpha beta\n\ngamma\n\ndelta epsilon", add_special_tokens=False)["input_ids"]
    spaced = tokenize_joined(docs, tiny_tokenizer, " ")
    assert spaced.tolist() == tiny_tokenizer("alpha beta gamma delta epsilon", add_special_tokens=False)["input_ids"]
