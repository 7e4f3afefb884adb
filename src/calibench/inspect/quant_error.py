"""What a calibration set's activation statistics cost: the int8 activation error they cause on held-out text.

A static W8A8 scheme (SmoothQuant's, or llm-compressor's ``W8A8`` with static
activations) fixes one scale per linear input from the calibration set:
``scale = max|x| / 127``.  On other text, activations above the calibrated
max are clipped and everything below is rounded on that grid.  Dynamic
per-token quantization (``scale_t = max_j |x_tj| / 127``, computed at run
time) needs no calibration and is the reference a static scale is measured
against.

The error is the normalised squared error ``sum (x - q(x))^2 / sum x^2`` over
the held-out tokens, per linear input, then per layer and in total (sums of
numerators over sums of denominators, so large sites weigh by their energy).
Every set is scored in the same held-out pass: one forward, one dynamic
error, and one static error per set.  ``-10 log10`` of it is the SQNR in dB.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

from pydantic import BaseModel

from calibench.core.errors import CalibenchError
from calibench.curate.layers import find_decoder_layers
from calibench.inspect.collect import ActivationStats
from calibench.inspect.sites import HookSite, find_sites
from calibench.inspect.stream import Batch, check_vocabulary_fits, merge_shared_inputs, stream_activations


def static_scales(stats: ActivationStats) -> dict[str, float]:
    """Per-tensor max |x| of every linear input: what a static activation scale is calibrated from."""
    return {site.name: site.max_abs for site in stats.sites if site.kind == "linear_input"}


def fake_quantize_static(x: Any, max_abs: float, bits: int = 8) -> Any:
    """Symmetric per-tensor quantization on the grid ``max_abs / qmax``; values beyond it clip."""
    import torch

    qmax = 2 ** (bits - 1) - 1
    scale = max(max_abs, 1e-12) / qmax
    return torch.clamp(torch.round(x / scale), -qmax, qmax) * scale


def fake_quantize_dynamic_per_token(x: Any, bits: int = 8) -> Any:
    """Symmetric per-token quantization: each row gets its own scale, so nothing clips."""
    import torch

    qmax = 2 ** (bits - 1) - 1
    scale = x.abs().amax(dim=-1, keepdim=True).clamp_min(1e-12) / qmax
    return torch.clamp(torch.round(x / scale), -qmax, qmax) * scale


class LayerQuantError(BaseModel):
    layer: int
    static: dict[str, float]  # set label -> normalised squared error with that set's static scales
    clipped: dict[str, float]  # set label -> share of held-out entries beyond the calibrated max
    dynamic: float  # per-token dynamic error (independent of the calibration set)


class QuantErrorReport(BaseModel):
    heldout: str
    tokens: int
    bits: int
    sets: list[str]
    layers: list[LayerQuantError]
    total_static: dict[str, float]
    total_dynamic: float

    def sqnr_db(self, label: str) -> float:
        error = self.total_static[label]
        return -10 * math.log10(error) if error > 0 else math.inf


def activation_quant_error(
    model: Any,
    heldout_set: Any,
    scales: dict[str, dict[str, float]],
    *,
    bits: int = 8,
    layers: str | None = None,
    batch_size: int = 4,
    heldout_label: str = "heldout",
    description: str | None = None,
) -> QuantErrorReport:
    """Static per-tensor error of every set's scales, and the dynamic per-token error, on ``heldout_set``.

    ``scales`` maps a set label to :func:`static_scales` of that set's
    statistics on the same model; only linear inputs are scored (residual
    streams are not quantized by W8A8 schemes).
    """

    if not scales:
        raise CalibenchError("no calibration sets to score: pass the statistics of at least one set")
    if not 2 <= bits <= 16:
        raise CalibenchError(f"activation bits must be between 2 and 16, got {bits}")
    stack = find_decoder_layers(model)
    ids, mask = heldout_set.to_torch()
    check_vocabulary_fits(model, ids)
    sites = [
        site
        for site in merge_shared_inputs(model, stack, find_sites(model, layers, stack), ids, mask)
        if site.kind == "linear_input"
    ]
    missing = sorted({site.name for site in sites for table in scales.values() if site.name not in table})
    if missing:
        raise CalibenchError(
            f"the calibration statistics have no scale for {missing[0]}: collect them with the "
            "same model and layer filter as the held-out pass"
        )
    energy: dict[str, float] = defaultdict(float)
    dynamic: dict[str, float] = defaultdict(float)
    static: dict[tuple[str, str], float] = defaultdict(float)
    clipped: dict[tuple[str, str], int] = defaultdict(int)
    entries: dict[str, int] = defaultdict(int)

    def consume(site: HookSite, x: Any, _batch: Batch) -> None:
        energy[site.name] += float((x * x).sum())
        dynamic[site.name] += float(((x - fake_quantize_dynamic_per_token(x, bits)) ** 2).sum())
        entries[site.name] += x.numel()
        for label, table in scales.items():
            static[(label, site.name)] += float(((x - fake_quantize_static(x, table[site.name], bits)) ** 2).sum())
            clipped[(label, site.name)] += int((x.abs() > table[site.name]).sum())

    stream_activations(
        model,
        stack,
        sites,
        ids,
        mask,
        consume,
        batch_size=batch_size,
        description=description or "activation quantization error on held-out text",
    )
    labels = list(scales)

    def ratio(num: float, den: float) -> float:
        return num / den if den > 0 else 0.0

    by_layer: dict[int, list[str]] = defaultdict(list)
    for site in sites:
        by_layer[site.layer].append(site.name)
    layer_rows = []
    for layer, names in sorted(by_layer.items()):
        den = sum(energy[n] for n in names)
        count = sum(entries[n] for n in names)
        layer_rows.append(
            LayerQuantError(
                layer=layer,
                static={label: ratio(sum(static[(label, n)] for n in names), den) for label in labels},
                clipped={label: ratio(sum(clipped[(label, n)] for n in names), count) for label in labels},
                dynamic=ratio(sum(dynamic[n] for n in names), den),
            )
        )
    total_energy = sum(energy.values())
    return QuantErrorReport(
        heldout=heldout_label,
        tokens=int(mask.sum()),
        bits=bits,
        sets=labels,
        layers=layer_rows,
        total_static={label: ratio(sum(static[(label, s.name)] for s in sites), total_energy) for label in labels},
        total_dynamic=ratio(sum(dynamic.values()), total_energy),
    )
