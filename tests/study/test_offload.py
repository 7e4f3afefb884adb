"""Offloaded placement (calibench.placement): disk offload gives the same checkpoint and perplexity as none.

Real compressed-tensors disk offload on a tiny Llama built from a config: the weights are links to the
checkpoint's safetensors file in a fresh folder, read per module; calibration writes the weights it changes
there; the folder goes with the model.  Refusals are one line before any work.
"""

from __future__ import annotations

import gc
import json
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from calibench.core.errors import CalibenchError
from calibench.placement import OFFLOAD_PREFIX, as_offload, load_placed, offload_folder, prepare_offload_dir


def _cli(args: list[str]) -> None:
    import time

    from typer.testing import CliRunner

    from calibench.cli import app

    t = time.time()
    result = CliRunner().invoke(app, args)
    print(args[0], time.time() - t)
    assert result.exit_code == 0, result.output


def _weights(checkpoint: Path) -> dict[str, torch.Tensor]:
    tensors: dict[str, torch.Tensor] = {}
    for path in sorted(checkpoint.glob("*.safetensors")):
        tensors.update(load_file(path))
    return tensors


@pytest.fixture(scope="module")
def set_dir(tiny_text_set, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("offload-set") / "set"
    tiny_text_set.save(path)
    return path


def test_disk_offloaded_model_lives_in_its_folder_and_the_folder_goes_with_it(tiny_model_dir, tmp_path):
    reference = load_placed(tiny_model_dir, dtype="float32", device="cpu")
    model = load_placed(tiny_model_dir, dtype="float32", device="cpu", offload="disk", offload_dir=tmp_path / "od")
    folder = Path(offload_folder(model))
    assert folder.parent == tmp_path / "od" and folder.name.startswith(OFFLOAD_PREFIX)
    proj = model.model.layers[0].self_attn.q_proj
    assert proj._parameters.offloaded_values["weight"].device.type == "meta"  # nothing in memory but a shape
    links = [p for p in folder.iterdir() if p.is_symlink()]
    assert links and {os.path.realpath(p) for p in links} == {str((tiny_model_dir / "model.safetensors").resolve())}
    ids = torch.randint(0, 100, (2, 16))
    with torch.no_grad():  # onloaded per module: the same logits as the model in memory
        assert torch.equal(model(ids).logits, reference(ids).logits)
    assert offload_folder(reference) is None
    del model, proj
    gc.collect()
    assert not folder.exists() and (tmp_path / "od").is_dir()


@pytest.mark.parametrize("method", ["gptq"])
def test_disk_offloaded_compress_and_eval_match_in_memory(method, tiny_model_dir, set_dir, text_file, tmp_path):
    outs, ppl = {}, {}
    for mode in ("none", "disk"):
        outs[mode] = tmp_path / f"ckpt-{mode}"
        place = ["--offload", mode] + (["--offload-dir", str(tmp_path / "od")] if mode == "disk" else [])
        common = ["-m", str(tiny_model_dir), "--device", "cpu", "--dtype", "float32"]
        _cli(["compress", *common, "-c", str(set_dir), "--method", method, "-o", str(outs[mode]), *place])
        common[1] = str(outs[mode])
        report = tmp_path / f"eval-{mode}.json"
        ppl_args = ["--tasks", f"ppl:{text_file}", "--ppl-seq-len", "32", "--max-windows", "4"]
        _cli(["eval", *common, *ppl_args, "--out", str(report), *place])
        result = json.loads(report.read_text())
        ppl[mode] = result["rows"][0]["value"]
        assert result["settings"].get("offload", "none") == mode
    assert json.loads((outs["disk"] / "calibench.json").read_text())["offload"] == "disk"
    a, b = _weights(outs["none"]), _weights(outs["disk"])
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)  # bit-identical checkpoints
    assert ppl["disk"] == ppl["none"]
    assert list((tmp_path / "od").iterdir()) == []  # every run's folder removed, the user's folder kept


def test_offload_modes_and_refusals(tmp_path):
    assert [as_offload(v) for v in (True, False, None, "disk")] == ["cpu", "none", "none", "disk"]
    with pytest.raises(CalibenchError, match="unknown offload 'tape'"):
        as_offload("tape")
    assert prepare_offload_dir("disk", None) is None  # the system temporary folder
    assert prepare_offload_dir("disk", tmp_path / "new" / "od") == tmp_path / "new" / "od"
    assert not (tmp_path / "new").exists()  # checked, not made: the model's load makes it
    with pytest.raises(CalibenchError, match="is for --offload disk"):
        prepare_offload_dir("cpu", tmp_path)
    (tmp_path / "f").write_text("x")
    with pytest.raises(CalibenchError, match="is a file"):
        prepare_offload_dir("disk", tmp_path / "f")
    with pytest.raises(CalibenchError, match="is a file, not a folder"):
        prepare_offload_dir("disk", tmp_path / "f" / "sub")
    with pytest.raises(CalibenchError, match="/proc is not writable"):
        prepare_offload_dir("disk", "/proc/calibench-offload")


def test_spec_offload_reads_true_as_cpu():
    from calibench.study.spec import StudySpec

    assert StudySpec.model_fields["offload"].default == "none"
    assert StudySpec._offload_mode(True) == "cpu" and StudySpec._offload_mode(False) == "none"
    assert StudySpec._offload_mode("disk") == "disk"
