"""``--force``: an existing output is refused unless forced, and when forced it is replaced only once the new one is
complete (a failed write leaves the old one exactly as it was)."""

from __future__ import annotations

import os

import pytest

from calibench.core.errors import CalibenchError
from calibench.core.fsutil import atomic_dir, check_name_lengths, check_new_output, check_output_file, output_slot


def test_a_taken_output_file_is_refused_unless_forced(tmp_path):
    taken = tmp_path / "results.json"
    taken.write_text("old")
    with pytest.raises(CalibenchError, match="already exists: choose another --plot or pass --force"):
        check_output_file(taken, option="--plot")
    check_output_file(taken, force=True)  # no error
    check_output_file(tmp_path / "new.json")  # a free name needs no force
    assert taken.read_text() == "old"


def test_a_taken_directory_is_refused_unless_forced(tmp_path):
    taken = tmp_path / "set"
    taken.mkdir()
    (taken / "keep.txt").write_text("data")
    with pytest.raises(CalibenchError, match="pass --force"):
        check_new_output(taken)
    check_new_output(taken, force=True)
    empty = tmp_path / "empty"
    empty.mkdir()
    check_new_output(empty)  # an empty directory is free


def test_force_never_replaces_the_working_directory(tmp_path, monkeypatch):
    (tmp_path / "x").write_text("mine")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CalibenchError, match="current directory"):
        check_new_output(tmp_path, force=True)


def test_atomic_dir_with_force_replaces_only_on_success(tmp_path):
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "old.txt").write_text("old")
    with pytest.raises(RuntimeError), atomic_dir(dest, force=True) as tmp:
        (tmp / "new.txt").write_text("new")
        raise RuntimeError("the writer failed")
    assert sorted(p.name for p in dest.iterdir()) == ["old.txt"]
    with atomic_dir(dest, force=True) as tmp:
        (tmp / "new.txt").write_text("new")
    assert sorted(p.name for p in dest.iterdir()) == ["new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temporary litter


def test_atomic_dir_without_force_refuses_a_taken_directory(tmp_path):
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "old.txt").write_text("old")
    with pytest.raises(CalibenchError, match="already exists"), atomic_dir(dest):
        pass
    assert (dest / "old.txt").read_text() == "old"


def test_output_slot_swaps_in_a_forced_file_only_when_written(tmp_path):
    dest = tmp_path / "ckpt"
    dest.mkdir()
    (dest / "weights").write_text("old")
    with pytest.raises(RuntimeError), output_slot(dest, force=True) as slot:
        assert slot != dest
        slot.mkdir()
        (slot / "weights").write_text("half")
        raise RuntimeError("interrupted")
    assert (dest / "weights").read_text() == "old"
    with output_slot(dest, force=True) as slot:
        slot.mkdir()
        (slot / "weights").write_text("new")
    assert (dest / "weights").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]
    with output_slot(tmp_path / "fresh") as slot:
        assert slot == tmp_path / "fresh"  # nothing to replace: the writer writes in place


def test_a_name_too_long_for_the_file_system_is_one_clear_error(tmp_path):
    with pytest.raises(CalibenchError, match="name too long"):
        check_name_lengths(tmp_path / ("n" * 300))
    with pytest.raises(CalibenchError, match="name too long"):
        check_output_file(tmp_path / ("n" * 300) / "x.json")
    check_name_lengths(tmp_path / ("n" * 255))
    assert not os.listdir(tmp_path)
