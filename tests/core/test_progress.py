"""Progress in a pipe or a log: the bars are held back until the command succeeds, but a long step prints a plain
line once a heartbeat period, so nothing runs silently for minutes; a refused command prints none of it."""

from __future__ import annotations

import pytest

from calibench.core import progress


@pytest.fixture
def enabled():
    progress.set_enabled(True)
    yield
    progress.set_enabled(False)
    progress.discard_deferred()


def test_a_long_step_in_a_log_prints_heartbeat_lines_at_once(enabled, monkeypatch, capsys):
    monkeypatch.setattr(progress, "HEARTBEAT_SECONDS", 0.0)  # every advance is "a period later"
    with progress.task("scoring pairs", total=3, unit="pairs") as bar:
        for _ in range(3):
            bar.advance()
        seen = capsys.readouterr().err.splitlines()  # before the step ends: written at once, not held back
    assert [line.rsplit(",", 1)[0] for line in seen] == [f"scoring pairs: {i}/3 pairs" for i in (1, 2, 3)]
    assert all(line.endswith("s") for line in seen)
    progress.flush_deferred()
    assert "scoring pairs" in capsys.readouterr().err  # the held-back bar, once the command succeeded


def test_a_short_step_prints_no_heartbeat_and_a_failure_prints_nothing(enabled, capsys):
    with pytest.raises(RuntimeError), progress.task("reading", total=2) as bar:
        bar.advance()
        raise RuntimeError("refused")
    progress.discard_deferred()
    assert capsys.readouterr().err == ""
