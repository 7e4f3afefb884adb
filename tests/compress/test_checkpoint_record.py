"""The file record of calibench checkpoints: written with every checkpoint, verified by every reader first."""

from __future__ import annotations

import hashlib
import json
import shutil

import pytest

from calibench.compress.checkpoint import CHECKPOINT_FILE, verify
from calibench.core.errors import CorruptArtifactError
from conftest import fresh_model

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, tiny_model_dir, tiny_tokenizer):
    """A magnitude-pruned tiny Llama saved by calibench, with its tokenizer."""
    from calibench.compress import compress
    from calibench.data.draw import build_calibration_set
    from conftest import corpus_text

    root = tmp_path_factory.mktemp("ckpt")
    text = root / "corpus.txt"
    text.write_text("\n\n".join(corpus_text()), encoding="utf-8")
    calib = build_calibration_set(str(text), tiny_tokenizer, n=4, seq_len=32, seed=0)
    result = compress(fresh_model(tiny_model_dir), calib, "magnitude", tokenizer=tiny_tokenizer)
    return result.save(root / "good", tiny_tokenizer)


def rehash(directory, **fields):
    record = json.loads((directory / CHECKPOINT_FILE).read_text())
    for name in record["files"]:
        data = (directory / name).read_bytes()
        record["files"][name] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
    record.update(fields)
    (directory / CHECKPOINT_FILE).write_text(json.dumps(record))


def test_round_trip_records_every_file_and_the_tokenizer(checkpoint, tiny_tokenizer):
    from calibench.data.tokenizer import identify
    from calibench.models import load_model

    record = json.loads((checkpoint / CHECKPOINT_FILE).read_text())
    on_disk = sorted(p.name for p in checkpoint.iterdir() if p.name != CHECKPOINT_FILE)
    assert sorted(record["files"]) == on_disk and "calibench.json" in on_disk
    assert record["tokenizer"] == identify(tiny_tokenizer).to_dict()
    assert record["kind"] == "compressed" and record["vocab_size"] == len(tiny_tokenizer)
    assert record["embedding"]["shape"][0] == len(tiny_tokenizer)
    assert verify(checkpoint) is None
    assert load_model(checkpoint, dtype="float32", device="cpu").config.vocab_size == len(tiny_tokenizer)


def _flip(directory):
    file = directory / "model.safetensors"
    data = bytearray(file.read_bytes())
    data[-100] ^= 0xFF
    file.write_bytes(bytes(data))


def _other_tokenizer(directory):
    from conftest import make_tokenizer

    make_tokenizer(vocab_size=280).save_pretrained(directory)


def _edit_record(directory):
    body = json.loads((directory / "calibench.json").read_text())
    body["method"] = "gptq"
    (directory / "calibench.json").write_text(json.dumps(body))


def _config_vocab(directory):
    body = json.loads((directory / "config.json").read_text())
    body["vocab_size"] = 280
    (directory / "config.json").write_text(json.dumps(body))
    rehash(directory, vocab_size=280)


def _tokenizer_record(directory):
    record = json.loads((directory / CHECKPOINT_FILE).read_text())
    record["tokenizer"]["vocab_size"] = 100_000
    (directory / CHECKPOINT_FILE).write_text(json.dumps(record))


@pytest.mark.parametrize(
    "damage, fragment",
    [
        (_flip, "model.safetensors does not match the checkpoint's record"),
        (_other_tokenizer, "does not match the checkpoint's record"),
        (_edit_record, "calibench.json does not match"),
        (lambda d: (d / "calibench.json").unlink(), "is missing calibench.json"),
        (lambda d: (d / CHECKPOINT_FILE).unlink(), "has calibench.json but no calibench-checkpoint.json"),
        (lambda d: (d / "tokenizer.model").write_bytes(b"x"), "which its calibench-checkpoint.json does not list"),
        (_config_vocab, "rows but the config's vocab_size is 280"),
        (_tokenizer_record, "tokenizer has 100000 tokens but the embedding only 300 rows"),
        (lambda d: (d / CHECKPOINT_FILE).write_text("{"), "calibench-checkpoint.json is corrupt"),
    ],
    ids=["flipped", "other-tokenizer", "record-edited", "record-missing", "no-file-record", "added-file",
         "config-vocab", "tokenizer-record", "bad-json"],
)  # fmt: skip
def test_a_damaged_checkpoint_is_refused_in_one_line_before_loading(checkpoint, tmp_path, damage, fragment):
    from calibench.models import load_config, load_model, load_tokenizer

    copy = tmp_path / "copy"
    shutil.copytree(checkpoint, copy)
    damage(copy)
    for reader in (verify, load_config, load_tokenizer, lambda p: load_model(p, device="cpu")):
        with pytest.raises(CorruptArtifactError) as info:
            reader(copy)
        assert fragment in str(info.value) and "\n" not in str(info.value)


def test_another_tools_checkpoint_loads_with_one_note(tiny_model_dir, capsys):
    from calibench.core import progress
    from calibench.models import clear_tokenizer_cache, load_config, load_model, load_tokenizer

    clear_tokenizer_cache()
    assert "not written by calibench" in verify(tiny_model_dir)
    progress.set_enabled(True)
    try:
        load_config(tiny_model_dir)
        load_tokenizer(tiny_model_dir)
        model = load_model(tiny_model_dir, dtype="float32", device="cpu")
        progress.flush_deferred()
    finally:
        progress.set_enabled(False)
        progress.discard_deferred()
    err = capsys.readouterr().err
    assert err.count("note: ") == 1 and "read as it is, unverified" in err, err
    assert model.config.vocab_size > 0


def test_the_note_is_dropped_when_the_command_fails(tiny_model_dir, tmp_path):
    """A refused command prints its error line alone: the held-back note goes with the bars."""
    from calibench.core import progress
    from calibench.models import clear_tokenizer_cache, load_config

    clear_tokenizer_cache()
    progress.set_enabled(True)
    try:
        load_config(tiny_model_dir)
        assert any("note: " in line for line in progress._deferred)
        progress.discard_deferred()
        assert not progress._deferred
    finally:
        progress.set_enabled(False)
        progress.discard_deferred()
