"""COLA calibration data curation (He et al., NeurIPS 2025), for any causal LM.

Stage 1 (:mod:`.scoring`, :mod:`.embeddings`, :mod:`.capabilities`) scores
candidate sources by their coverage of target capabilities; stage 2
(:mod:`.processing`, :mod:`.pool`) turns the kept sources into a pool of
windows; stage 3 (:mod:`.layers`, :mod:`.activations`, :mod:`.projection`,
:mod:`.selection`) selects the pool members nearest the k-means centroids of
their projected activations.  :mod:`.metrics` measures coverage and diversity
of any set against a pool, :mod:`.proxy` compares sets after compression, and
:func:`curate` runs it all.

    >>> from calibench.curate import curate, CurationConfig        # doctest: +SKIP
    >>> result = curate("smollm2-135m", CurationConfig(n=16, seq_len=256, pool_size=256))  # doctest: +SKIP
    >>> result.calib.save("curated")                                  # doctest: +SKIP
"""

from __future__ import annotations

from calibench.curate.capabilities import (
    CAPABILITIES,
    Capability,
    get_capability,
    list_capabilities,
    parse_capabilities,
    register_capability,
)
from calibench.curate.layers import DecoderLayers, find_decoder_layers
from calibench.curate.metrics import activation_metrics, coverage, diversity
from calibench.curate.pipeline import CurationConfig, CurationResult, curate, pool_features, random_from_pool
from calibench.curate.projection import Concatenate, RandomProjection
from calibench.curate.scoring import ScoreMatrix, capability_weights, score_sources
from calibench.curate.selection import Selection, kmeans_select, random_select

__all__ = [
    "CAPABILITIES",
    "Capability",
    "Concatenate",
    "CurationConfig",
    "CurationResult",
    "DecoderLayers",
    "RandomProjection",
    "ScoreMatrix",
    "Selection",
    "activation_metrics",
    "capability_weights",
    "coverage",
    "curate",
    "diversity",
    "find_decoder_layers",
    "get_capability",
    "kmeans_select",
    "list_capabilities",
    "parse_capabilities",
    "pool_features",
    "random_from_pool",
    "random_select",
    "register_capability",
    "score_sources",
]
