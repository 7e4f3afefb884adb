"""Which task names lm-evaluation-harness knows, without paying for its index on every run.

lm-eval's ``TaskManager()`` reads all of its ~14,000 task YAMLs (includes
resolved) before it can say whether a name exists: 10 s on a quiet machine,
far more on a busy one.  Names in calibench's own registry never get here;
any other name is answered in two steps:

1. a text scan: every registered name is written literally in some config
   file under ``lm_eval/tasks`` (a ``task:``/``group:``/``tag:`` value), so a
   name that appears in none of them is unknown for certain.  Reading the
   files as text takes about a second, so a typo fails fast;
2. lm-eval's own index (its ``TaskIndex``), built once per lm-eval version
   and kept in the cache root as JSON, answers the rest: the kind of the name
   (task, group or tag) and the folders whose YAML builds it, so that running
   it later indexes only those folders.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from calibench.core import progress
from calibench.core.fsutil import atomic_write_bytes
from calibench.core.paths import home
from calibench.core.provenance import package_version

INDEX_FORMAT = 1
KINDS = ("task", "group", "tag")
_NAME_LINE = re.compile(r"^\s*-?\s*(?:task|group|tag)\s*:\s*['\"]?([^\s'\"#\[\]{},]+)", re.MULTILINE)


@dataclass(frozen=True)
class IndexEntry:
    """One name lm-eval knows."""

    name: str
    kind: str  # "task" (YAML or Python), "group" (aggregated children) or "tag" (a plain list of tasks)
    folders: tuple[str, ...]  # folders under lm_eval/tasks to index for building it (its members' included)
    members: tuple[str, ...] = field(default=())  # a tag's tasks, in lm-eval's order


def tasks_root() -> Path:
    """lm-eval's built-in task folder."""
    import lm_eval.tasks

    return Path(lm_eval.tasks.__file__).parent.resolve()


def _is_config_file(path: Path) -> bool:
    # included templates are often extensionless (``_default_template_yaml``, ``ntrex``)
    return path.suffix in ("", ".yaml", ".yml") or "yaml" in path.name


@functools.lru_cache(maxsize=2)
def _config_text(root: Path) -> str:
    parts = []
    for path in sorted(root.rglob("*")):
        if path.is_file() and _is_config_file(path) and "__pycache__" not in path.parts:
            parts.append(path.read_text(encoding="utf-8", errors="replace"))
    return "\n".join(parts)


def mentioned(name: str, root: Path | None = None) -> bool:
    """False only if ``name`` cannot be an lm-eval task (it is written in none of its config files)."""
    return bool(name) and name in _config_text(root or tasks_root())


def candidate_names(root: Path | None = None) -> list[str]:
    """Names for a did-you-mean: the full index when it is at hand, else the names the config files declare."""
    root = root or tasks_root()
    index = _memory.get(_cache_key(root)) or _read_cache(root)
    if index is not None:
        return sorted(index)
    return sorted(set(_NAME_LINE.findall(_config_text(root))))


def lookup(name: str, root: Path | None = None) -> IndexEntry | None:
    """The entry of ``name``, or None when lm-eval has no task, group or tag of that name."""
    root = root or tasks_root()
    if not mentioned(name, root):
        return None
    return full_index(root).get(name)


# -- the full index -----------------------------------------------------------------------------

_memory: dict[str, dict[str, IndexEntry]] = {}


def _lm_eval_version() -> str:
    return package_version("lm_eval") or "unknown"  # "unknown": lm_eval imported from a source tree


def _cache_key(root: Path) -> str:
    import hashlib

    return f"{_lm_eval_version()}-{hashlib.sha256(str(root).encode()).hexdigest()[:12]}"


def _cache_path(root: Path) -> Path:

    return home() / "lm_eval" / f"task-index-{_cache_key(root)}.json"


def _read_cache(root: Path) -> dict[str, IndexEntry] | None:
    path = _cache_path(root)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("format") != INDEX_FORMAT or data.get("root") != str(root):
        return None
    try:
        index = {
            name: IndexEntry(name, e["kind"], tuple(e["folders"]), tuple(e.get("members", ())))
            for name, e in data["entries"].items()
        }
    except (KeyError, TypeError):
        return None
    _memory[_cache_key(root)] = index
    return index


def _write_cache(root: Path, index: dict[str, IndexEntry]) -> None:

    entries = {
        e.name: {"kind": e.kind, "folders": list(e.folders), **({"members": list(e.members)} if e.members else {})}
        for e in index.values()
    }
    payload = {"format": INDEX_FORMAT, "root": str(root), "lm_eval": _lm_eval_version(), "entries": entries}
    try:
        atomic_write_bytes(_cache_path(root), json.dumps(payload).encode("utf-8"))
    except OSError:  # a read-only cache root costs time, not correctness
        pass


def full_index(root: Path | None = None) -> dict[str, IndexEntry]:
    """Every name lm-eval knows: from memory, the cache file, or (once) lm-eval's own ``TaskIndex``."""
    root = root or tasks_root()
    key = _cache_key(root)
    if key in _memory:
        return _memory[key]
    index = _read_cache(root)
    if index is None:
        index = _build(root)
        _memory[key] = index
        _write_cache(root, index)
    return index


def _build(root: Path) -> dict[str, IndexEntry]:
    import logging

    from lm_eval.tasks._index import TaskIndex

    logger = logging.getLogger("lm_eval")
    level = logger.level
    logger.setLevel(logging.ERROR)  # duplicate-name warnings are lm-eval's business
    try:
        with progress.task("indexing lm-eval's tasks (once per lm-eval version)", total=None):
            raw = TaskIndex.build([root])
    finally:
        logger.setLevel(level)
    return entries_from_raw(raw, root)


def entries_from_raw(raw: dict[str, Any], root: Path) -> dict[str, IndexEntry]:
    """calibench's entries from lm-eval's ``{name: Entry}``: kinds, and the folders each name needs."""
    folders: dict[str, frozenset[str]] = {}

    def folder_of(path: Any) -> set[str]:
        if path is None:
            return set()
        try:
            return {Path(path).parent.resolve().relative_to(root).as_posix()}
        except ValueError:  # an include path outside lm-eval's folder
            return set()

    def need(name: str, visiting: frozenset[str] = frozenset()) -> frozenset[str]:
        if name in folders:
            return folders[name]
        entry = raw.get(name)
        if entry is None or name in visiting:
            return frozenset()
        here = folder_of(entry.yaml_path)
        kind = _kind(entry)
        if kind == "tag":
            for member in entry.tags:
                here |= need(member, visiting | {name})
        elif kind == "group":
            for member in _group_members((entry.cfg or {}).get("task")):
                here |= need(member, visiting | {name})
        folders[name] = frozenset(here)
        return folders[name]

    out = {}
    for name, entry in raw.items():
        kind = _kind(entry)
        members = tuple(sorted(entry.tags)) if kind == "tag" else ()
        out[name] = IndexEntry(name, kind, tuple(sorted(need(name))), members)
    return out


def _kind(entry: Any) -> str:
    kind = entry.kind.name.lower()
    return "task" if kind == "py_task" else kind


def _group_members(spec: Any) -> list[str]:
    """The registered names a group's ``task:`` list refers to (inline sub-groups searched too)."""
    names: list[str] = []
    items = spec if isinstance(spec, list) else [spec] if spec is not None else []
    for item in items:
        if isinstance(item, str):
            names.append(item)
        elif isinstance(item, dict):
            for key in ("task", "group"):
                value = item.get(key)
                if isinstance(value, str):
                    names.append(value)
                elif isinstance(value, list):
                    names.extend(_group_members(value))
    return names
