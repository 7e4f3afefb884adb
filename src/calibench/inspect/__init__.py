"""Activation statistics across calibration sets: what quantizers see.

* :mod:`~calibench.inspect.sites` finds the hook sites by structure;
* :mod:`~calibench.inspect.accumulators` holds the bounded-memory streaming math;
* :mod:`~calibench.inspect.collect` runs a set through a model with hooks;
* :mod:`~calibench.inspect.experts` counts the tokens each set routes to each expert of a MoE model.
"""

from calibench.inspect.collect import (
    ActivationStats,
    MassiveActivation,
    OutlierFeature,
    SiteStats,
    activation_stats,
    outlier_features,
)
from calibench.inspect.experts import ExpertRouting, expert_routing
from calibench.inspect.sites import HookSite, all_sites, find_sites

__all__ = [
    "ActivationStats",
    "ExpertRouting",
    "HookSite",
    "MassiveActivation",
    "OutlierFeature",
    "SiteStats",
    "activation_stats",
    "expert_routing",
    "all_sites",
    "find_sites",
    "outlier_features",
]
