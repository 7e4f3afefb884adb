"""The documentation: the README as a short front page, the site's navigation, the generated CLI reference.

``make docs`` (and CI) builds the site with ``mkdocs build --strict``, which
catches broken links and pages left out of the nav; these checks are the ones
a build cannot make: that the README stays a front page, that the CLI
reference covers every command and option there is, and that no module,
test or example spec points at a tracker's issue number instead of saying
what it means.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml

from calibench.cli import app

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("calibench_cli_docs", ROOT / "tools" / "cli_docs.py")
cli_docs = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(cli_docs)

README = ROOT / "README.md"
DOCS = ROOT / "docs"


def test_readme_is_a_short_front_page_with_the_two_commands_and_the_headline_plot():
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 200
    assert "make demo" in text and "make test" in text
    plots = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert plots and all((ROOT / p).is_file() for p in plots)


def test_readme_links_point_at_files_that_exist():
    text = README.read_text(encoding="utf-8")
    targets = [t.split("#", 1)[0] for t in re.findall(r"\]\(([^)\s]+)\)", text) if "://" not in t]
    assert targets
    missing = [t for t in targets if not (ROOT / t).exists()]
    assert missing == []


def _nav_files(node: Any) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, list):
        return [f for item in node for f in _nav_files(item)]
    if isinstance(node, dict):
        return [f for value in node.values() for f in _nav_files(value)]
    return []


def test_every_top_level_page_is_in_the_nav_and_every_nav_entry_exists_or_is_generated():
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    nav = _nav_files(config["nav"])
    pages = {p.name for p in DOCS.glob("*.md")}
    assert pages - set(nav) == set()
    assert [f for f in nav if f != cli_docs.PAGE and not (DOCS / f).is_file()] == []
    assert not (DOCS / cli_docs.PAGE).exists(), "cli.md is generated at build time; a committed copy would go stale"
    assert "tools/cli_docs.py" in config["hooks"]


def _walk(cmd: Any, path: str) -> list[tuple[str, Any]]:
    out = [(path, cmd)]
    for name, sub in getattr(cmd, "commands", {}).items():
        if not getattr(sub, "hidden", False):
            out += _walk(sub, f"{path} {name}")
    return out


def test_cli_reference_has_every_command_and_every_visible_option():
    page = cli_docs.render()
    commands = _walk(typer.main.get_command(app), "calibench")
    assert len(commands) > 20
    headings = set(re.findall(r"^#+ `([^`]+)`$", page, flags=re.MULTILINE))
    assert {path for path, _ in commands} - headings == set()
    sections = re.split(r"^#+ `", page, flags=re.MULTILINE)
    by_path = {s.split("`", 1)[0]: s for s in sections[1:]}
    for path, cmd in commands:
        for param in cmd.params:
            if getattr(param, "hidden", False):
                continue
            for opt in getattr(param, "opts", []):
                if opt.startswith("-"):
                    assert opt in by_path[path], f"{path}: {opt} missing from the CLI reference"


def test_cli_reference_is_independent_of_where_calibench_is_installed():
    page = cli_docs.render()
    assert str(ROOT) not in page and "&lt;calibench&gt;/study/demo-study.yaml" in page


_ISSUE = re.compile(r"\bissues?\s*#?\d+|\(#\d+\)", re.IGNORECASE)


@pytest.mark.parametrize("folder", ["src", "tests", "examples"])
def test_no_tracker_issue_numbers_in_code_tests_or_specs(folder):
    hits = [
        f"{path.relative_to(ROOT)}:{n}: {line.strip()}"
        for path in sorted((ROOT / folder).rglob("*"))
        if path.suffix in {".py", ".yaml", ".md"} and path.is_file()
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if _ISSUE.search(line)
    ]
    assert hits == []
