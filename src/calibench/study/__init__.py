"""Studies: the calibration-data experiments of the papers, as a grid of cells with a store and a report."""

from calibench.study.api import StudyRun, run_study
from calibench.study.cells import Cell, expand
from calibench.study.spec import StudySpec, load_spec

__all__ = ["Cell", "StudyRun", "StudySpec", "expand", "load_spec", "run_study"]
