"""MLflow: one run per cell, in an experiment named after the study, on a local store by default.

The default tracking URI is a file store in ``<study>/mlruns``: it needs no
server and works offline (``mlflow ui --backend-store-uri <study>/mlruns``
browses it).  MLflow 3 keeps that file backend in maintenance mode and
refuses it unless ``MLFLOW_ALLOW_FILE_STORE`` is set, so the tracker sets it
while it runs, for ``file:`` URIs only; ``sqlite:`` URIs need SQLAlchemy and
Alembic (full ``mlflow`` has them, ``mlflow-skinny`` does not), and any
server URI MLflow takes works as it is.  Only the client is used
(``MlflowClient``), never MLflow's global active run, so a study run inside
a user's own MLflow run leaves it alone.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from calibench.core.errors import CalibenchError
from calibench.tracking.base import CellEntry, Tracker, TrackingSpec, installed, register

ALLOW_FILE_STORE = "MLFLOW_ALLOW_FILE_STORE"
MISSING = "mlflow is not installed: pip install 'calibench[tracking]' (or pip install mlflow-skinny)"
BATCH_PARAMS, BATCH_METRICS = 100, 1000  # MLflow's log_batch limits


def _scheme(uri: str) -> str:
    parsed = urlparse(uri)
    return parsed.scheme if len(parsed.scheme) > 1 else ""  # "C:\\..." is a path, not a scheme


def resolve_uri(uri: str | None, study_dir: Path) -> str:
    """The tracking URI to use: a ``file:`` store in the study by default; relative file paths made absolute."""
    if uri is None:
        return (study_dir / "mlruns").resolve().as_uri()
    scheme = _scheme(uri)
    if scheme in ("", "file"):
        path = urlparse(uri).path if scheme == "file" else uri
        return Path(path).expanduser().resolve().as_uri()
    return uri


@register
class MlflowTracker(Tracker):
    name = "mlflow"

    @classmethod
    def require(cls) -> None:
        if not installed("mlflow"):
            raise CalibenchError(MISSING)

    @classmethod
    def check_uri(cls, uri: str) -> None:
        if _scheme(uri) == "sqlite" and not (installed("sqlalchemy") and installed("alembic")):
            raise CalibenchError(
                "an sqlite: tracking uri needs SQLAlchemy and Alembic: pip install sqlalchemy alembic "
                "(or use a file: uri, or pip install mlflow)"
            )

    def __init__(self, spec: TrackingSpec, study_dir: Path, study_name: str):
        super().__init__(spec, study_dir, study_name)
        self.uri = resolve_uri(spec.uri, self.study_dir)
        self.experiment = spec.experiment or study_name
        self.client: Any = None
        self.experiment_id: str | None = None
        self._saved_env: str | None = None
        self._set_env = False

    def open(self) -> None:
        import warnings

        if self.uri.startswith("file:") and ALLOW_FILE_STORE not in os.environ:
            os.environ[ALLOW_FILE_STORE] = "true"
            self._set_env = True
        from mlflow.tracking import MlflowClient

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the file store's FutureWarning, once per process
            self.client = MlflowClient(tracking_uri=self.uri)
            found = self.client.get_experiment_by_name(self.experiment)
            if found is not None and found.lifecycle_stage == "deleted":
                raise CalibenchError(
                    f"MLflow experiment '{self.experiment}' at {self.uri} is deleted: restore it "
                    "(mlflow experiments restore) or set tracking.experiment to another name"
                )
            self.experiment_id = (
                found.experiment_id if found is not None else self.client.create_experiment(self.experiment)
            )

    def logged_keys(self) -> set[str]:
        runs = self.client.search_runs(
            [self.experiment_id], filter_string=f"tags.`calibench.study` = '{self.study_id}'", max_results=50_000
        )
        return {r.data.tags.get("calibench.cell_key", "") for r in runs} - {""}

    def log_cell(self, entry: CellEntry) -> None:
        from mlflow.entities import Metric, Param, RunTag

        tags = {k: v for k, v in entry.tags.items() if k != "calibench.cell_key"}
        run = self.client.create_run(
            self.experiment_id, run_name=entry.name, tags={**tags, "calibench.study_name": self.study_name}
        )
        run_id = run.info.run_id
        now = int(time.time() * 1000)
        params = [Param(k, v) for k, v in entry.params.items()]
        metrics = [Metric(k, v, now, 0) for k, v in entry.metrics.items()]
        for i in range(0, max(len(params), 1), BATCH_PARAMS):
            self.client.log_batch(run_id, params=params[i : i + BATCH_PARAMS])
        for i in range(0, len(metrics), BATCH_METRICS):
            self.client.log_batch(run_id, metrics=metrics[i : i + BATCH_METRICS])
        # the cell's key last: a run cut off half-logged lacks it, so the next study run logs that cell again
        self.client.log_batch(run_id, tags=[RunTag("calibench.cell_key", entry.key)])
        self.client.set_terminated(run_id, "FINISHED")

    def close(self) -> None:
        if self._set_env:
            os.environ.pop(ALLOW_FILE_STORE, None)
            self._set_env = False
