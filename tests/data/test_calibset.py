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


def _rehashed(calib, tmp_path, ids=None, mask=None, change=None):
    """The set saved with new arrays (or manifest fields) and hashes re-derived: only content checks can tell."""
    from calibench.data.calibset import IDS_FILE, MANIFEST, MASK_FILE, Manifest, identity_set_id

    ids = calib.input_ids if ids is None else ids
    mask = calib.attention_mask if mask is None else mask
    path = tmp_path / "s"
    calib.save(path)
    np.save(path / IDS_FILE, ids)
    np.save(path / MASK_FILE, mask)
    body = json.loads((path / MANIFEST).read_text())
    body["n"], body["seq_len"] = int(ids.shape[0]), int(ids.shape[1])
    if change:
        change(body)
    body["tokens_sha256"] = tokens_sha256(ids, mask)
    body["set_id"] = identity_set_id(Manifest.model_validate(body))
    (path / MANIFEST).write_text(json.dumps(body))
    return path


@pytest.mark.parametrize(
    "edit, fragment",
    [
        (lambda c: {"mask": np.zeros_like(c.attention_mask)}, "every window has an all-zero attention mask"),
        (lambda c: {"mask": np.where(c.attention_mask > 0, 7, 0).astype(np.uint8)}, "attention mask holds 7"),
        (lambda c: {"ids": c.input_ids[:0], "mask": c.attention_mask[:0]}, "it has no windows"),
        (lambda c: {"ids": c.input_ids[:, :1], "mask": c.attention_mask[:, :1]}, "needs at least 2"),
        (
            lambda c: {"mask": np.vstack([c.attention_mask[:1] * 0, c.attention_mask[1:]])},
            "window 0 has an all-zero attention mask",
        ),
    ],
    ids=["mask-all-zero", "mask-seven", "n-zero", "seq-len-one", "empty-window"],
)
def test_consistent_hashes_with_invalid_content_are_refused(calib, tmp_path, edit, fragment):
    path = _rehashed(calib, tmp_path, **edit(calib))
    with pytest.raises(CorruptArtifactError, match=fragment) as info:
        CalibrationSet.load(path)
    assert "\n" not in str(info.value)


def test_an_id_beyond_the_tokenizer_is_refused_with_the_tokenizer(calib, tiny_tokenizer, tmp_path):
    """The manifest's vocabulary size was raised with the hashes: only the real tokenizer shows the id is invalid."""
    ids = calib.input_ids.copy()
    ids[1, 3] = len(tiny_tokenizer) + 20
    grow = lambda body: body["tokenizer"].__setitem__("vocab_size", len(tiny_tokenizer) + 50)  # noqa: E731
    path = _rehashed(calib, tmp_path, ids=ids, change=grow)
    CalibrationSet.load(path)  # nothing without a tokenizer tells it apart
    with pytest.raises(CorruptArtifactError, match=f"but its tokenizer has {len(tiny_tokenizer)} tokens"):
        CalibrationSet.load(path, tokenizer=tiny_tokenizer)
