"""The layer contract in pyproject.toml: import-linter keeps it, and an independent walk of the source agrees."""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src" / "calibench"


def contract() -> dict:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    (layers,) = [c for c in config["tool"]["importlinter"]["contracts"] if c["type"] == "layers"]
    return layers


def layer_of() -> dict[str, int]:
    """Package or top-level module name -> its height (0 is the bottom layer)."""
    layers = contract()["layers"]
    heights = {}
    for height, layer in enumerate(reversed(layers)):
        for name in layer.split("|"):
            heights[name.strip()] = height
    return heights


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(path: Path) -> list[tuple[str, int]]:
    """Every calibench module ``path`` imports (in functions too), with its line."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.append((target, node.lineno))
            found += [(f"{target}.{alias.name}", node.lineno) for alias in node.names]
    return [(t, line) for t, line in found if t.startswith("calibench.")]


def test_every_package_is_in_exactly_one_layer():
    heights = layer_of()
    children = {
        p.stem if p.is_file() else p.name for p in SRC.iterdir() if p.suffix == ".py" or (p / "__init__.py").exists()
    }
    children.discard("__init__")
    assert children == set(heights), f"not in the contract: {children - set(heights)}; gone: {set(heights) - children}"


def test_no_module_imports_a_layer_above_its_own():
    """Independent of import-linter: parse every file, map each import to its layer, compare heights."""
    heights = layer_of()
    upward = []
    for path in SRC.rglob("*.py"):
        own = module_name(path).split(".")
        if len(own) < 2:
            continue  # calibench/__init__.py
        for target, line in imported(path):
            other = target.split(".")[1]
            if other in heights and heights[other] > heights[own[1]]:
                upward.append(f"{path.relative_to(ROOT)}:{line} imports {target}")
    assert not upward, "\n".join(upward)


def test_lint_imports_keeps_the_contract():
    lint = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(lint), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout
