"""The shared helpers of calibench.core: one_line, the Markdown table writer, the JSON scrubber, library versions."""

from __future__ import annotations

import json
import math
from importlib.metadata import version

import pytest

from calibench.core.jsonutil import finite
from calibench.core.provenance import library_versions, package_version
from calibench.core.text import escape_cell, markdown_table, markdown_table_lines, one_line


class Quiet(Exception):
    def __str__(self) -> str:
        return ""


def test_one_line_collapses_whitespace_and_names_a_silent_exception():
    assert one_line(ValueError("bad\n  input\tthere ")) == "bad input there"
    assert one_line(Quiet()) == "Quiet"
    assert one_line("  ") == ""  # a string is not an exception: no type name to fall back on
    assert one_line(ValueError("x" * 400), 300) == "x" * 300
    assert one_line(KeyError("k"), typed=True) == "KeyError: 'k'"
    assert one_line(Quiet(), typed=True) == "Quiet: Quiet"
    assert one_line(ValueError("ab cd"), 12, typed=True) == "ValueError: "  # the limit counts the type too
    assert one_line(OSError("a\r\nb")) == "a b"


def test_markdown_table_writes_header_rule_and_rows():
    assert markdown_table(["a", "b"], [[1, 2.5], ["x", None]]) == "| a | b |\n|---|---|\n| 1 | 2.5 |\n| x | None |\n"
    assert markdown_table_lines(("h",), []) == ["| h |", "|---|"]
    lines = markdown_table_lines(["k|v"], [["a|b\nc"]], lambda v: escape_cell(v, newlines=True))
    assert lines == ["| k\\|v |", "|---|", "| a\\|b c |"]
    assert escape_cell("a|b\nc") == "a\\|b\nc"
    rows = iter([(1,), (2,)])  # any iterable of rows, read once
    assert markdown_table(["n"], rows, lambda v: f"<{v}>") == "| <n> |\n|---|\n| <1> |\n| <2> |\n"


def test_finite_writes_non_finite_floats_as_null_at_any_depth():
    value = {"a": math.nan, "b": [1.0, math.inf, {"c": -math.inf, "d": "nan"}], "e": 3, "f": (math.nan,)}
    cleaned = finite(value)
    assert cleaned == {"a": None, "b": [1.0, None, {"c": None, "d": "nan"}], "e": 3, "f": (math.nan,)}
    assert json.loads(json.dumps(finite({"x": [math.nan, 2.0]}), allow_nan=False)) == {"x": [None, 2.0]}
    assert finite(math.nan) is None and finite(1.5) == 1.5
    assert value["a"] is math.nan  # the input is not changed


def test_library_versions_read_package_metadata_in_order():
    assert package_version("pytest") == version("pytest") == pytest.__version__
    assert package_version("no-such-package-calibench") is None
    found = library_versions(["pytest", "no-such-package-calibench", "numpy"])
    assert list(found) == ["pytest", "numpy"] and found["numpy"] == version("numpy")
    marked = library_versions(["no-such-package-calibench", "pytest"], absent="absent")
    assert marked == {"no-such-package-calibench": "absent", "pytest": version("pytest")}
