"""Weights & Biases, offline: one W&B run per cell, written under the study for ``wandb sync`` later.

Runs are offline unless ``WANDB_MODE`` says otherwise (``WANDB_MODE=online``
with a logged-in user logs straight to the server), so a study on a machine
without network still tracks.  An offline run cannot be listed back, so the
tracker keeps its own ledger of the cells it finished
(``calibench-tracked-<study id>.txt`` in the runs' directory), which is what
lets a resumed study log only the missing cells.  ``wandb`` is not a
dependency of calibench: ``pip install wandb``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from calibench.core.errors import CalibenchError
from calibench.tracking.base import CellEntry, Tracker, TrackingSpec, installed, register

MISSING = "wandb is not installed: pip install wandb"


@register
class WandbTracker(Tracker):
    name = "wandb"

    @classmethod
    def require(cls) -> None:
        if not installed("wandb"):
            raise CalibenchError(MISSING)

    def __init__(self, spec: TrackingSpec, study_dir: Path, study_name: str):
        super().__init__(spec, study_dir, study_name)
        uri = spec.uri or str(self.study_dir)
        self.directory = Path(uri.removeprefix("file://").removeprefix("file:")).expanduser().resolve()
        self.project = spec.experiment or study_name
        self.mode = os.environ.get("WANDB_MODE", "offline")

    def open(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        import wandb  # noqa: F401  (a broken install fails here, before the study)

    @property
    def ledger(self) -> Path:
        return self.directory / f"calibench-tracked-{self.study_id}.txt"

    def logged_keys(self) -> set[str]:
        if not self.ledger.is_file():
            return set()
        return {line.strip() for line in self.ledger.read_text(encoding="utf-8").splitlines() if line.strip()}

    def log_cell(self, entry: CellEntry) -> None:
        import wandb

        settings: Any = wandb.Settings(silent=True, console="off")
        run = wandb.init(
            project=self.project,
            name=entry.name,
            group=self.study_name,
            config=dict(entry.params),
            tags=[f"study:{self.study_id}"],
            dir=str(self.directory),
            mode=self.mode,
            settings=settings,
        )
        try:
            run.log(dict(entry.metrics))
            run.summary.update({**entry.metrics, "set_id": entry.params.get("set_id", ""), "cell_key": entry.key})
        finally:
            run.finish()
        with open(self.ledger, "a", encoding="utf-8") as fh:  # after the run is complete: a cut-off cell is relogged
            fh.write(entry.key + "\n")
