"""Building sets: determinism, BOS handling, size validation."""

from __future__ import annotations

import numpy as np
import pytest

from calibench.core.errors import CalibenchError
from calibench.data.draw import MAX_N, build_calibration_set, build_calibration_sets, tokenizer_adds_bos


def test_same_seed_same_set_other_seed_other_set(text_file, tiny_tokenizer):
    a = build_calibration_set(str(text_file), tiny_tokenizer, n=8, seq_len=32, seed=0)
    b = build_calibration_set(str(text_file), tiny_tokenizer, n=8, seq_len=32, seed=0)
    c = build_calibration_set(str(text_file), tiny_tokenizer, n=8, seq_len=32, seed=1)
    assert a.sha256 == b.sha256 and a.manifest == b.manifest
    assert c.sha256 != a.sha256


def test_token_cache_does_not_change_results(text_file, tiny_tokenizer):
    first = build_calibration_set(str(text_file), tiny_tokenizer, n=8, seq_len=32, seed=4, mode="concat")
    cached = build_calibration_set(str(text_file), tiny_tokenizer, n=8, seq_len=32, seed=4, mode="concat")
    assert first.sha256 == cached.sha256


def test_bos_always_prefixes_each_window_and_keeps_length(text_file, tiny_tokenizer):
    plain = build_calibration_set(str(text_file), tiny_tokenizer, n=4, seq_len=20, seed=0, bos=False)
    with_bos = build_calibration_set(str(text_file), tiny_tokenizer, n=4, seq_len=20, seed=0, bos=True)
    assert with_bos.input_ids.shape == plain.input_ids.shape == (4, 20)
    assert (with_bos.input_ids[:, 0] == tiny_tokenizer.bos_token_id).all()
    assert with_bos.manifest.sampling.bos and not plain.manifest.sampling.bos
    assert all(length == 19 for _, _, length in with_bos.manifest.sampling.windows)


def test_bos_auto_follows_the_tokenizer(text_file, tiny_tokenizer):
    from tokenizers import processors

    assert not tokenizer_adds_bos(tiny_tokenizer)
    auto = build_calibration_set(str(text_file), tiny_tokenizer, n=2, seq_len=16, seed=0)
    assert not auto.manifest.sampling.bos

    import copy

    gemma_like = copy.deepcopy(tiny_tokenizer)
    bos = gemma_like.bos_token
    gemma_like.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A", pair=f"{bos} $A $B", special_tokens=[(bos, gemma_like.bos_token_id)]
    )
    assert tokenizer_adds_bos(gemma_like)
    auto_bos = build_calibration_set(str(text_file), gemma_like, n=2, seq_len=16, seed=0)
    assert auto_bos.manifest.sampling.bos
    assert (auto_bos.input_ids[:, 0] == gemma_like.bos_token_id).all()


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"n": 0}, "^n must be between 1 and"),
        ({"n": -3}, "^n must be between 1 and"),
        ({"n": MAX_N + 1}, "^n must be between 1 and"),
        ({"seq_len": 1}, "^seq_len must be at least 2"),
        ({"seq_len": 300, "max_seq_len": 256}, "above the model's maximum of 256"),
        ({"sets": 0}, "^sets must be at least 1"),
        ({"split": "test"}, "has no split 'test'"),
        ({"mode": "sliding"}, "does not support sampling mode 'sliding'"),
    ],
)
def test_impossible_requests_fail_before_sampling(text_file, tiny_tokenizer, kwargs, message):
    args = {"n": 4, "seq_len": 16, **kwargs}
    with pytest.raises(CalibenchError, match=message):
        build_calibration_sets(str(text_file), tiny_tokenizer, **args)


def test_sets_drawn_together_are_a_partition_of_the_windows(text_file, tiny_tokenizer):
    sets = build_calibration_sets(str(text_file), tiny_tokenizer, n=3, seq_len=16, seed=9, sets=4)
    rows = np.concatenate([s.input_ids for s in sets])
    assert rows.shape == (12, 16)
    assert len({tuple(r) for r in rows.tolist()}) == 12
    assert len({s.set_id for s in sets}) == 4
