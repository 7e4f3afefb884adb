"""Vocabulary pruning on the real bundled SmolLM2 (tied 49,152 x 576 embedding): sizes and exactness."""

from __future__ import annotations

import pytest
import torch

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("one_thread"), pytest.mark.filterwarnings("ignore")]


def test_smollm2_wiki_vocabulary_restricted_and_exact_input(offline_assets, smollm2_tokenizer, tmp_path):
    from calibench.data.builders import build_sets
    from calibench.models import load_model
    from calibench.vocab import Inputs, collect, prune, save

    tok = smollm2_tokenizer
    calib = build_sets("wiki", tokenizer=tok, n=8, seq_len=128, seed=0)[0]
    calib.save(tmp_path / "set")
    vocab = collect(tok, Inputs(calib=[str(tmp_path / "set")]))
    V, d, K = 49152, 576, len(vocab.kept)
    assert K < V // 10
    window = torch.as_tensor(calib.input_ids[:1, :64], dtype=torch.long)
    full = load_model("smollm2-135m", dtype="float32", device="cpu")
    with torch.no_grad():
        reference = full(window).logits
    state = prune(full, vocab, "restricted", tokenizer=tok)
    rep = state.report
    assert rep.before.vocab_bytes == V * d * 4 and rep.after.vocab_bytes == K * d * 4 + V * 4 + K * 8
    assert full.lm_head.weight is full.model.embed_tokens.weight
    kept = torch.tensor(vocab.kept)
    with torch.no_grad():
        assert torch.equal(full(window).logits[..., kept], reference[..., kept])
    save(full, tmp_path / "p", tok)
    again = load_model(tmp_path / "p", dtype="float32", device="cpu")
    assert again.lm_head.weight is again.model.embed_tokens.weight
    exact = load_model("smollm2-135m", dtype="float32", device="cpu")
    prune(exact, vocab, "exact-input", tokenizer=tok)
    with torch.no_grad():
        assert torch.equal(exact(window).logits, reference)
