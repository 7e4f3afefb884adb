"""Self-calibration on the real offline SmolLM2: start token choice, stop-word first tokens, statistics."""

from __future__ import annotations

import math

import pytest

pytestmark = pytest.mark.integration


def test_smollm2_generates_documents_from_endoftext(offline_assets):
    from calibench.data.stats import set_statistics
    from calibench.models import load_model, load_tokenizer
    from calibench.selfcal import load_stopwords, run_generation

    tokenizer = load_tokenizer("smollm2-135m")
    model = load_model("smollm2-135m")
    calib, stats = run_generation(model, tokenizer, n=2, seq_len=40, seed=0, first_token="stopwords", batch_size=2)
    gen = calib.manifest.generator
    # SmolLM2-Instruct's bos_token is <|im_start|> (a chat turn); documents start after <|endoftext|>
    assert gen["start_token"]["text"] == "<|endoftext|>" and gen["start_token"]["id"] == 0
    assert set(gen["stop_token_ids"]) == {0, 2} and gen["model"]["name"] == "smollm2-135m"
    assert calib.manifest.sampling.bos is False  # the window starts with <|endoftext|>, not the tokenizer's BOS
    words, _ = load_stopwords()
    for row in calib.input_ids.tolist():
        assert row[0] == 0 and tokenizer.decode([row[1]]).strip().lower() in words
    result = set_statistics(calib, tokenizer, model)
    assert 1 < result["perplexity"] < 10_000 and math.isfinite(result["zipf_coefficient"])
