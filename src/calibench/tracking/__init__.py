"""Experiment tracking of study cells (MLflow, Weights & Biases offline, or none): see :mod:`.base`."""

from __future__ import annotations

from calibench.tracking.base import (
    TRACKERS,
    CellEntry,
    StudyTracking,
    Tracker,
    TrackingSpec,
    cell_entry,
    finished_entries,
    get_tracker,
    open_tracking,
    register,
)

__all__ = [
    "TRACKERS",
    "CellEntry",
    "StudyTracking",
    "Tracker",
    "TrackingSpec",
    "cell_entry",
    "finished_entries",
    "get_tracker",
    "open_tracking",
    "register",
]
