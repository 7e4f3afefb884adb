"""window_nll against a naive token-by-token computation."""

from __future__ import annotations

import math

import numpy as np
import torch


def naive_nll(model, row):
    """Sum of -log p(x_t | x_<t) with one forward pass per prefix."""
    total = 0.0
    for t in range(1, len(row)):
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([row[:t]])).logits[0, -1].double()
        total -= torch.log_softmax(logits, dim=-1)[row[t]].item()
    return total


def test_window_nll_matches_naive_loop(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    from calibench.core.nll import window_nll

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    rng = np.random.default_rng(0)
    ids = rng.integers(5, model.config.vocab_size, size=(5, 12))
    result = window_nll(model, ids, batch_size=2)
    for i, row in enumerate(ids.tolist()):
        expected = naive_nll(model, row)
        assert math.isclose(result.nll_per_window[i], expected, rel_tol=1e-4)
    assert result.total_tokens == 5 * 11
    assert math.isclose(result.perplexity, math.exp(result.total_nll / 55), rel_tol=1e-12)


def test_masked_positions_are_ignored(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    from calibench.core.nll import window_nll

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    ids = np.arange(10, 22).reshape(1, 12)
    mask = np.ones_like(ids)
    mask[0, 8:] = 0  # right padding
    padded = window_nll(model, ids, mask)
    short = window_nll(model, ids[:, :8])
    assert padded.total_tokens == short.total_tokens == 7
    assert math.isclose(padded.total_nll, short.total_nll, rel_tol=1e-5)
