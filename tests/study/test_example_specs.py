"""Every shipped study spec (examples/, benchmarks/, the bundled demo) validates, and the demo is the example."""

from __future__ import annotations

from pathlib import Path

import pytest

from calibench.study.spec import load_spec

ROOT = Path(__file__).resolve().parents[2]
SPECS = sorted((ROOT / "examples").glob("*.yaml")) + sorted((ROOT / "benchmarks").glob("*.yaml"))


@pytest.mark.parametrize("path", SPECS, ids=[p.name for p in SPECS])
def test_shipped_spec_validates(path: Path, monkeypatch) -> None:
    from calibench.core import connectivity

    # specs for hub models (paper-study.yaml) are for users with hub access: validate them as if online
    # (offline, a hub id is refused in one line: tests/data/test_hub_offline.py)
    for name in connectivity.OFFLINE_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(connectivity, "_probe", lambda endpoint, timeout: None)
    spec = load_spec(path)
    assert spec.models and spec.methods and spec.sources


def test_the_bundled_demo_is_the_example() -> None:
    bundled = ROOT / "src" / "calibench" / "study" / "demo-study.yaml"
    assert bundled.read_text() == (ROOT / "examples" / "demo-study.yaml").read_text()
