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
from calibench.core.errors import CalibenchError, CorruptArtifactError
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


SQLITE_MAGIC = b"SQLite format 3\x00"
#: The tables (and their columns) every calibench study store has; ``signals`` and others are optional.
REQUIRED_TABLES = {
    "cells": {"key", "config", "status", "error", "set_id", "record", "seconds", "finished"},
    "results": {"key", "task", "metric", "value", "stderr", "n", "limit_"},
    "sets": {"recipe", "set_index", "set_id"},
    "meta": {"key", "value"},
}


def check_store(directory: str | Path) -> Path:
    """The path of ``directory``'s store when it is a calibench study store; one CalibenchError otherwise.

    Reads only: a missing, empty, non-SQLite or foreign database file is refused without being opened for
    writing (SQLite would turn an empty file into a database, and a writer would add its tables to a foreign one).
    """
    directory = Path(directory)
    path = directory / DB_NAME
    if not path.is_file():
        raise CalibenchError(f"{directory} has no {DB_NAME}: run `calibench study run SPEC --out {directory}` first")
    try:
        with path.open("rb") as handle:
            head = handle.read(len(SQLITE_MAGIC))
    except OSError as exc:
        raise CalibenchError(f"cannot read {path}: {exc.strerror or exc}") from None
    if not head:
        raise CorruptArtifactError(f"{path} is empty (0 bytes), not a calibench study store: remove it or the study")
    if head != SQLITE_MAGIC:
        raise CorruptArtifactError(f"{path} is not a calibench study store (not an SQLite database)")
    try:
        conn = _connect_read_only(path)
        try:
            found = {
                table: {row[1] for row in conn.execute(f"PRAGMA table_info({table})")} for table in REQUIRED_TABLES
            }
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        raise CorruptArtifactError(f"{path} is not a readable calibench study store ({exc})") from None
    for table, columns in REQUIRED_TABLES.items():
        missing = sorted(columns - found[table])
        if missing:
            what = f"no table '{table}'" if not found[table] else f"table '{table}' lacks {', '.join(missing)}"
            raise CorruptArtifactError(f"{path} is an SQLite database but not a calibench study store ({what})")
    return path


def _connect_read_only(path: Path) -> sqlite3.Connection:
    """A connection that cannot write, and leaves no file behind.

    SQLite opens a WAL database read-only by creating its ``-wal`` and ``-shm`` files (and leaves them); with no
    ``-wal`` file there is no writer and no unmerged change, so the database is opened ``immutable`` (no
    locking files at all). With one, a study is running (or was killed): read through its WAL as any reader does.
    """
    wal = path.with_name(path.name + "-wal")
    mode = "mode=ro" if wal.exists() else "mode=ro&immutable=1"
    return sqlite3.connect(f"{path.resolve().as_uri()}?{mode}", uri=True, timeout=60, check_same_thread=False)


def _json(text: str | None, where: str, default: Any = None) -> Any:
    """A stored JSON value, or one CorruptArtifactError naming where it is."""
    if text is None:
        return default
    try:
        return json.loads(text)
    except (TypeError, ValueError):
        raise CorruptArtifactError(f"{where} is not valid JSON: the study store was edited or damaged") from None


def _describe(config: dict[str, Any], key: str) -> str:
    try:
        return f"cell {Cell.model_validate(config).describe()} ({key})"
    except ValueError:
        return f"cell {key}"


class Store:
    """A study's store; ``read_only`` for readers (reports, signals): an existing store, opened without writing."""

    def __init__(self, directory: str | Path, read_only: bool = False):
        self.directory = Path(directory)
        self.read_only = read_only
        path = self.directory / DB_NAME
        if read_only or path.exists():
            check_store(self.directory)  # refused before SQLite writes to it
        if read_only:
            self.conn = _connect_read_only(path)
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        # check_same_thread off: the process-pool executor stores results from its
        # completion thread; every write is serialised by the executor's lock
        self.conn = sqlite3.connect(path, isolation_level=None, timeout=60, check_same_thread=False)
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
        return {
            key: _json(record, f"the record of cell {key} in {self.path}", {})
            for key, record in self.conn.execute(query)
        }

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
        return {k: _json(v, f"meta '{k}' in {self.path}") for k, v in self.conn.execute("SELECT key, value FROM meta")}

    @property
    def path(self) -> Path:
        return self.directory / DB_NAME

    # ------------------------------------------------------------ reading
    def rows(self) -> list[dict[str, Any]]:
        """Every result joined with its cell configuration."""
        query = """SELECT c.key, c.config, c.record, r.task, r.metric, r.value, r.stderr, r.n, r.limit_
                   FROM results r JOIN cells c ON c.key = r.key WHERE c.status = 'done'"""
        out = []
        checked: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}
        for key, config, record, task, metric, value, stderr, n, limit in self.conn.execute(query):
            if key not in checked:
                checked[key] = self._checked_cell(key, config, record)
            cfg, rec = checked[key]
            for name, number, optional in (("value", value, False), ("stderr", stderr, True)):
                if not (optional and number is None) and (
                    isinstance(number, bool) or not isinstance(number, (int, float))
                ):
                    raise CorruptArtifactError(
                        f"{_describe(cfg, key)}: its {task} {metric} {name} is {number!r}, not a number "
                        f"({self.path} was edited or damaged)"
                    )
            out.append(
                {
                    "key": key,
                    "config": cfg,
                    "record": rec,
                    "task": task,
                    "metric": metric,
                    "value": value,
                    "stderr": stderr,
                    "n": n,
                    "limit": limit,
                }
            )
        return out

    def validate(self) -> None:
        """Refuse, in one line naming the cell, a store whose stored JSON, numbers or keys were damaged or edited.

        Cheap (SQLite checks the JSON); readers call it before they write anything.
        """
        for key, config, record in self.conn.execute("SELECT key, config, record FROM cells"):
            self._checked_cell(key, config, record)
        bad = self.conn.execute(
            "SELECT r.key, r.task, r.metric, r.value, c.config FROM results r JOIN cells c ON c.key = r.key "
            "WHERE typeof(r.value) NOT IN ('real', 'integer') OR typeof(r.stderr) NOT IN ('real', 'integer', 'null') "
            "LIMIT 1"
        ).fetchone()
        if bad is not None:
            key, task, metric, value, config = bad
            raise CorruptArtifactError(
                f"{_describe(_json(config, key), key)}: its {task} {metric} is not a number ({value!r}): "
                f"{self.path} was edited or damaged"
            )
        item = self.conn.execute("SELECT key, task, item FROM samples WHERE NOT json_valid(data) LIMIT 1").fetchone()
        if item is not None:
            raise CorruptArtifactError(
                f"item {item[2]} of cell {item[0]} ({item[1]}) in {self.path} is not valid JSON: "
                "the store was edited or damaged"
            )
        done_sets = self.conn.execute(
            "SELECT c.key, c.config, c.set_id FROM cells c WHERE c.status = 'done' AND c.set_id IS NOT NULL "
            "AND c.set_id NOT IN (SELECT set_id FROM sets) LIMIT 1"
        ).fetchone()
        if done_sets is not None:
            key, config, set_id = done_sets
            raise CorruptArtifactError(
                f"{_describe(_json(config, key), key)}: its calibration set {set_id} is not among the study's sets "
                f"({self.path} was edited or damaged)"
            )

    def _checked_cell(self, key: str, config: str, record: str | None) -> tuple[dict[str, Any], dict[str, Any]]:
        """A stored cell's configuration and record, refused in one line when either was damaged or edited."""
        cfg = _json(config, f"the configuration of cell {key} in {self.path}")
        rec = _json(record, f"the record of {_describe(cfg, key) if isinstance(cfg, dict) else key} in {self.path}", {})
        if not isinstance(cfg, dict) or not isinstance(rec, dict):
            raise CorruptArtifactError(
                f"cell {key} in {self.path} is damaged (its configuration or record is not a mapping)"
            )
        try:
            stored_key = Cell.model_validate(cfg).key
        except ValueError:
            raise CorruptArtifactError(f"cell {key} in {self.path} has a configuration that is not a cell's") from None
        if stored_key != key:
            raise CorruptArtifactError(
                f"{_describe(cfg, key)}: its configuration was edited (it hashes to {stored_key}, not its key "
                f"{key}): {self.path} no longer says what the numbers are; rerun the study into a new directory"
            )
        return cfg, rec

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
            out.setdefault((key, name), {})[item] = _json(data, f"item {item} of cell {key} ({name}) in {self.path}")
        return out

    def failures(self) -> list[tuple[dict[str, Any], str]]:
        query = "SELECT key, config, error FROM cells WHERE status = 'failed'"
        return [(_json(c, f"the configuration of cell {k} in {self.path}"), e) for k, c, e in self.conn.execute(query)]

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
