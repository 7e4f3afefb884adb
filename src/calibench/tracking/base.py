"""Experiment tracking of study cells: the spec's ``tracking:`` field and the registry of trackers.

A study's own store (``study.sqlite``) stays the record; a tracker copies each
finished cell into a tool people already browse: one tracked run per cell,
with the cell's configuration and set id as parameters and its results as
metrics.  Off by default (backend ``none``).

Tracking follows the store rather than the run: when a study starts, every
finished cell that the tracker does not have yet is logged first (cells
finished before tracking was switched on, or by a run killed between storing
a cell and logging it), then each cell as it finishes.  So a killed and
resumed study, or one that turns tracking on later, ends with exactly one
tracked run per cell.

A missing library is found when the spec is validated, not mid-run: the
backend's ``check`` only looks the module up (no import).  A tracker that
fails while the study runs prints one warning and stops logging for that run;
the cells are in the store, and the next run logs what is missing.
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator

from calibench.core.errors import CalibenchError
from calibench.core.registry import Registry
from calibench.core.text import one_line

STUDY_ID_META = "tracking_study_id"
MAX_PARAM_CHARS = 500  # MLflow's limit on older servers; W&B has none
_METRIC_NAME = re.compile(r"[^\w.\- /:]")


class TrackingSpec(BaseModel):
    """``tracking: {backend: mlflow, uri: file:./mlruns, experiment: NAME}`` in a study spec.

    ``uri``: MLflow's tracking URI (default: a file store in ``<study>/mlruns``),
    or for W&B the directory its offline runs go to (default: the study
    directory).  ``experiment``: the MLflow experiment or W&B project
    (default: the study's name).
    """

    model_config = ConfigDict(extra="forbid")
    backend: str = "none"
    uri: str | None = None
    experiment: str | None = None

    @field_validator("backend")
    @classmethod
    def _known_and_installed(cls, value: str) -> str:
        try:
            get_tracker(value).require()
        except CalibenchError as exc:
            raise ValueError(str(exc)) from None
        return value

    @field_validator("uri")
    @classmethod
    def _usable_uri(cls, value: str | None, info: ValidationInfo) -> str | None:
        backend = info.data.get("backend")
        if value is not None and backend is not None:
            try:
                get_tracker(backend).check_uri(value)
            except CalibenchError as exc:
                raise ValueError(str(exc)) from None
        return value


@dataclass(frozen=True)
class CellEntry:
    """What a tracker logs for one finished cell."""

    key: str
    name: str
    params: dict[str, str]
    metrics: dict[str, float]
    tags: dict[str, str] = field(default_factory=dict)


def installed(module: str) -> bool:
    """Whether ``module`` can be imported, without importing it."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package missing, or a module entry set to None
        return False


def _flatten(prefix: str, value: Any, out: dict[str, str]) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(f"{prefix}.{param_name(str(k))}" if prefix else param_name(str(k)), v, out)
        return
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    out[prefix] = text if len(text) <= MAX_PARAM_CHARS else text[: MAX_PARAM_CHARS - 3] + "..."


def metric_name(task: str, metric: str) -> str:
    """``task/metric`` with characters MLflow refuses in names replaced by ``_``.

    MLflow also refuses a name that a path normalisation would change (it may
    store names as files): a task naming a local file such as
    ``ppl:data/../held.txt`` then has its slashes replaced too.
    """
    import posixpath

    task, metric = _METRIC_NAME.sub("_", task), _METRIC_NAME.sub("_", metric).replace("/", "_")
    name = f"{task}/{metric}"
    return name if posixpath.normpath(name) == name else f"{task.replace('/', '_')}/{metric}"


def param_name(key: str) -> str:
    """A parameter key MLflow takes: its characters, no slashes (keys from source parameters can hold paths)."""
    return _METRIC_NAME.sub("_", key).replace("/", "_")


def describe_cell(config: dict[str, Any]) -> str:
    """A short run name: model, method, source and set, as the study's progress lines say it."""
    model = Path(str(config.get("model", ""))).name or str(config.get("model", ""))
    if config.get("method") == "dense":
        return f"{model} dense"
    source = Path(str(config.get("source", ""))).name or str(config.get("source", ""))
    extra = f" {config['perturbation']}" if config.get("perturbation") else ""
    shape = f"n={config.get('n')} len={config.get('seq_len')}"
    return f"{model} {config.get('method')} {source}#{config.get('set_index')} {shape}{extra}"


def cell_entry(
    key: str, config: dict[str, Any], set_id: str | None, rows: list[dict[str, Any]], seconds: float | None, study: str
) -> CellEntry:
    """The entry of one cell from its configuration (a Cell dump), set id and result rows; pure."""
    params: dict[str, str] = {}
    _flatten("", config, params)
    params["set_id"] = set_id or ""
    params["cell_key"] = key
    metrics = {metric_name(r["task"], r["metric"]): float(r["value"]) for r in rows}
    if seconds is not None:
        metrics["seconds"] = float(seconds)
    tags = {"calibench.cell_key": key, "calibench.study": study, "calibench.set_id": set_id or ""}
    return CellEntry(key, describe_cell(config), params, metrics, tags)


def finished_entries(store: Any, study: str) -> list[CellEntry]:
    """Every finished cell of a study store, as entries (for logging what a tracker lacks)."""
    cells = store.conn.execute("SELECT key, config, set_id, seconds FROM cells WHERE status = 'done' ORDER BY finished")
    rows: dict[str, list[dict[str, Any]]] = {}
    for key, task, metric, value in store.conn.execute("SELECT key, task, metric, value FROM results"):
        rows.setdefault(key, []).append({"task": task, "metric": metric, "value": value})
    return [
        cell_entry(key, json.loads(config), set_id, rows.get(key, []), seconds, study)
        for key, config, set_id, seconds in cells
    ]


class Tracker(ABC):
    """One backend: checked at spec time, opened before a study run, given each finished cell."""

    name: ClassVar[str]
    active: ClassVar[bool] = True

    @classmethod
    def require(cls) -> None:
        """Raise a one-line CalibenchError if the backend's library is missing (looked up, not imported).

        A hook: the default (a backend with no library) accepts.
        """
        return None

    @classmethod
    def check_uri(cls, uri: str) -> None:
        """Raise a one-line CalibenchError for a ``uri`` this backend cannot use.

        A hook: the default accepts every uri.
        """
        return None

    @classmethod
    def check(cls, spec: TrackingSpec) -> None:
        cls.require()
        if spec.uri is not None:
            cls.check_uri(spec.uri)

    def __init__(self, spec: TrackingSpec, study_dir: Path, study_name: str):
        self.spec = spec
        self.study_dir = Path(study_dir)
        self.study_name = study_name
        self.study_id = ""  # set by StudyTracking.start, from the store

    def open(self) -> None:
        """Connect (create the experiment, ...); may raise: it runs before the study writes anything.

        A hook: the default has nothing to connect.
        """
        return None

    @abstractmethod
    def logged_keys(self) -> set[str]:
        """Keys of the cells of this study already tracked."""

    @abstractmethod
    def log_cell(self, entry: CellEntry) -> None:
        """Track one finished cell."""

    def close(self) -> None:
        """Flush and release whatever the backend holds.

        A hook: the default holds nothing.
        """
        return None


class NoTracker(Tracker):
    """The default: nothing is tracked beyond the study's store."""

    name = "none"
    active = False

    def logged_keys(self) -> set[str]:
        return set()

    def log_cell(self, entry: CellEntry) -> None:
        pass


#: Every tracking backend, by name; the MLflow and W&B ones are imported when first looked up.
TRACKERS: Registry[type[Tracker]] = Registry("tracking backend")


def register(tracker: type[Tracker]) -> type[Tracker]:
    """Class decorator: make ``tracker`` the backend called ``tracker.name``."""
    return TRACKERS.register(tracker.name, tracker)


register(NoTracker)
TRACKERS.register_lazy("mlflow", "calibench.tracking.mlflow_tracker:MlflowTracker")
TRACKERS.register_lazy("wandb", "calibench.tracking.wandb_tracker:WandbTracker")


def get_tracker(name: str) -> type[Tracker]:
    return TRACKERS.get(name)


class StudyTracking:
    """A study run's tracker, made safe: its failures warn once and stop logging, never stop the study."""

    def __init__(self, tracker: Tracker):
        self.tracker = tracker
        self.failed = False

    @property
    def active(self) -> bool:
        return self.tracker.active and not self.failed

    def _guard(self, what: str, call: Any, *args: Any) -> Any:
        if not self.active:
            return None
        try:
            return call(*args)
        except Exception as exc:  # tracking is a copy; the store has the cell
            self.failed = True
            message = one_line(str(exc), 300)
            sys.stderr.write(
                f"warning: {self.tracker.name} tracking failed while {what} ({type(exc).__name__}: "
                f"{message}); the study goes on, and its next run logs the missing cells\n"
            )
            return None

    def start(self, store: Any) -> int:
        """Take the study id from the store and log its finished cells that the tracker lacks; how many."""
        if not self.active:
            return 0
        study_id = store.meta().get(STUDY_ID_META)
        if not study_id:
            import uuid

            study_id = uuid.uuid4().hex[:16]
            store.set_meta(STUDY_ID_META, study_id)
        self.tracker.study_id = str(study_id)
        have = self._guard("listing tracked cells", self.tracker.logged_keys)
        if have is None:
            return 0
        missing = [e for e in finished_entries(store, self.tracker.study_id) if e.key not in have]
        logged = 0
        for entry in missing:
            self.log(entry)
            logged += self.active
        return logged

    def log(self, entry: CellEntry) -> None:
        self._guard(f"logging {entry.name}", self.tracker.log_cell, entry)

    def log_cell(self, cell: Any, set_id: str | None, rows: list[dict[str, Any]], seconds: float | None) -> None:
        """Log a cell that just finished (a :class:`calibench.study.cells.Cell`)."""
        if self.active:
            self.log(cell_entry(cell.key, cell.model_dump(mode="json"), set_id, rows, seconds, self.tracker.study_id))

    def close(self) -> None:
        if self.tracker.active:
            self._guard("closing", self.tracker.close)


def open_tracking(spec: TrackingSpec | None, study_dir: str | Path, study_name: str) -> StudyTracking:
    """The tracker a study run logs to, connected (the no-op one when the spec has no ``tracking``).

    Called before the study writes anything, so a tracker that cannot start
    (an unreachable server, an unwritable store) is one error line and no
    half-made study.  :meth:`StudyTracking.start` then takes the study id
    that tags every tracked run from the store (made once and kept there, so
    a moved study directory still recognises its own runs).
    """
    spec = spec or TrackingSpec()
    cls = get_tracker(spec.backend)
    tracker = cls(spec, Path(study_dir), study_name)
    if cls.active:
        cls.check(spec)
        try:
            tracker.open()
        except CalibenchError:
            raise
        except Exception as exc:  # the backend's own error, as one line
            message = one_line(str(exc), 300)
            raise CalibenchError(
                f"cannot start {cls.name} tracking ({type(exc).__name__}: {message}): "
                "fix the spec's tracking: field or remove it"
            ) from None
    return StudyTracking(tracker)
