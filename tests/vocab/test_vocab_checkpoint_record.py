"""A vocabulary-pruned directory carries the checkpoint file record; eval, load and restore verify it first."""

from __future__ import annotations

import hashlib
import json
import shutil

import pytest

from calibench.compress.checkpoint import CHECKPOINT_FILE, verify
from calibench.core.errors import CalibenchError, CorruptArtifactError
from conftest import corpus_text, fresh_model

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def pruned(tmp_path_factory, tiny_model_dir, tiny_tokenizer):
    from calibench.vocab import Inputs, collect, prune, save

    root = tmp_path_factory.mktemp("pruned")
    text = root / "corpus.txt"
    text.write_text("\n\n".join(corpus_text(40)), encoding="utf-8")
    vocab = collect(tiny_tokenizer, Inputs(text=[str(text)]))
    model = fresh_model(tiny_model_dir)
    prune(model, vocab, tokenizer=tiny_tokenizer)
    return save(model, root / "p", tiny_tokenizer)


def rehash(directory):
    record = json.loads((directory / CHECKPOINT_FILE).read_text())
    for name in record["files"]:
        data = (directory / name).read_bytes()
        record["files"][name] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
    (directory / CHECKPOINT_FILE).write_text(json.dumps(record))


def edit_vocab(directory, change, again=True):
    body = json.loads((directory / "vocab.json").read_text())
    change(body)
    (directory / "vocab.json").write_text(json.dumps(body))
    if again:
        rehash(directory)


def test_pruned_and_restored_directories_carry_a_verified_record(pruned, tmp_path, tiny_tokenizer):
    from calibench.vocab import restore

    record = json.loads((pruned / CHECKPOINT_FILE).read_text())
    assert record["kind"] == "vocab-pruned" and {"vocab.json", "vocab-dropped.safetensors"} <= set(record["files"])
    assert verify(pruned) is None
    restore(pruned, tmp_path / "r")
    assert json.loads((tmp_path / "r" / CHECKPOINT_FILE).read_text())["kind"] == "restored"
    assert verify(tmp_path / "r") is None


def _out_of_range(body):
    from calibench.vocab.keepset import ids_sha256

    body["kept"][-1] = body["vocab_size"] + 3
    body["kept_sha256"] = ids_sha256(body["kept"])


def _truncate_dropped(directory):
    file = directory / "vocab-dropped.safetensors"
    file.write_bytes(file.read_bytes()[:-40])
    rehash(directory)


@pytest.mark.parametrize(
    "damage, fragment",
    [
        (lambda d: edit_vocab(d, lambda b: b.__setitem__("mode", "exact-input"), again=False),
         "vocab.json does not match the checkpoint's record"),
        (lambda d: edit_vocab(d, lambda b: b.__setitem__("mode", "sideways")), "unknown mode 'sideways'"),
        (lambda d: edit_vocab(d, _out_of_range), "is outside the vocabulary of 300"),
        (lambda d: edit_vocab(d, lambda b: b.__setitem__("vocab_size", b["vocab_size"] + 4)), "rows were dropped"),
        (lambda d: edit_vocab(d, lambda b: b["kept"].pop()), "the kept ids do not match their sha256"),
        (_truncate_dropped, "vocab-dropped.safetensors is not readable"),
        (lambda d: (d / CHECKPOINT_FILE).unlink(), "has vocab.json but no calibench-checkpoint.json"),
    ],
    ids=["mode-edited", "mode-unknown", "kept-out-of-range", "vocab-size", "kept-hash", "dropped-truncated",
         "no-file-record"],
)  # fmt: skip
def test_a_damaged_pruned_directory_is_refused_by_load_and_restore(pruned, tmp_path, damage, fragment):
    from calibench.models import load_model
    from calibench.vocab import restore

    copy = tmp_path / "copy"
    shutil.copytree(pruned, copy)
    damage(copy)
    with pytest.raises(CorruptArtifactError, match=fragment):
        load_model(copy, device="cpu")
    with pytest.raises(CorruptArtifactError, match=fragment) as info:
        restore(copy, tmp_path / "r")
    assert "\n" not in str(info.value) and not (tmp_path / "r").exists()


def test_restore_refuses_an_original_that_is_not_the_one(pruned, tmp_path, tiny_model_dir, tiny_tokenizer):
    """The rows are stored, so --original is not needed; naming another model is still a mistake, not ignored."""
    import torch
    from transformers import LlamaForCausalLM

    from calibench.vocab import restore
    from conftest import tiny_llama_config

    other = tmp_path / "other"
    torch.manual_seed(7)
    LlamaForCausalLM(tiny_llama_config(tiny_tokenizer)).save_pretrained(other)
    tiny_tokenizer.save_pretrained(other)
    with pytest.raises(CalibenchError, match="is not the model"):
        restore(pruned, tmp_path / "r", original=str(other))
    assert not (tmp_path / "r").exists()
    restore(pruned, tmp_path / "r", original=str(tiny_model_dir))  # the right one is accepted
    a, b = fresh_model(tiny_model_dir).state_dict(), fresh_model(tmp_path / "r").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
