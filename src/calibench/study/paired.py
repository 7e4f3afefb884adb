"""The paired statistics moved to :mod:`calibench.report.stats`; this name stays for code that imports it here."""

from calibench.report.stats import (  # noqa: F401
    BOOTSTRAPS,
    EXACT_MAX_ITEMS,
    MCNEMAR,
    PERMUTATIONS,
    SEED,
    Comparison,
    Interval,
    compare_paired,
    discordant_counts,
    hierarchical_bootstrap_ci,
    holm,
    is_binary,
    items_needed,
    mcnemar_exact,
    mcnemar_pvalue,
    paired_bootstrap_ci,
    sets_needed,
    sign_flip_pvalue,
)
