"""``calibench study signals DIR``: the cheap signals of every (model, method, set) of a finished study.

The sets are the study's own (``DIR/sets/<set_id>/``), the methods and
evaluation text come from the cells' configurations in the store, so each
signal describes exactly the set a cell was compressed with.  Values go to a
``signals`` table in the same SQLite store, one row per (model, method,
set, signal) committed as soon as it is computed: an interrupted run keeps
what it finished, and a rerun computes only what is missing or was computed
with other settings (``k_layers``, held-out windows).  Signals that do not
depend on the method (everything but ``reconstruction*``) are stored once
per set, with method ``""``.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from calibench.core.errors import CalibenchError
from calibench.core.settings import DEFAULTS, accepts_settings
from calibench.data.calibset import CalibrationSet
from calibench.placement import load_placed
from calibench.predict.progress import outer_bar
from calibench.predict.settings import StudySignalsSettings
from calibench.predict.signals import (
    DEFAULT_HELDOUT_WINDOWS,
    DEFAULT_K_LAYERS,
    SIGNALS,
    Signal,
    compute,
    heldout_name,
    make_probe,
    parse_signals,
)
from calibench.study.runner import tokenizer_for
from calibench.study.sets import set_path
from calibench.study.store import DB_NAME

TABLE = """
CREATE TABLE IF NOT EXISTS signals (
    model TEXT NOT NULL,
    method TEXT NOT NULL,
    set_id TEXT NOT NULL,
    signal TEXT NOT NULL,
    value REAL,
    seconds REAL,
    settings TEXT NOT NULL,
    computed REAL,
    PRIMARY KEY (model, method, set_id, signal)
);
"""


@dataclass(frozen=True)
class CellRef:
    """A finished compressed grid cell: what its set and method were, and where its set lives."""

    key: str
    model: str
    method: str  # the study's label (the report's ``method`` column)
    method_name: str
    params: dict[str, Any]
    source: str
    set_index: int
    n: int
    seq_len: int
    set_id: str
    tasks: tuple[str, ...]
    dtype: str
    device: str


@dataclass(frozen=True)
class Job:
    model: str
    method: str  # label, "" for method-independent signals
    method_name: str
    params: str  # JSON
    set_id: str
    seq_len: int
    tasks: tuple[str, ...]
    signal: Signal
    settings: str  # JSON: what the value depends on besides the set


@dataclass(frozen=True)
class SignalRun:
    directory: Path
    computed: int
    skipped: int
    seconds: float


def _check_study(directory: Path) -> None:

    if not (directory / DB_NAME).is_file():
        raise CalibenchError(f"{directory} has no {DB_NAME}: run `calibench study run SPEC --out {directory}` first")


def _connect(directory: Path) -> sqlite3.Connection:

    conn = sqlite3.connect(directory / DB_NAME, isolation_level=None, timeout=60)
    conn.executescript(TABLE)
    return conn


def study_cells(directory: str | Path) -> list[CellRef]:
    """Every finished compressed cell of the grid (noise-floor reruns and dense cells left out)."""

    directory = Path(directory)
    _check_study(directory)
    with sqlite3.connect(directory / DB_NAME) as conn:
        rows = conn.execute(
            "SELECT key, config, set_id FROM cells WHERE status = 'done' AND set_id IS NOT NULL"
        ).fetchall()
    out = []
    for key, config, set_id in rows:
        cfg = json.loads(config)
        if cfg.get("method") == "dense" or cfg.get("perturbation"):
            continue
        out.append(
            CellRef(
                key=key,
                model=cfg["model"],
                method=cfg["method"],
                method_name=cfg["method_name"],
                params=dict(cfg.get("params") or {}),
                source=cfg["source"],
                set_index=int(cfg["set_index"]),
                n=int(cfg["n"]),
                seq_len=int(cfg["seq_len"]),
                set_id=set_id,
                tasks=tuple(cfg.get("eval", {}).get("tasks", ())),
                dtype=cfg.get("dtype", "auto"),
                device=cfg.get("device", "auto"),
            )
        )
    return sorted(out, key=lambda c: (c.model, c.method, c.source, c.n, c.seq_len, c.set_index))


def plan(cells: Sequence[CellRef], signals: Sequence[Signal], k_layers: int, heldout_windows: int) -> list[Job]:
    """One job per (model, method or "", set, signal), in cell order, without duplicates."""
    jobs: dict[tuple[str, str, str, str], Job] = {}
    for cell in cells:
        for signal in signals:
            method = cell.method if signal.per_method else ""
            settings: dict[str, Any] = {"heldout": heldout_name(cell.tasks), "heldout_windows": heldout_windows}
            if signal.per_method:
                settings.update({"k_layers": k_layers, "method": cell.method_name, "params": cell.params})
            key = (cell.model, method, cell.set_id, signal.name)
            if key not in jobs:
                jobs[key] = Job(
                    cell.model,
                    method,
                    cell.method_name if signal.per_method else "",
                    json.dumps(cell.params if signal.per_method else {}, sort_keys=True),
                    cell.set_id,
                    cell.seq_len,
                    cell.tasks,
                    signal,
                    json.dumps(settings, sort_keys=True, default=str),
                )
    return list(jobs.values())


def _existing(conn: sqlite3.Connection) -> dict[tuple[str, str, str, str], str]:
    return {
        (m, me, s, sig): settings
        for m, me, s, sig, settings in conn.execute("SELECT model, method, set_id, signal, settings FROM signals")
    }


@accepts_settings(StudySignalsSettings)
def compute_study_signals(
    directory: str | Path,
    signals: str | Sequence[str] | None = None,
    *,
    k_layers: int = DEFAULT_K_LAYERS,
    heldout_windows: int = DEFAULT_HELDOUT_WINDOWS,
    batch_size: int = DEFAULTS.batch_size,
    recompute: bool = False,
    settings: StudySignalsSettings | None = None,
) -> SignalRun:
    """Compute (or complete) the signals of every cell of the study in ``directory``; see the module docstring.

    ``settings`` gives ``signals``, ``k_layers`` and ``recompute`` as one
    :class:`~calibench.predict.settings.StudySignalsSettings` (what ``calibench
    study signals`` takes); keywords override its fields.
    """

    directory = Path(directory)
    chosen = parse_signals(signals)  # an unknown name fails before anything is read
    if k_layers < 1:
        raise CalibenchError(f"--k-layers must be at least 1, got {k_layers}")
    if heldout_windows < 1:
        raise CalibenchError(f"--heldout-windows must be at least 1, got {heldout_windows}")
    _check_study(directory)
    cells = study_cells(directory)
    if not cells:
        raise CalibenchError(f"{directory} has no finished compressed cells: run the study first")
    missing = sorted({c.set_id for c in cells if not (set_path(directory, c.set_id) / "manifest.json").is_file()})
    if missing:
        raise CalibenchError(
            f"the study's set {missing[0]} is missing from {directory / 'sets'}: rerun "
            "`calibench study run` on this directory to rebuild its sets"
        )
    started = time.perf_counter()
    conn = _connect(directory)
    try:
        existing = {} if recompute else _existing(conn)
        jobs = plan(cells, chosen, k_layers, heldout_windows)
        pending = [j for j in jobs if existing.get((j.model, j.method, j.set_id, j.signal.name)) != j.settings]
        by_model: dict[str, list[Job]] = {}
        for job in pending:
            by_model.setdefault(job.model, []).append(job)
        dtype_device = {c.model: (c.dtype, c.device) for c in cells}
        with outer_bar("signals", len(pending)) as bar:
            for model_spec, model_jobs in by_model.items():
                tokenizer = tokenizer_for(model_spec)
                dtype, device = dtype_device[model_spec]
                model = load_placed(model_spec, dtype=dtype, device=device).eval()
                probes: dict[tuple[int, tuple[str, ...]], Any] = {}
                sets: dict[str, CalibrationSet] = {}
                for job in model_jobs:
                    probe_key = (job.seq_len, job.tasks)
                    if probe_key not in probes:
                        probes[probe_key] = make_probe(
                            model,
                            tokenizer,
                            model_spec,
                            job.tasks,
                            job.seq_len,
                            heldout_windows=heldout_windows,
                            k_layers=k_layers,
                            batch_size=batch_size,
                        )
                    if job.set_id not in sets:
                        sets[job.set_id] = CalibrationSet.load(set_path(directory, job.set_id), tokenizer=tokenizer)
                    bar.update(description=f"signals: {job.signal.name} of {job.set_id}")
                    value = compute(
                        job.signal, probes[probe_key], sets[job.set_id], job.method_name or None, json.loads(job.params)
                    )
                    stored = value.value if value.value == value.value else None  # NaN is stored as NULL
                    conn.execute(
                        "INSERT OR REPLACE INTO signals VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        (
                            job.model,
                            job.method,
                            job.set_id,
                            job.signal.name,
                            stored,
                            value.seconds,
                            job.settings,
                            time.time(),
                        ),
                    )
                    bar.advance()
                probes.clear()  # they hold the model: free it before the next one loads
                del model
    finally:
        conn.close()
    return SignalRun(directory, len(pending), len(jobs) - len(pending), time.perf_counter() - started)


def load_signals(directory: str | Path) -> Any:
    """The stored signal values as a DataFrame (model, method, set_id, signal, value, settings); empty if none."""
    import pandas as pd

    columns = ["model", "method", "set_id", "signal", "value", "settings"]
    path = Path(directory) / DB_NAME
    if not path.is_file():
        return pd.DataFrame(columns=columns)
    with sqlite3.connect(path) as conn:
        found = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'signals'").fetchone()
        rows = conn.execute(f"SELECT {', '.join(columns)} FROM signals").fetchall() if found else []
    frame = pd.DataFrame(rows, columns=columns)
    frame["value"] = pd.to_numeric(frame["value"], errors="coerce")
    return frame


def cell_signals(directory: str | Path) -> Any:
    """One row per finished grid cell and signal: the cell's key, its grouping columns and the signal value."""
    import pandas as pd

    stored = load_signals(directory)
    columns = ["key", "model", "method", "source", "set_index", "n", "seq_len", "set_id", "signal", "value"]
    if stored.empty:
        return pd.DataFrame(columns=columns)
    values = {(r.model, r.method, r.set_id, r.signal): r.value for r in stored.itertuples(index=False)}
    rows = []
    for cell in study_cells(directory):
        for name in sorted(set(stored.signal)):
            per_method = SIGNALS.get(name).per_method if name in SIGNALS else False
            key = (cell.model, cell.method if per_method else "", cell.set_id, name)
            if key in values:
                rows.append(
                    [
                        cell.key,
                        cell.model,
                        cell.method,
                        cell.source,
                        cell.set_index,
                        cell.n,
                        cell.seq_len,
                        cell.set_id,
                        name,
                        values[key],
                    ]
                )
    return pd.DataFrame(rows, columns=columns)
