"""The study report now lives in :mod:`calibench.report`; this module keeps its old names importable.

``write_report(directory)`` writes ``<dir>/report``: report.md, report.html
(PNGs embedded), results.csv, results.parquet, spec.json and the PNGs.
"""

from calibench.report.frame import load_frame  # noqa: F401
from calibench.report.notes import calibration_free_notes, noise_floor_notes  # noqa: F401
from calibench.report.plots import (  # noqa: F401
    plot_average_by_source,
    plot_noise_floor,
    plot_perplexity_by_source,
    plot_perplexity_matrix,
    plot_sample_size,
    plot_task_spread,
)
from calibench.report.render import markdown_table  # noqa: F401
from calibench.report.sections import NOISE_HEADING  # noqa: F401
from calibench.report.study import REPORT_DIR, Report, write_report  # noqa: F401
from calibench.report.tables import (  # noqa: F401
    ACCURACY_METRIC,
    AVERAGE,
    PERPLEXITY_METRIC,
    accuracy_table,
    gap_table,
    noise_floor_table,
    perplexity_increase_table,
    perplexity_table,
)
