"""Vocabulary pruning on tiny Llama-style models, tied and untied: exactness, restore, errors, memory."""

from __future__ import annotations

import pytest
import torch

from conftest import corpus_text, fresh_model, tiny_llama_config

pytestmark = pytest.mark.usefixtures("one_thread")

MODES = ("restricted", "exact-input")


@pytest.fixture(scope="module")
def models(tmp_path_factory, tiny_tokenizer):
    """A tied and an untied tiny Llama (the untied one with a head bias-free Linear, as Llama has), saved."""
    from transformers import LlamaForCausalLM

    out = {}
    for tied in (True, False):
        path = tmp_path_factory.mktemp("tied" if tied else "untied")
        torch.manual_seed(1 if tied else 2)
        config = tiny_llama_config(tiny_tokenizer, hidden=64)
        config.tie_word_embeddings = tied
        model = LlamaForCausalLM(config)
        if tied:
            model.tie_weights()
        model.save_pretrained(path)
        tiny_tokenizer.save_pretrained(path)
        out[tied] = path
    return out


def batch(tokenizer, texts):
    enc = tokenizer(texts, return_tensors="pt", padding=True)
    return enc["input_ids"], enc["attention_mask"]


@pytest.fixture(scope="module")
def covered(tiny_tokenizer):
    """Texts and a keep set holding exactly their tokens (plus the always-kept ones)."""
    from calibench.vocab import from_ids

    texts = ["the quick brown fox jumps over a lazy dog", "seven wizards quietly box heavy jugs of liquid"]
    ids, _ = batch(tiny_tokenizer, texts)
    specials = [
        tiny_tokenizer.bos_token_id,
        tiny_tokenizer.eos_token_id,
        tiny_tokenizer.pad_token_id,
        tiny_tokenizer.unk_token_id,
    ]
    vocab = from_ids(tiny_tokenizer, [*ids.flatten().tolist(), *specials], with_always=False)  # small: ~40 of 300
    assert len(vocab.kept) < len(tiny_tokenizer) // 4
    return texts, vocab


def pruned_copy(path, vocab, mode, tokenizer, **kwargs):
    from calibench.vocab import prune

    model = fresh_model(path)
    state = prune(model, vocab, mode, tokenizer=tokenizer, source=str(path), **kwargs)
    return model, state


@pytest.mark.parametrize("tied", [True, False], ids=["tied", "untied"])
def test_exact_input_logits_are_identical_through_forward_and_generate(models, covered, tiny_tokenizer, tied):
    texts, vocab = covered
    full = fresh_model(models[tied])
    model, state = pruned_copy(models[tied], vocab, "exact-input", tiny_tokenizer)
    assert state.record.tied == tied and (model.lm_head.weight is model.model.embed_tokens.weight) == tied
    ids, mask = batch(tiny_tokenizer, texts)
    with torch.no_grad():
        diff = (full(ids, attention_mask=mask).logits - model(ids, attention_mask=mask).logits).abs().max()
    assert diff == 0.0
    # generation: the full head may pick an unkept token, so keep what the full model generates too
    prompt = ids[:1, :6]
    reference = full.generate(prompt, max_new_tokens=8, do_sample=False, pad_token_id=tiny_tokenizer.pad_token_id)
    from calibench.vocab import from_ids

    wider = from_ids(tiny_tokenizer, [*vocab.kept, *reference.flatten().tolist()], with_always=False)
    model, _ = pruned_copy(models[tied], wider, "exact-input", tiny_tokenizer)
    out = model.generate(prompt, max_new_tokens=8, do_sample=False, pad_token_id=tiny_tokenizer.pad_token_id,
                         output_scores=True, return_dict_in_generate=True)  # fmt: skip
    ref = full.generate(prompt, max_new_tokens=8, do_sample=False, pad_token_id=tiny_tokenizer.pad_token_id,
                        output_scores=True, return_dict_in_generate=True)  # fmt: skip
    assert torch.equal(out.sequences, ref.sequences)
    assert all(torch.equal(a, b) for a, b in zip(out.scores, ref.scores))


@pytest.mark.parametrize("tied", [True, False], ids=["tied", "untied"])
def test_restricted_differs_only_by_the_renormalisation(models, covered, tiny_tokenizer, tied):
    texts, vocab = covered
    full = fresh_model(models[tied])
    model, state = pruned_copy(models[tied], vocab, "restricted", tiny_tokenizer)
    assert (model.lm_head.weight is model.model.embed_tokens.weight) == tied  # the tie is kept
    assert model.model.embed_tokens.weight.shape[0] == len(vocab.kept)
    ids, mask = batch(tiny_tokenizer, texts)
    with torch.no_grad():
        a, b = full(ids, attention_mask=mask).logits, model(ids, attention_mask=mask).logits
    kept = torch.tensor(vocab.kept)
    dropped = torch.ones(a.shape[-1], dtype=torch.bool)
    dropped[kept] = False
    assert b.shape == a.shape
    assert torch.equal(b[..., kept], a[..., kept])  # kept-token logits: bit for bit
    assert torch.isneginf(b[..., dropped]).all()  # dropped tokens: probability exactly 0
    # log p_restricted(t) = log p_full(t) + logsumexp(all logits) - logsumexp(kept logits), per position
    a64, b64 = a.double(), b.double()
    shift = torch.logsumexp(a64, -1, keepdim=True) - torch.logsumexp(a64[..., kept], -1, keepdim=True)
    restricted = torch.log_softmax(b64, -1)[..., kept]
    assert torch.allclose(restricted, torch.log_softmax(a64, -1)[..., kept] + shift, rtol=0, atol=1e-12)
    assert (shift >= 0).all()
    # greedy generation emits kept tokens only, and equals the full model's greedy choice among kept tokens
    prompt = ids[:1, :6]
    out = model.generate(prompt, max_new_tokens=8, do_sample=False, pad_token_id=tiny_tokenizer.pad_token_id)
    assert set(out[0, 6:].tolist()) <= set(vocab.kept)
    seq = prompt
    with torch.no_grad():
        for _ in range(8):
            logits = full(seq).logits[0, -1]
            logits[dropped] = float("-inf")
            seq = torch.cat([seq, logits.argmax().view(1, 1)], dim=1)
    assert torch.equal(out, seq)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("tied", [True, False], ids=["tied", "untied"])
def test_save_reload_keeps_the_tie_and_restore_is_bit_identical(models, covered, tiny_tokenizer, tmp_path, tied, mode):
    from transformers import AutoModelForCausalLM

    from calibench.models import load_model
    from calibench.vocab import restore, save

    texts, vocab = covered
    model, state = pruned_copy(models[tied], vocab, mode, tiny_tokenizer)
    save(model, tmp_path / "p", tiny_tokenizer)
    again = load_model(tmp_path / "p", dtype="float32", device="cpu")  # calibench's loader knows vocab.json
    assert (again.lm_head.weight is again.model.embed_tokens.weight) == tied
    ids, mask = batch(tiny_tokenizer, texts)
    with torch.no_grad():
        assert torch.equal(model(ids, attention_mask=mask).logits, again(ids, attention_mask=mask).logits)
    plain = AutoModelForCausalLM.from_pretrained(tmp_path / "p")  # plain transformers: a K-token compact model
    assert plain.config.vocab_size == len(vocab.kept) and plain.config.pad_token_id == vocab.kept.index(
        tiny_tokenizer.pad_token_id
    )
    assert (plain.lm_head.weight is plain.model.embed_tokens.weight) == tied
    restore(tmp_path / "p", tmp_path / "r")
    original, restored = fresh_model(models[tied]), fresh_model(tmp_path / "r")
    a, b = original.state_dict(), restored.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    strip = lambda c: {k: v for k, v in c.to_dict().items() if k != "_name_or_path"}  # noqa: E731
    assert strip(restored.config) == strip(original.config)
    assert restored.generation_config.to_dict() == original.generation_config.to_dict()
    assert (restored.lm_head.weight is restored.model.embed_tokens.weight) == tied


def test_restore_by_reference_reads_and_checks_the_original(models, covered, tiny_tokenizer, tmp_path):
    from calibench.core.errors import CalibenchError
    from calibench.vocab import restore, save
    from calibench.vocab.checkpoint import DROPPED_FILE

    _, vocab = covered
    model, _ = pruned_copy(models[False], vocab, "restricted", tiny_tokenizer)
    save(model, tmp_path / "p", tiny_tokenizer, dropped="reference")
    assert not (tmp_path / "p" / DROPPED_FILE).exists()
    restore(tmp_path / "p", tmp_path / "r")
    a, b = fresh_model(models[False]).state_dict(), fresh_model(tmp_path / "r").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(CalibenchError, match="is not the model"):
        restore(tmp_path / "p", tmp_path / "r2", original=str(models[True]))
    assert not (tmp_path / "r2").exists()


@pytest.mark.parametrize("mode", MODES)
def test_uncovered_token_is_a_clear_error_or_the_counted_fallback(models, covered, tiny_tokenizer, mode):
    from calibench.vocab import TokenOutsideVocabularyError
    from calibench.vocab.prune import fallbacks_used

    _, vocab = covered
    outside = next(i for i in range(len(tiny_tokenizer)) if i not in set(vocab.kept))
    model, _ = pruned_copy(models[True], vocab, mode, tiny_tokenizer)
    ids = torch.tensor([[vocab.kept[5], outside, vocab.kept[6]]])
    with pytest.raises(TokenOutsideVocabularyError, match=f"token id {outside} .* is outside the pruned vocabulary"):
        model(ids)
    unk = tiny_tokenizer.unk_token_id
    model, _ = pruned_copy(models[True], vocab, mode, tiny_tokenizer, fallback=unk)
    with pytest.warns(UserWarning, match="replaced by the fallback"):
        with torch.no_grad():
            got = model(ids).logits
    with torch.no_grad():
        want = model(torch.tensor([[vocab.kept[5], unk, vocab.kept[6]]])).logits
    assert torch.equal(got, want) and fallbacks_used(model) == 1


def test_memory_report_counts_storage_not_parameters(models, covered, tiny_tokenizer):
    _, vocab = covered
    V, K, d = len(tiny_tokenizer), len(vocab.kept), 64
    _, restricted = pruned_copy(models[True], vocab, "restricted", tiny_tokenizer)
    rep = restricted.report
    assert rep.before.vocab_bytes == V * d * 4  # tied: one matrix, however many names
    assert rep.after.vocab_bytes == K * d * 4 + V * 4 + K * 8  # kept rows + id map (int32) + kept ids (int64)
    assert rep.before.model_bytes - rep.after.model_bytes == rep.before.vocab_bytes - rep.after.vocab_bytes
    _, exact = pruned_copy(models[True], vocab, "exact-input", tiny_tokenizer)
    assert (
        exact.report.after.vocab_bytes == V * d * 4 + V * 4 and exact.report.saved_vocab_pct < 0
    )  # honest: costs the id map
    assert exact.notes and "saves nothing" in exact.notes[0]
    _, untied = pruned_copy(models[False], vocab, "exact-input", tiny_tokenizer)
    assert untied.report.before.vocab_bytes == 2 * V * d * 4
    assert untied.report.after.vocab_bytes == (K + V) * d * 4 + V * 4


def test_prune_refusals(models, covered, tiny_tokenizer):
    from calibench.core.errors import CalibenchError, TokenizerMismatchError
    from calibench.vocab import Vocabulary, prune, unprune
    from conftest import make_tokenizer

    _, vocab = covered
    model = fresh_model(models[True])
    with pytest.raises(TokenizerMismatchError, match="was made for tokenizer"):
        prune(model, vocab, tokenizer=make_tokenizer(vocab_size=280))
    with pytest.raises(CalibenchError, match="keep set is empty"):
        prune(model, Vocabulary(tokenizer=vocab.tokenizer, kept=[]))
    with pytest.raises(CalibenchError, match="unknown vocab mode 'sideways'"):
        prune(model, vocab, "sideways")
    with pytest.raises(CalibenchError, match="is not in the keep set"):
        prune(model, vocab, fallback=next(i for i in range(300) if i not in vocab.kept))
    with pytest.raises(CalibenchError, match="never pruned"):
        unprune(model)

    class NoEmbedding(torch.nn.Module):
        config = model.config

        def get_input_embeddings(self):
            return None

    with pytest.raises(CalibenchError, match="has no input embedding"):
        prune(NoEmbedding(), vocab)
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    prune(model, vocab)
    with pytest.raises(CalibenchError, match="pruned already"):
        prune(model, vocab)
    unprune(model)  # in memory, from the rows kept at pruning
    assert all(torch.equal(weights[k], v) for k, v in model.state_dict().items())
    assert model.lm_head.weight is model.model.embed_tokens.weight


def test_collect_counts_inputs_keeps_specials_and_reports_coverage(
    tiny_tokenizer, tiny_text_set, tmp_path, text_file, heldout_file
):
    import numpy as np

    from calibench.core.errors import CalibenchError, TokenizerMismatchError
    from calibench.vocab import Inputs, Vocabulary, collect

    calib_dir = tmp_path / "set"
    tiny_text_set.save(calib_dir)
    vocab = collect(tiny_tokenizer, Inputs(calib=[str(calib_dir)], text=[str(text_file)]), heldout=[str(heldout_file)])
    ids = tiny_text_set.input_ids[tiny_text_set.attention_mask.astype(bool)]
    from_text = tiny_tokenizer(corpus_text(), add_special_tokens=True)["input_ids"]
    expected = np.bincount(ids, minlength=len(tiny_tokenizer)) + np.bincount(
        np.concatenate([np.asarray(t) for t in from_text]), minlength=len(tiny_tokenizer)
    )
    assert dict(zip(vocab.counted_ids, vocab.counts)) == {i: int(c) for i, c in enumerate(expected) if c}
    specials = {
        tiny_tokenizer.bos_token_id,
        tiny_tokenizer.eos_token_id,
        tiny_tokenizer.pad_token_id,
        tiny_tokenizer.unk_token_id,
    }
    assert specials <= set(vocab.kept) and len(vocab.always["bytes"]) == 256  # byte-level BPE: every byte token
    (cov,) = vocab.coverage
    held = tiny_tokenizer("\n\n".join(corpus_text(20, seed=5)))["input_ids"]
    assert cov.tokens == len(held) and cov.kept_tokens == sum(t in set(vocab.kept) for t in held)
    top = collect(tiny_tokenizer, Inputs(text=[str(text_file)]), top_k=10, min_count=2)
    counted = sorted(zip(top.counted_ids, top.counts), key=lambda p: (-p[1], p[0]))[:10]
    assert {i for i, _ in counted} <= set(top.kept) and len(set(top.kept) - {i for i, _ in counted}) <= len(
        {i for v in top.always.values() for i in v}
    )
    path = vocab.save(tmp_path / "v.json")
    assert Vocabulary.load(path, tokenizer=tiny_tokenizer).kept == vocab.kept
    from conftest import make_tokenizer

    with pytest.raises(TokenizerMismatchError, match="collect it again"):
        Vocabulary.load(path, tokenizer=make_tokenizer(vocab_size=280))
    with pytest.raises(CalibenchError, match="the keep set would be empty"):
        collect(tiny_tokenizer, Inputs(text=[str(text_file)]), min_count=10**9)
    with pytest.raises(CalibenchError, match="nothing to count"):
        collect(tiny_tokenizer, Inputs())
