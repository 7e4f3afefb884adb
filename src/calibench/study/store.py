"""The study's embedded store: SQLite in the study directory.

One row per cell in ``cells`` and its numbers in ``results``, both written
in a single transaction when the cell finishes, so a process killed at any
moment leaves either the whole cell or nothing of it, and primary keys rule
out duplicates.  ``sets`` maps a set recipe to the content ids of its
calibration sets, which live under ``sets/<set_id>/``.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

from calibench.core import failpoints
from calibench.study.cells import Cell

DB_NAME = "study.sqlite"

SCHEMA = """
CREATE TABLE IF NOT EXISTS cells (
    key TEXT PRIMARY KEY,
    config TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('done', 'failed')),
    error TEXT,
    set_id TEXT,
    record TEXT,
    seconds REAL,
    finished REAL
);
CREATE TABLE IF NOT EXISTS results (
    key TEXT NOT NULL REFERENCES cells(key),
    task TEXT NOT NULL,
    metric TEXT NOT NULL,
    value REAL NOT NULL,
    stderr REAL,
    n INTEGER,
    limit_ INTEGER,
    PRIMARY KEY (key, task, metric)
);
CREATE TABLE IF NOT EXISTS sets (
    recipe TEXT NOT NULL,
    set_index INTEGER NOT NULL,
    set_id TEXT NOT NULL,
    PRIMARY KEY (recipe, set_index)
);
CREATE TABLE IF NOT EXISTS samples (
    key TEXT NOT NULL REFERENCES cells(key),
    task TEXT NOT NULL,
    item TEXT NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (key, task, item)
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
"""


def item_id(item: dict[str, Any], index: int) -> str:
    """How an item is known across cells: its document hash, its perplexity window, or its position."""
    if item.get("doc_hash"):
        return str(item["doc_hash"])
    if "window" in item:
        return f"window:{item['window']}"
    return f"item:{item.get('doc_id', index)}"


class Store:
    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        # check_same_thread off: the process-pool executor stores results from its
        # completion thread; every write is serialised by the executor's lock
        self.conn = sqlite3.connect(self.directory / DB_NAME, isolation_level=None, timeout=60, check_same_thread=False)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=FULL")
        self.conn.executescript(SCHEMA)

    def close(self) -> None:
        self.conn.close()

    # ------------------------------------------------------------ cells
    def done_keys(self) -> set[str]:
        return {row[0] for row in self.conn.execute("SELECT key FROM cells WHERE status = 'done'")}

    def record_success(
        self,
        cell: Cell,
        rows: list[dict[str, Any]],
        set_id: str | None,
        record: dict[str, Any],
        seconds: float,
        samples: dict[str, list[dict[str, Any]]] | None = None,
    ) -> None:
        """The cell, all its numbers and its per-item results, atomically (replacing an earlier failure)."""
        with self._transaction() as cur:
            cur.execute("DELETE FROM results WHERE key = ?", (cell.key,))
            cur.execute("DELETE FROM samples WHERE key = ?", (cell.key,))
            cur.execute(
                "INSERT OR REPLACE INTO cells VALUES (?, ?, 'done', NULL, ?, ?, ?, ?)",
                (cell.key, cell.model_dump_json(), set_id, json.dumps(record, default=str), seconds, time.time()),
            )
            failpoints.reach("store.write")  # the cell row is in, its results not yet: the transaction must not commit
            cur.executemany(
                "INSERT INTO results VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    (cell.key, r["task"], r["metric"], r["value"], r.get("stderr"), r.get("n"), r.get("limit"))
                    for r in rows
                ],
            )
            cur.executemany(
                "INSERT OR REPLACE INTO samples VALUES (?, ?, ?, ?)",
                [
                    (cell.key, task, item_id(item, i), json.dumps(item, default=str))
                    for task, items in (samples or {}).items()
                    for i, item in enumerate(items)
                ],
            )

    def record_block(
        self,
        cell: Cell,
        samples: dict[str, list[dict[str, Any]]],
        rows_for: Any,
        seconds: float,
    ) -> None:
        """A later block of an adaptive study's cell: its items added, each task's rows recomputed from all items.

        ``rows_for(task, items)`` gives a task's rows from its items; the cell
        keeps its record, and its seconds grow by this block's.
        """
        with self._transaction() as cur:
            cur.executemany(
                "INSERT OR REPLACE INTO samples VALUES (?, ?, ?, ?)",
                [
                    (cell.key, task, item_id(item, i), json.dumps(item, default=str))
                    for task, items in samples.items()
                    for i, item in enumerate(items)
                ],
            )
            failpoints.reach("store.block")  # items in, rows not yet recomputed: the transaction must not commit
            for task in samples:
                stored = [
                    json.loads(data)
                    for (data,) in cur.execute(
                        "SELECT data FROM samples WHERE key = ? AND task = ?", (cell.key, task)
                    ).fetchall()
                ]
                cur.execute("DELETE FROM results WHERE key = ? AND task = ?", (cell.key, task))
                cur.executemany(
                    "INSERT INTO results VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [
                        (cell.key, r["task"], r["metric"], r["value"], r.get("stderr"), r.get("n"), r.get("limit"))
                        for r in rows_for(task, stored)
                    ],
                )
            cur.execute(
                "UPDATE cells SET seconds = seconds + ?, finished = ? WHERE key = ?", (seconds, time.time(), cell.key)
            )

    def records(self) -> dict[str, dict[str, Any]]:
        """Each finished cell's record, by key."""
        query = "SELECT key, record FROM cells WHERE status = 'done'"
        return {key: json.loads(record or "{}") for key, record in self.conn.execute(query)}

    def record_failure(self, cell: Cell, error: str, seconds: float) -> None:
        with self._transaction() as cur:
            cur.execute(
                "INSERT OR REPLACE INTO cells VALUES (?, ?, 'failed', ?, NULL, NULL, ?, ?)",
                (cell.key, cell.model_dump_json(), error, seconds, time.time()),
            )

    # ------------------------------------------------------------ sets
    def set_ids(self, recipe: str) -> dict[int, str]:
        return dict(self.conn.execute("SELECT set_index, set_id FROM sets WHERE recipe = ?", (recipe,)))

    def all_set_ids(self) -> list[str]:
        return [row[0] for row in self.conn.execute("SELECT DISTINCT set_id FROM sets ORDER BY set_id")]

    def record_sets(self, recipe: str, ids: list[str]) -> None:
        with self._transaction() as cur:
            cur.executemany("INSERT OR REPLACE INTO sets VALUES (?, ?, ?)", [(recipe, i, s) for i, s in enumerate(ids)])

    # ------------------------------------------------------------ meta
    def set_meta(self, key: str, value: Any) -> None:
        with self._transaction() as cur:
            cur.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value, default=str)))

    def meta(self) -> dict[str, Any]:
        return {k: json.loads(v) for k, v in self.conn.execute("SELECT key, value FROM meta")}

    # ------------------------------------------------------------ reading
    def rows(self) -> list[dict[str, Any]]:
        """Every result joined with its cell configuration."""
        query = """SELECT c.key, c.config, c.record, r.task, r.metric, r.value, r.stderr, r.n, r.limit_
                   FROM results r JOIN cells c ON c.key = r.key WHERE c.status = 'done'"""
        out = []
        for key, config, record, task, metric, value, stderr, n, limit in self.conn.execute(query):
            out.append(
                {
                    "key": key,
                    "config": json.loads(config),
                    "record": json.loads(record or "{}"),
                    "task": task,
                    "metric": metric,
                    "value": value,
                    "stderr": stderr,
                    "n": n,
                    "limit": limit,
                }
            )
        return out

    def samples(self, task: str | None = None) -> dict[tuple[str, str], dict[str, dict[str, Any]]]:
        """Per-item results of finished cells: ``{(cell key, task): {item id: item}}``.

        The item id is the document's hash for lm-eval tasks and ``window:N``
        for perplexity windows, so the same item pairs across cells.
        """
        query = (
            "SELECT s.key, s.task, s.item, s.data FROM samples s JOIN cells c ON c.key = s.key WHERE c.status = 'done'"
        )
        args: tuple[Any, ...] = ()
        if task is not None:
            query, args = query + " AND s.task = ?", (task,)
        out: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
        for key, name, item, data in self.conn.execute(query, args):
            out.setdefault((key, name), {})[item] = json.loads(data)
        return out

    def failures(self) -> list[tuple[dict[str, Any], str]]:
        return [
            (json.loads(c), e) for c, e in self.conn.execute("SELECT config, error FROM cells WHERE status = 'failed'")
        ]

    def _transaction(self) -> Any:
        store = self

        class _Tx:
            def __enter__(self) -> sqlite3.Cursor:
                self.cur = store.conn.cursor()
                self.cur.execute("BEGIN IMMEDIATE")
                return self.cur

            def __exit__(self, exc_type: Any, *_: Any) -> None:
                self.cur.execute("ROLLBACK" if exc_type else "COMMIT")

        return _Tx()
