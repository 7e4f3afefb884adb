"""``--force`` end to end: a command refuses a taken output, and with ``--force`` replaces it."""

from __future__ import annotations

from tests.conftest import assert_one_line_error, run


def test_data_card_refuses_a_taken_out_and_replaces_it_with_force(tiny_text_set, tiny_model_dir, tmp_path, capsys):
    calib = tmp_path / "set"
    tiny_text_set.save(calib)
    taken = tmp_path / "CARD.md"
    taken.write_text("someone's notes\n")
    code, _, err = run(["data", "card", str(calib), "-o", str(taken)], capsys)
    assert_one_line_error(code, err, "already exists: choose another --out or pass --force")
    assert taken.read_text() == "someone's notes\n"
    code, _, err = run(["data", "card", str(calib), "-o", str(taken), "-m", str(tiny_model_dir), "--force"], capsys)
    assert code == 0, err
    assert tiny_text_set.set_id in taken.read_text()


def test_data_build_replaces_a_taken_directory_with_force(text_file, tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "set"
    out.mkdir()
    (out / "old.txt").write_text("old")
    argv = ["data", "build", str(text_file), "-m", str(tiny_model_dir), "-o", str(out), "--n", "2", "--seq-len", "16"]
    code, _, err = run(argv, capsys)
    assert_one_line_error(code, err, "already exists", "pass --force")
    assert (out / "old.txt").exists()
    code, _, err = run([*argv, "--force"], capsys)
    assert code == 0, err
    assert (out / "manifest.json").exists() and not (out / "old.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no temporary litter
