"""Run a calibration set through a model once and collect activation statistics at every site.

:func:`~calibench.inspect.stream.stream_activations` hands each site's
real-token activations (padding dropped, float32) to a
:class:`~calibench.inspect.accumulators.SiteAccumulator`, so memory is one
batch plus per-channel state, whatever the number of windows.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from calibench.curate.layers import find_decoder_layers
from calibench.inspect.accumulators import BIN_RATIO, SiteAccumulator
from calibench.inspect.sites import HookSite, find_sites
from calibench.inspect.stream import Batch, check_vocabulary_fits, merge_shared_inputs, stream_activations

DEFAULT_QUANTILES = (0.5, 0.9, 0.99, 0.999, 0.9999)


class MassiveActivation(BaseModel):
    """A massive activation with where it sits: site, layer, channel, sample, position and token id."""

    site: str
    layer: int
    channel: int
    sample: int
    position: int
    token_id: int
    value: float
    median: float


class SiteStats(BaseModel):
    """The statistics of one site over the whole set.

    Massive activations are defined on the residual stream (Sun et al. 2024),
    but they are recorded at every site: a massive residual entry survives the
    following norm as a large linear input, and seeing both tells where it enters.
    """

    name: str
    kind: str
    layer: int
    role: str
    shared: list[str] = Field(default_factory=list, description="roles of the linears reading the same input")
    width: int
    tokens: int
    channel_max_abs: list[float]
    channel_mean_abs: list[float]
    channel_rms: list[float]
    max_abs: float
    quantiles: dict[str, float]
    kurtosis: float | None
    int8_counts: list[int]
    massive_total: int
    massive: list[MassiveActivation]


class OutlierFeature(BaseModel):
    """An LLM.int8 outlier feature: a channel of one site family that is large in many layers and positions."""

    kind: str
    role: str
    channel: int
    layers: list[int]
    layer_fraction: float
    max_position_fraction: float


class ActivationStats(BaseModel):
    """Everything :func:`activation_stats` measured, JSON-serialisable (``model_dump_json``)."""

    set_id: str | None = None
    n: int
    seq_len: int
    tokens: int
    int8_threshold: float
    outlier_layer_fraction: float
    outlier_position_fraction: float
    massive_threshold: float
    massive_ratio: float
    quantile_resolution: float = Field(description="reported quantiles lie within this factor of the exact ones")
    sites: list[SiteStats]
    outlier_features: list[OutlierFeature]

    def site(self, name: str) -> SiteStats:
        for site in self.sites:
            if site.name == name:
                return site
        raise KeyError(name)


def outlier_features(
    sites: Sequence[SiteStats], *, layer_fraction: float = 0.25, position_fraction: float = 0.06
) -> list[OutlierFeature]:
    """LLM.int8's rule (Dettmers et al. 2022), from the per-(layer, channel) threshold counts.

    Only linear inputs are looked at, as in the paper (the hidden states that
    feed a matrix multiplication): the un-normed residual stream of a modern
    model exceeds 6 in hundreds of channels, which says nothing about
    quantization; it has the massive-activation statistics instead.  Sites
    are grouped into families by role: the q_proj inputs of all layers, the
    down_proj inputs of all layers, and so on, since only sites of one role
    share a channel meaning across layers.  In one layer a channel
    is affected when at least ``position_fraction`` of the real token
    positions have |x| >= the threshold; it is an outlier feature when it is
    affected in at least ``layer_fraction`` of the family's layers.
    """
    families: dict[tuple[str, str], list[SiteStats]] = defaultdict(list)
    for site in sites:
        if site.kind == "linear_input":
            families[(site.kind, site.role)].append(site)
    found: list[OutlierFeature] = []
    for (kind, role), members in families.items():
        width = members[0].width
        fractions = np.array([np.asarray(s.int8_counts, dtype=np.float64) / max(s.tokens, 1) for s in members])
        affected = fractions >= position_fraction  # (layers, channels)
        share = affected.sum(axis=0) / len(members)
        for channel in range(width):
            if affected[:, channel].any() and share[channel] >= layer_fraction:
                found.append(
                    OutlierFeature(
                        kind=kind,
                        role=role,
                        channel=channel,
                        layers=[m.layer for m, hit in zip(members, affected[:, channel]) if hit],
                        layer_fraction=float(share[channel]),
                        max_position_fraction=float(fractions[:, channel].max()),
                    )
                )
    return found


def activation_stats(
    model: Any,
    calib_set: Any,
    *,
    layers: str | None = None,
    batch_size: int = 4,
    int8_threshold: float = 6.0,
    outlier_layer_fraction: float = 0.25,
    outlier_position_fraction: float = 0.06,
    massive_threshold: float = 100.0,
    massive_ratio: float = 1000.0,
    massive_top_k: int = 64,
    quantiles: Sequence[float] = DEFAULT_QUANTILES,
    description: str | None = None,
) -> ActivationStats:
    """Statistics of ``calib_set``'s activations at the linear inputs and residual stream of ``model``.

    ``layers`` is a regex on qualified module names (see
    :func:`calibench.inspect.sites.find_sites`).  The set runs once, in
    batches of ``batch_size`` windows, under ``torch.no_grad``.
    """

    stack = find_decoder_layers(model)
    ids, mask = calib_set.to_torch()
    check_vocabulary_fits(model, ids)
    sites = merge_shared_inputs(model, stack, find_sites(model, layers, stack), ids, mask)
    device = next(model.parameters()).device
    accumulators = {
        site.name: SiteAccumulator(
            site.width,
            int8_threshold=int8_threshold,
            massive_threshold=massive_threshold,
            massive_ratio=massive_ratio,
            massive_top_k=massive_top_k,
            device=device,
        )
        for site in sites
    }

    def consume(site: HookSite, x: Any, batch: Batch) -> None:
        accumulators[site.name].update(x, batch.sample, batch.position, batch.token)

    stream_activations(model, stack, sites, ids, mask, consume, batch_size=batch_size, description=description)
    results = [_site_stats(site, accumulators[site.name], quantiles) for site in sites]
    return ActivationStats(
        set_id=getattr(calib_set, "set_id", None) or None,
        n=int(ids.shape[0]),
        seq_len=int(ids.shape[1]),
        tokens=int(mask.sum()),
        int8_threshold=int8_threshold,
        outlier_layer_fraction=outlier_layer_fraction,
        outlier_position_fraction=outlier_position_fraction,
        massive_threshold=massive_threshold,
        massive_ratio=massive_ratio,
        quantile_resolution=BIN_RATIO,
        sites=results,
        outlier_features=outlier_features(
            results, layer_fraction=outlier_layer_fraction, position_fraction=outlier_position_fraction
        ),
    )


def _site_stats(site: HookSite, acc: SiteAccumulator, quantiles: Sequence[float]) -> SiteStats:
    channels = acc.channels.result()
    return SiteStats(
        name=site.name,
        kind=site.kind,
        layer=site.layer,
        role=site.role,
        shared=list(site.shared),
        width=site.width,
        tokens=acc.tokens,
        channel_max_abs=channels["max_abs"],
        channel_mean_abs=channels["mean_abs"],
        channel_rms=channels["rms"],
        max_abs=max(channels["max_abs"]) if channels["max_abs"] else 0.0,
        quantiles={f"{q:g}": acc.histogram.quantile(q) for q in quantiles},
        kurtosis=acc.kurtosis.result(),
        int8_counts=acc.int8.result(),
        massive_total=acc.massive.total,
        massive=[
            MassiveActivation(
                site=site.name,
                layer=site.layer,
                channel=m.channel,
                sample=m.sample,
                position=m.position,
                token_id=m.token_id,
                value=m.value,
                median=m.median,
            )
            for m in acc.massive.top
        ],
    )
