"""The CalibrationSet artifact: round trips, integrity checks, exports."""

from __future__ import annotations

import json

import numpy as np
import pytest

from calibench.core.errors import CalibenchError, CorruptArtifactError, TokenizerMismatchError
from calibench.data.calibset import CalibrationSet, tokens_sha256
from calibench.data.draw import build_calibration_set
from conftest import make_tokenizer


@pytest.fixture
def calib(text_file, tiny_tokenizer):
    return build_calibration_set(str(text_file), tiny_tokenizer, n=6, seq_len=24, seed=3)


def read_tree(path):
    return {p.name: p.read_bytes() for p in sorted(path.iterdir())}


def test_save_load_round_trip_is_exact(calib, tiny_tokenizer, tmp_path):
    calib.save(tmp_path / "a")
    loaded = CalibrationSet.load(tmp_path / "a", tokenizer=tiny_tokenizer)
    np.testing.assert_array_equal(loaded.input_ids, calib.input_ids)
    np.testing.assert_array_equal(loaded.attention_mask, calib.attention_mask)
    assert loaded.manifest == calib.manifest
    loaded.save(tmp_path / "b")
    assert read_tree(tmp_path / "a") == read_tree(tmp_path / "b")


def test_hash_is_independent_sha256_of_contents(calib):
    import hashlib

    digest = hashlib.sha256(b"calibench-tokens-v1")
    digest.update(np.asarray(calib.input_ids.shape, dtype="<i8").tobytes())
    digest.update(calib.input_ids.astype("<i4").tobytes())
    digest.update(calib.attention_mask.astype("u1").tobytes())
    assert calib.sha256 == digest.hexdigest()
    changed = calib.input_ids.copy()
    changed[0, 0] += 1
    assert tokens_sha256(changed, calib.attention_mask) != calib.sha256


def test_corrupted_tokens_are_refused(calib, tmp_path):
    calib.save(tmp_path / "s")
    ids = np.load(tmp_path / "s" / "input_ids.npy")
    ids[2, 5] = (ids[2, 5] + 1) % 100
    np.save(tmp_path / "s" / "input_ids.npy", ids)
    with pytest.raises(CorruptArtifactError, match="token hash"):
        CalibrationSet.load(tmp_path / "s")


@pytest.mark.parametrize(
    "damage",
    [
        lambda d: (d / "manifest.json").write_text("{not json"),
        lambda d: (d / "manifest.json").unlink(),
        lambda d: (d / "attention_mask.npy").write_bytes(b"garbage"),
        lambda d: np.save(d / "input_ids.npy", np.zeros((2, 2), dtype=np.int32)),
        lambda d: (d / "manifest.json").write_text(
            json.dumps({**json.loads((d / "manifest.json").read_text()), "n": "many"})
        ),
    ],
    ids=["bad-json", "no-manifest", "bad-mask", "wrong-shape", "bad-field"],
)
def test_damaged_sets_fail_with_one_line(calib, tmp_path, damage):
    calib.save(tmp_path / "s")
    damage(tmp_path / "s")
    with pytest.raises(CalibenchError) as info:
        CalibrationSet.load(tmp_path / "s")
    assert "\n" not in str(info.value)


def test_other_tokenizer_is_refused(calib, tmp_path):
    calib.save(tmp_path / "s")
    other = make_tokenizer(vocab_size=320)
    with pytest.raises(TokenizerMismatchError, match="rebuild the set"):
        CalibrationSet.load(tmp_path / "s", tokenizer=other)


def test_save_refuses_to_overwrite_and_leaves_nothing_on_failure(calib, tmp_path, monkeypatch):
    calib.save(tmp_path / "s")
    with pytest.raises(CalibenchError, match="already exists"):
        calib.save(tmp_path / "s")

    def boom(self, directory):
        (directory / "partial").write_text("x")
        raise RuntimeError("disk full")

    monkeypatch.setattr(CalibrationSet, "write_into", boom)
    with pytest.raises(RuntimeError):
        calib.save(tmp_path / "t")
    assert not (tmp_path / "t").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corpus.txt", "s"]


def test_hf_dataset_has_exactly_ids_and_mask(calib):
    ds = calib.to_hf_dataset()
    assert ds.column_names == ["input_ids", "attention_mask"]
    assert len(ds) == calib.n
    assert ds[3]["input_ids"] == calib.input_ids[3].tolist()
    assert ds[3]["attention_mask"] == [1] * calib.seq_len


def test_jsonl_export_decodes_each_window(calib, tiny_tokenizer, tmp_path):
    path = calib.export_jsonl(tmp_path / "w.jsonl", tiny_tokenizer)
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(records) == calib.n
    for record, row in zip(records, calib.input_ids):
        assert record["text"] == tiny_tokenizer.decode(row.tolist())
        assert record["num_tokens"] == calib.seq_len
        assert record["provenance"]["length"] == calib.seq_len
