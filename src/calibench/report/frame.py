"""A study's results as one long DataFrame, and its per-item samples: the only place the report reads the store.

Everything downstream (tables, statistics, plots, sections) works on these
in-memory values, so it can be tested on hand-made frames without a study.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from calibench.study.store import Store

COLUMNS = [
    "key",
    "model",
    "method",
    "method_name",
    "source",
    "set_index",
    "n",
    "seq_len",
    "task",
    "metric",
    "value",
    "stderr",
    "items",
    "limit",
    "perturbation",
    "numerics",
]

Samples = dict[tuple[str, str], dict[str, dict[str, Any]]]  # (cell key, task) -> item id -> item


def load_frame(directory: str | Path) -> tuple[Any, list[tuple[dict[str, Any], str]], dict[str, Any]]:
    """All results of a study as a long DataFrame (one row per number), its failures and its metadata."""
    import pandas as pd

    directory = Path(directory)
    store = Store(directory, read_only=True)  # refuses a missing, empty or foreign store without touching it
    try:
        store.validate()  # a damaged record is one line naming the cell, before any report file is written
        rows = store.rows()
        failures = store.failures()
        meta = store.meta()
    finally:
        store.close()
    records = []
    for row in rows:
        cfg = row["config"]
        records.append(
            {
                "key": row["key"],
                "model": cfg["model"],
                "method": cfg["method"],
                "method_name": cfg.get("method_name", ""),
                "source": cfg["source"] or "-",
                "set_index": cfg["set_index"],
                "n": cfg["n"],
                "seq_len": cfg["seq_len"],
                "task": row["task"],
                "metric": row["metric"],
                "value": row["value"],
                "stderr": row["stderr"],
                "items": row["n"],
                "limit": row["limit"],
                "perturbation": cfg.get("perturbation", ""),
                "numerics": numerics_label(row["record"].get("numerics")),
            }
        )
    return pd.DataFrame.from_records(records, columns=COLUMNS), failures, meta


ITEM_COLUMNS = ["key", "model", "method", "source", "set_index", "perturbation", "task", "item"]


def items_frame(frame: Any, samples: Samples) -> Any:
    """Per-item results as one long DataFrame: the cell's labels, the task, the item id and one column per
    numeric field of the item (``nll``/``tokens`` for perplexity windows, ``acc`` ... for lm-eval items).

    Text fields (documents, responses) stay out: the file is for recomputing the report's numbers, and small.
    """
    import pandas as pd

    cells = frame.drop_duplicates("key").set_index("key")
    records = []
    for (key, task), items in sorted(samples.items()):
        if key not in cells.index:
            continue
        cell = cells.loc[key]
        labels = {c: cell[c] for c in ITEM_COLUMNS[1:6]}
        for item_id, item in sorted(items.items()):
            values = {k: float(v) for k, v in _numeric_fields(item) if k not in ITEM_COLUMNS}
            records.append({"key": key, **labels, "task": task, "item": item_id, **values})
    out = pd.DataFrame.from_records(records)
    if out.empty:
        return pd.DataFrame(columns=ITEM_COLUMNS)
    extra = sorted(c for c in out.columns if c not in ITEM_COLUMNS)
    return out[ITEM_COLUMNS + extra]


def _numeric_fields(item: dict[str, Any], prefix: str = "") -> list[tuple[str, float]]:
    """The item's numbers (bools as 0/1), nested dicts flattened as ``outer.inner``."""
    out: list[tuple[str, float]] = []
    for k, v in item.items():
        name = f"{prefix}{k}"
        if isinstance(v, dict):
            out.extend(_numeric_fields(v, f"{name}."))
        elif isinstance(v, (bool, int, float)):
            out.append((name, float(v)))
    return out


def numerics_label(numerics: dict[str, Any] | None) -> str:
    """The kernels a cell ran on, as one comparable string ('' for cells recorded before it was kept)."""
    if not numerics:
        return ""
    kernels = "pinned" if numerics.get("reproducible") else f"{numerics.get('aten_cpu_capability')}"
    return f"{numerics.get('cpu')} / {numerics.get('cuda') or 'cpu'} / {kernels}"


def load_samples(directory: str | Path, tasks: list[str] | None = None) -> Samples:
    """Per-item results of the finished cells, for the given tasks (all tasks when ``None``)."""
    store = Store(directory, read_only=True)
    try:
        if tasks is None:
            return store.samples()
        out: Samples = {}
        for task in tasks:
            out.update(store.samples(task))
        return out
    finally:
        store.close()
