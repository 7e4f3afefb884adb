"""Activation statistics across calibration sets: what quantizers see.

* :mod:`~calibench.inspect.sites` finds the hook sites by structure;
* :mod:`~calibench.inspect.accumulators` holds the bounded-memory streaming math;
* :mod:`~calibench.inspect.collect` runs a set through a model with hooks.
"""

from calibench.inspect.collect import (
    ActivationStats,
    MassiveActivation,
    OutlierFeature,
    SiteStats,
    activation_stats,
    outlier_features,
)
from calibench.inspect.sites import HookSite, all_sites, find_sites

__all__ = [
    "ActivationStats",
    "HookSite",
    "MassiveActivation",
    "OutlierFeature",
    "SiteStats",
    "activation_stats",
    "all_sites",
    "find_sites",
    "outlier_features",
]
