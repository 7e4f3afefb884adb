"""``calibench summ score`` and ``summ table`` end to end: own pairs in, per-row scores by id out, a table back."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from calibench.summarize.fragments import fragments
from calibench.summarize.judge_stats import roc_auc
from calibench.summarize.novel_ngrams import novel_ngrams

CALIBENCH = Path(sys.executable).with_name("calibench")
DOC_A = "The council approved the new bridge on Tuesday. Work starts in May and costs four million pounds."
DOC_B = "Heavy rain flooded the village square. Residents moved their cars to higher ground overnight."
ROWS = [
    {"id": "a1", "document": DOC_A, "summary": "The council approved the new bridge on Tuesday.", "label": 1},
    {"id": "a2", "document": DOC_A, "summary": "The mayor rejected a tunnel plan in June.", "label": 0},
    {"id": 3, "document": DOC_B, "summary": "Heavy rain flooded the village square.", "label": True},
    {"id": "b2", "document": DOC_B, "summary": "A drought dried the river near the school.", "label": False},
    {"id": "a3", "document": DOC_A, "summary": "Work on the bridge starts in May.", "label": 1},
    {"id": "b3", "document": DOC_B, "summary": "Snow closed every road for a week.", "label": 0},
]


def _cli(*args: str, home: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "CALIBENCH_HOME": str(home), "HF_HUB_OFFLINE": "1", "NO_COLOR": "1", "COLUMNS": "200"}
    return subprocess.run([str(CALIBENCH), *args], capture_output=True, text=True, env=env, timeout=300)


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_lexical_scores_by_id_and_the_table(tmp_path):
    pairs = _write(tmp_path / "pairs.jsonl", ROWS)
    out = tmp_path / "scores.jsonl"
    done = _cli("summ", "score", str(pairs), "--judges", "lexical", "-o", str(out), home=tmp_path / "home")
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in records] == [r["id"] for r in ROWS]  # ids as given, integers stay integers
    assert [r["label"] for r in records] == [int(r["label"]) for r in ROWS]
    for row, record in zip(ROWS, records):
        frag = fragments(row["summary"], row["document"])
        expected = {"coverage": frag.coverage, "density": frag.density, **novel_ngrams(row["summary"], row["document"])}
        assert record["scores"] == pytest.approx(expected)

    again = _cli("summ", "score", str(pairs), "--judges", "lexical", "-o", str(out), home=tmp_path / "home")
    assert again.returncode == 2 and "already exists" in again.stderr
    assert _cli("summ", "score", str(pairs), "--judges", "lexical", "-o", str(out), "--force", "--limit", "4",
                home=tmp_path / "home").returncode == 0  # fmt: skip
    assert len(out.read_text().splitlines()) == 4
    _cli("summ", "score", str(pairs), "--judges", "lexical", "-o", str(out), "--force", home=tmp_path / "home")

    table_json = tmp_path / "table.json"
    shown = _cli("summ", "table", str(out), "--bootstrap", "200", "-o", str(table_json), home=tmp_path / "home")
    assert shown.returncode == 0, shown.stderr
    table = {e["score"]: e for e in json.loads(table_json.read_text())}
    labels = [int(r["label"]) for r in ROWS]
    for name in ("coverage", "novel_1"):
        values = [r["scores"][name] for r in records]
        assert table[name]["auc"] == pytest.approx(roc_auc(values, labels))
        assert table[name]["n"] == len(ROWS)
        lo, hi = table[name]["auc_ci"]
        assert lo <= table[name]["auc"] <= hi
        assert f"| {name} | 6 | {table[name]['auc']:.3f} [" in shown.stdout
    assert table["coverage"]["auc"] > 0.5 > table["novel_1"]["auc"]  # copied = consistent here; novelty the reverse
    md = tmp_path / "table.md"
    _cli("summ", "table", str(out), "--bootstrap", "200", "-o", str(md), home=tmp_path / "home")
    assert md.read_text() == shown.stdout  # the same seed: the same table


def test_unlabelled_rows_score_but_do_not_tabulate(tmp_path):
    pairs = _write(tmp_path / "pairs.jsonl", [{k: v for k, v in r.items() if k != "label"} for r in ROWS])
    out = tmp_path / "scores.jsonl"
    assert _cli("summ", "score", str(pairs), "--judges", "lexical", "-o", str(out), home=tmp_path).returncode == 0
    assert all("label" not in json.loads(line) for line in out.read_text().splitlines())
    shown = _cli("summ", "table", str(out), home=tmp_path)
    assert shown.returncode == 2 and "has no label" in shown.stderr and len(shown.stderr.splitlines()) == 1


def test_nli_scores_three_rows_with_a_progress_bar(tmp_path, offline_assets):
    from calibench.assets import pull
    from calibench.summarize.nli import AEGIS_ASSET

    pull(AEGIS_ASSET, progress=False)
    pairs = _write(tmp_path / "pairs.jsonl", ROWS[:3])
    out = tmp_path / "scores.jsonl"
    done = _cli("summ", "score", str(pairs), "--judges", "nli", "-o", str(out), home=Path(offline_assets))
    assert done.returncode == 0, done.stderr
    assert "scoring with nli" in done.stderr and "3/3" in done.stderr
    scores = [json.loads(line)["scores"]["summac_zs"] for line in out.read_text().splitlines()]
    assert len(scores) == 3 and all(0.0 <= s <= 1.0 for s in scores)
    assert scores[0] > scores[1]  # the copied sentence above the invented one
