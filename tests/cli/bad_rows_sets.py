"""Rows of the bad-input suite (tests/cli/test_bad_inputs.py) kept in their own file.

``ROWS`` holds ``(args, fragment, id)`` tuples; ``inputs(root, world)`` returns named input files that the rows
write as ``{in:NAME}`` (``world`` is the suite's shared inputs: model, text, set, ...).
"""

from __future__ import annotations

from pathlib import Path

ROWS = [
    ("data show {in:not-a-set}", "is not a calibration set", "show-plain-dir"),
]


def inputs(root: Path, world: dict) -> dict:
    plain = root / "plain-dir"
    plain.mkdir(exist_ok=True)
    (plain / "notes.txt").write_text("not a set\n")
    return {"not-a-set": plain}
