"""The CLI contract: help everywhere, one-line errors with exit code 2, nothing half-written."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from calibench.cli import app
from conftest import assert_one_line_error, run


def command_paths(group=None, prefix=()):
    import typer.main

    command = typer.main.get_command(app) if group is None else group
    yield prefix
    for name, sub in getattr(command, "commands", {}).items():
        yield from command_paths(sub, (*prefix, name))


def test_every_command_has_help(capsys):
    paths = list(command_paths())
    assert ("data", "build") in paths and ("assets", "pull") in paths
    for path in paths:
        code, out, _ = run([*path, "--help"], capsys)
        assert code == 0 and "Usage" in out, path


def test_build_show_export(tmp_path, text_file, tiny_model_dir, capsys):
    out = tmp_path / "set"
    code, stdout, err = run(
        [
            "data",
            "build",
            str(text_file),
            "--model",
            str(tiny_model_dir),
            "--n",
            "4",
            "--seq-len",
            "32",
            "--out",
            str(out),
            "--jsonl",
        ],
        capsys,
    )
    assert code == 0, err
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["n"] == 4 and manifest["seq_len"] == 32
    assert manifest["tokens_sha256"][:16] in stdout
    assert len((out / "windows.jsonl").read_text().splitlines()) == 4

    code, stdout, _ = run(["data", "show", str(out), "--model", str(tiny_model_dir)], capsys)
    assert code == 0 and manifest["tokens_sha256"] in stdout and "window 0" in stdout

    code, _, err = run(
        ["data", "export", str(out), "--model", str(tiny_model_dir), "--out", str(tmp_path / "x.jsonl")], capsys
    )
    assert code == 0 and (tmp_path / "x.jsonl").exists(), err


def test_sets_option_writes_one_directory_per_set(tmp_path, text_file, tiny_model_dir, capsys):
    out = tmp_path / "many"
    code, _, err = run(
        [
            "data",
            "build",
            str(text_file),
            "-m",
            str(tiny_model_dir),
            "--n",
            "3",
            "--seq-len",
            "16",
            "--sets",
            "3",
            "--out",
            str(out),
        ],
        capsys,
    )
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["set-00", "set-01", "set-02"]


@pytest.mark.parametrize(
    "args,fragments",
    [
        (["nosuchsource"], ["unknown source 'nosuchsource'"]),
        (["{text}", "--n", "0"], ["--n must be between 1 and 8192"]),
        (["{text}", "--seq-len", "100000"], ["above the model's maximum of 256"]),
        (["{text}", "--n", "500", "--seq-len", "200"], ["room for", "disjoint windows"]),
        (["{tmp}/missing.jsonl"], ["missing.jsonl does not exist"]),
        (["{text}", "--model", "no-such-model"], ["no-such-model"]),
    ],
    ids=["unknown-source", "n-zero", "seq-len-too-long", "corpus-too-short", "unreadable-file", "unknown-model"],
)
def test_build_errors_are_one_line_and_leave_nothing(tmp_path, text_file, tiny_model_dir, capsys, args, fragments):
    args = [a.format(text=text_file, tmp=tmp_path) for a in args]
    if "--model" not in args:
        args += ["--model", str(tiny_model_dir)]
    if "--seq-len" not in args:
        args += ["--seq-len", "32"]
    out = tmp_path / "out"
    code, _, err = run(["data", "build", *args, "--out", str(out)], capsys)
    assert_one_line_error(code, err, *fragments)
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]


def test_loading_with_another_tokenizer_and_corrupt_sets(tmp_path, text_file, tiny_model_dir, capsys):
    from conftest import make_tokenizer, tiny_llama_config

    out = tmp_path / "set"
    assert (
        run(
            [
                "data",
                "build",
                str(text_file),
                "-m",
                str(tiny_model_dir),
                "--n",
                "2",
                "--seq-len",
                "16",
                "--out",
                str(out),
            ],
            capsys,
        )[0]
        == 0
    )
    other_dir = tmp_path / "other-model"
    other = make_tokenizer(vocab_size=333)
    other.save_pretrained(other_dir)
    tiny_llama_config(other).save_pretrained(other_dir)
    code, _, err = run(["data", "show", str(out), "--model", str(other_dir)], capsys)
    assert_one_line_error(code, err, "was made with tokenizer")

    ids = out / "input_ids.npy"
    data = bytearray(ids.read_bytes())
    data[-1] ^= 0xFF
    ids.write_bytes(bytes(data))
    code, _, err = run(["data", "show", str(out), "--model", str(tiny_model_dir)], capsys)
    assert_one_line_error(code, err, "corrupt")


def test_existing_output_is_refused_before_work(tmp_path, text_file, tiny_model_dir, capsys):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    code, _, err = run(
        ["data", "build", str(text_file), "-m", str(tiny_model_dir), "--n", "2", "--seq-len", "16", "--out", str(out)],
        capsys,
    )
    assert_one_line_error(code, err, "already exists")
    assert (out / "keep.txt").read_text() == "mine"


def test_console_script_exit_code_in_a_real_process(tmp_path):
    """The installed entry point, not just main(): exit 2 and a single stderr line."""
    proc = subprocess.run(
        [sys.executable, "-c", "from calibench.cli import main; main()", "data", "show", str(tmp_path / "nothing")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and proc.stderr.startswith("error: ")
