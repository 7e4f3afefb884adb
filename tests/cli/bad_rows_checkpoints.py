"""Bad-input rows for damaged checkpoints (compressed, vocabulary-pruned) and sets with valid hashes but bad content.

Every corrupt input is a copy of a real artifact (a magnitude-pruned checkpoint of the tiny model, the suite's
pruned vocabulary checkpoint, the suite's set) with one thing changed; ``rehash`` variants also rewrite the
hashes so that only the content checks behind them can catch the change.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np

ROWS = [
    # compressed checkpoint
    ("eval -m {in:comp-flipped} --tasks ppl:wiki", "the file was edited or replaced", "ckpt-eval-flipped-weights"),
    ("compress -m {in:comp-flipped} -c {set} --method magnitude -o {out}", "model.safetensors does not match",
     "ckpt-compress-flipped-weights"),
    ("eval -m {in:comp-other-tokenizer} --tasks ppl:wiki", "tokenizer.json does not match",
     "ckpt-eval-other-tokenizer"),
    ("eval -m {in:comp-record-edited} --tasks ppl:wiki", "calibench.json does not match", "ckpt-eval-record-edited"),
    ("eval -m {in:comp-record-missing} --tasks ppl:wiki", "is missing calibench.json", "ckpt-eval-record-missing"),
    ("eval -m {in:comp-no-manifest} --tasks ppl:wiki", "has calibench.json but no", "ckpt-eval-no-file-record"),
    ("eval -m {in:comp-vocab-size} --tasks ppl:wiki", "rows but the config's vocab_size is 280",
     "ckpt-eval-config-vocab-size"),
    ("eval -m {in:comp-added-file} --tasks ppl:wiki", "which its calibench-checkpoint.json does not list",
     "ckpt-eval-added-file"),
    ("eval -m {in:comp-bad-manifest} --tasks ppl:wiki", "calibench-checkpoint.json is corrupt",
     "ckpt-eval-bad-file-record"),
    # vocabulary-pruned checkpoint
    ("eval -m {in:pruned-mode} --tasks ppl:wiki", "vocab.json does not match", "ckpt-pruned-eval-mode-edited"),
    ("eval -m {in:pruned-flipped} --tasks ppl:wiki", "model.safetensors does not match",
     "ckpt-pruned-eval-flipped-weights"),
    ("eval -m {in:pruned-mode-rehash} --tasks ppl:wiki", "unknown mode 'sideways'", "ckpt-pruned-eval-bad-mode"),
    ("vocab restore {in:pruned-truncated} -o {out}", "vocab-dropped.safetensors does not match",
     "ckpt-restore-truncated-dropped"),
    ("vocab restore {in:pruned-truncated-rehash} -o {out}", "vocab-dropped.safetensors is not readable",
     "ckpt-restore-truncated-dropped-rehash"),
    ("vocab restore {in:pruned-kept-range} -o {out}", "outside the vocabulary of 300",
     "ckpt-restore-kept-out-of-range"),
    ("vocab restore {in:pruned-vocab-size} -o {out}", "rows were dropped", "ckpt-restore-vocab-size-edited"),
    ("vocab restore {vocab:pruned} --original {in:other-model} -o {out}", "is not the model",
     "ckpt-restore-wrong-original"),
    ("vocab restore {vocab:pruned} --original {in:other-size-model} -o {out}", "its vocabulary has 280 tokens",
     "ckpt-restore-wrong-original-size"),
    # sets whose hashes match but whose content is invalid
    ("data stats {in:set-mask-zero} -m {model}", "all-zero attention mask", "set-content-mask-all-zero"),
    ("compress -m {model} -c {in:set-mask-seven} --method magnitude -o {out}", "attention mask holds 7",
     "set-content-mask-seven"),
    ("compress -m {model} -c {in:set-n-zero} --method magnitude -o {out}", "it has no windows", "set-content-n-zero"),
    ("data stats {in:set-seq-len-one} -m {model}", "needs at least 2", "set-content-seq-len-one"),
    ("data stats {in:set-vocab-grown} -m {model}", "but its tokenizer has 300 tokens",
     "set-content-id-beyond-tokenizer"),
]  # fmt: skip


def file_record(directory: Path) -> dict:
    return json.loads((directory / "calibench-checkpoint.json").read_text())


def rehash(directory: Path, **fields) -> None:
    """Rewrite the file record's hashes (and ``fields``) as if calibench had written the edited directory."""
    record = file_record(directory)
    for name in record["files"]:
        data = (directory / name).read_bytes()
        record["files"][name] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
    record.update(fields)
    (directory / "calibench-checkpoint.json").write_text(json.dumps(record))


def flip_weights(file: Path) -> None:
    data = bytearray(file.read_bytes())
    start = 8 + int.from_bytes(data[:8], "little")
    for i in range(start + 64, len(data), 997):
        data[i] ^= 0x7F
    file.write_bytes(bytes(data))


def edit_json(file: Path, change) -> None:
    body = json.loads(file.read_text())
    change(body)
    file.write_text(json.dumps(body, indent=1))


def _compressed(root: Path, world: dict) -> Path:
    from calibench.compress import compress
    from calibench.data.calibset import CalibrationSet
    from calibench.models import load_tokenizer

    out = root / "ckpt-compressed"
    if not out.exists():
        tokenizer = load_tokenizer(world["model"])
        result = compress(str(world["model"]), CalibrationSet.load(world["set"]), "magnitude", tokenizer=tokenizer)
        result.save(out, tokenizer)
    return out


def _tiny_model(root: Path, name: str, vocab_size: int, seed: int) -> Path:
    import torch
    from transformers import LlamaForCausalLM

    from conftest import make_tokenizer, tiny_llama_config

    out = root / name
    tokenizer = make_tokenizer(vocab_size=vocab_size)
    torch.manual_seed(seed)
    LlamaForCausalLM(tiny_llama_config(tokenizer)).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def _checkpoints(root: Path, world: dict) -> dict:
    good = _compressed(root, world)
    pruned = Path(world["vocab"]["pruned"])
    made: dict[str, Path] = {}

    def copy(name: str, source: Path) -> Path:
        target = root / "ckpt-corrupt" / name
        shutil.copytree(source, target)
        made[name] = target
        return target

    flip_weights(copy("comp-flipped", good) / "model.safetensors")
    other = _tiny_model(root, "other-size-model", 280, 1)
    target = copy("comp-other-tokenizer", good)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(other / name, target / name)
    edit_json(copy("comp-record-edited", good) / "calibench.json", lambda d: d.__setitem__("method", "gptq"))
    (copy("comp-record-missing", good) / "calibench.json").unlink()
    (copy("comp-no-manifest", good) / "calibench-checkpoint.json").unlink()
    target = copy("comp-vocab-size", good)
    edit_json(target / "config.json", lambda d: d.__setitem__("vocab_size", 280))
    rehash(target, vocab_size=280)
    (copy("comp-added-file", good) / "tokenizer.model").write_bytes(b"another tokenizer")
    (copy("comp-bad-manifest", good) / "calibench-checkpoint.json").write_text('{"files": ')

    edit_json(copy("pruned-mode", pruned) / "vocab.json", lambda d: d.__setitem__("mode", "exact-input"))
    flip_weights(copy("pruned-flipped", pruned) / "model.safetensors")
    target = copy("pruned-mode-rehash", pruned)
    edit_json(target / "vocab.json", lambda d: d.__setitem__("mode", "sideways"))
    rehash(target)
    for name in ("pruned-truncated", "pruned-truncated-rehash"):
        target = copy(name, pruned)
        data = (target / "vocab-dropped.safetensors").read_bytes()
        (target / "vocab-dropped.safetensors").write_bytes(data[: len(data) // 2])
    rehash(made["pruned-truncated-rehash"])

    def out_of_range(body: dict) -> None:
        from calibench.vocab.keepset import ids_sha256

        body["kept"][-1] = body["vocab_size"] + 7
        body["kept_sha256"] = ids_sha256(body["kept"])

    target = copy("pruned-kept-range", pruned)
    edit_json(target / "vocab.json", out_of_range)
    rehash(target)
    target = copy("pruned-vocab-size", pruned)
    edit_json(target / "vocab.json", lambda d: d.__setitem__("vocab_size", d["vocab_size"] + 5))
    rehash(target)
    made["other-model"] = _tiny_model(root, "other-model", 300, 1)
    made["other-size-model"] = other
    return made


def _sets(root: Path, world: dict) -> dict:
    from calibench.data.calibset import IDS_FILE, MANIFEST, MASK_FILE, Manifest, identity_set_id, tokens_sha256

    made: dict[str, Path] = {}

    def variant(name: str, ids_of, mask_of, change=lambda d: None) -> None:
        target = root / "set-corrupt" / name
        shutil.copytree(world["set"], target)
        ids, mask = ids_of(np.load(target / IDS_FILE)), mask_of(np.load(target / MASK_FILE))
        np.save(target / IDS_FILE, ids)
        np.save(target / MASK_FILE, mask)
        body = json.loads((target / MANIFEST).read_text())
        body["n"], body["seq_len"] = int(ids.shape[0]), int(ids.shape[1])
        change(body)
        body["tokens_sha256"] = tokens_sha256(ids, mask)
        body["set_id"] = identity_set_id(Manifest.model_validate(body))
        (target / MANIFEST).write_text(json.dumps(body))
        made[name] = target

    same = lambda a: a  # noqa: E731
    variant("set-mask-zero", same, np.zeros_like)
    variant("set-mask-seven", same, lambda m: np.where(m > 0, 7, 0).astype(m.dtype))
    variant("set-n-zero", lambda a: a[:0], lambda m: m[:0])
    variant("set-seq-len-one", lambda a: a[:, :1], lambda m: m[:, :1])

    def grow(body: dict) -> None:
        body["tokenizer"]["vocab_size"] += 50

    variant("set-vocab-grown", lambda a: np.where(np.arange(a.size).reshape(a.shape) == 5, 320, a), same, grow)
    return made


def inputs(root: Path, world: dict) -> dict:
    return {**_checkpoints(root, world), **_sets(root, world)}
