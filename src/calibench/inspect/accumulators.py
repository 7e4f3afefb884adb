"""Streaming activation statistics with memory that does not grow with the set.

Each accumulator sees a batch of activations as an ``(N, H)`` float32 matrix
of *real* tokens only (padding already removed by the caller) and folds it
into per-channel or fixed-size state: nothing here keeps an activation, so
peak memory is one batch plus ``O(H + bins + top_k)`` per site, whatever the
number of samples.  Sums are float64 so that long sets do not lose small
terms, and every value is cast to float32 *before* it is squared: Gemma's
residual stream reaches 1e4-1e5, whose fourth power overflows half precision.

This module is pure tensor math (torch, on whatever device the activations
are on); hooks and models live in :mod:`calibench.inspect.collect`.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any

#: Log-spaced histogram of |x|: edges 10**LOG_MIN .. 10**LOG_MAX, BINS bins.
LOG_MIN = -8.0
LOG_MAX = 8.0
BINS = 4096
#: Ratio between consecutive bin edges (10**(16/4096), about 1.0090): a reported
#: quantile lies within this factor of the exact (``inverted_cdf``) quantile.
BIN_RATIO = 10.0 ** ((LOG_MAX - LOG_MIN) / BINS)


@dataclass(frozen=True)
class Massive:
    """One massive activation: where it is and the token it sits on."""

    value: float
    channel: int
    sample: int
    position: int
    token_id: int
    median: float


class ChannelStats:
    """Per-channel max |x|, mean |x| and RMS: the scales SmoothQuant and AWQ derive."""

    def __init__(self, width: int, device: Any = None) -> None:
        import torch

        self.count = 0
        self.max_abs = torch.zeros(width, dtype=torch.float32, device=device)
        self.sum_abs = torch.zeros(width, dtype=torch.float64, device=device)
        self.sum_sq = torch.zeros(width, dtype=torch.float64, device=device)

    def update(self, x: Any, a: Any = None) -> None:
        import torch

        if x.shape[0] == 0:
            return
        a = x.abs() if a is None else a
        self.count += int(x.shape[0])
        self.max_abs = torch.maximum(self.max_abs, a.amax(dim=0))
        # one batch sums in float32 (its rows number in the thousands), the running totals in float64;
        # float32 squares overflow only past 1.8e19
        self.sum_abs += a.sum(dim=0).double()
        self.sum_sq += (x * x).sum(dim=0).double()

    def result(self) -> dict[str, list[float]]:
        n = max(self.count, 1)
        return {
            "max_abs": self.max_abs.cpu().tolist(),
            "mean_abs": (self.sum_abs / n).cpu().tolist(),
            "rms": (self.sum_sq / n).sqrt().cpu().tolist(),
        }


class LogHistogram:
    """Counts of |x| in fixed log-spaced bins, for quantiles in bounded memory.

    Resolution: bins are :data:`BIN_RATIO` (about 0.9%) wide in ratio between
    ``1e-8`` and ``1e8``; values below ``1e-8`` (zeros included) fall in an
    underflow bin reported as 0, values above ``1e8`` in an overflow bin
    reported as the largest |x| seen.  A quantile is the geometric centre of
    the bin holding the ``inverted_cdf`` quantile (the smallest value with at
    least a fraction q of all values at or below it), so it is within a factor
    ``BIN_RATIO`` of the exact one.
    """

    def __init__(self, device: Any = None) -> None:
        import torch

        # index 0: underflow, 1..BINS: log bins, BINS + 1: overflow
        self.counts = torch.zeros(BINS + 2, dtype=torch.int64, device=device)
        self.largest = 0.0

    def update(self, x: Any, a: Any = None) -> None:
        import torch

        a = (x.abs() if a is None else a).reshape(-1)
        if a.numel() == 0:
            return
        self.largest = max(self.largest, float(a.max()))
        # float32 log10 is exact to ~1e-7 decades, far inside a bin (0.004 decades)
        scaled = (torch.log10(a.clamp_min(1e-30)) - LOG_MIN) * (BINS / (LOG_MAX - LOG_MIN))
        index = torch.floor(scaled).clamp(-1, BINS).long() + 1
        self.counts += torch.bincount(index, minlength=BINS + 2)

    def quantile(self, q: float) -> float:
        if not 0.0 <= q <= 1.0:
            raise ValueError(f"quantile must lie in [0, 1], got {q}")
        counts = self.counts.cpu().tolist()
        total = sum(counts)
        if total == 0:
            return float("nan")
        rank = max(1, math.ceil(q * total))
        # the first bin whose running count reaches the rank (one always does: rank <= total)
        index = next(i for i, seen in enumerate(itertools.accumulate(counts)) if seen >= rank)
        if index == 0:
            return 0.0
        if index == BINS + 1:
            return self.largest
        low = LOG_MIN + (index - 1) * (LOG_MAX - LOG_MIN) / BINS
        return min(10.0 ** (low + 0.5 * (LOG_MAX - LOG_MIN) / BINS), self.largest)


class TokenKurtosis:
    """Pearson kurtosis (``fisher=False``: 3 for a Gaussian) of x over the hidden dimension, averaged over tokens.

    A token whose hidden state is constant has no kurtosis and is left out of
    the average (``skipped`` counts them).
    """

    def __init__(self) -> None:
        self.total = 0.0
        self.count = 0
        self.skipped = 0

    def update(self, x: Any) -> None:
        if x.shape[0] == 0:
            return
        d = x - x.mean(dim=1, keepdim=True)
        # kurtosis is scale-free: dividing each row by its largest |d| keeps the fourth powers of a 1e5
        # residual peak in range, so they can be taken in float32
        d = d / d.abs().amax(dim=1, keepdim=True).clamp_min(1e-30)
        d2 = d * d
        m2 = d2.mean(dim=1).double()
        m4 = (d2 * d2).mean(dim=1).double()
        valid = m2 > 0
        self.skipped += int((~valid).sum())
        self.count += int(valid.sum())
        self.total += float((m4[valid] / m2[valid] ** 2).sum())

    def result(self) -> float | None:
        return self.total / self.count if self.count else None


class ThresholdCounts:
    """Per channel, the number of token positions with |x| >= threshold (LLM.int8's 6 by default)."""

    def __init__(self, width: int, threshold: float = 6.0, device: Any = None) -> None:
        import torch

        self.threshold = float(threshold)
        self.counts = torch.zeros(width, dtype=torch.int64, device=device)

    def update(self, x: Any, a: Any = None) -> None:
        self.counts += ((x.abs() if a is None else a) >= self.threshold).sum(dim=0)

    def result(self) -> list[int]:
        return [int(c) for c in self.counts.cpu().tolist()]


def hidden_median_abs(x: Any) -> Any:
    """Median of |x| over each row's hidden dimension (mean of the two middle values when H is even, as numpy)."""
    a, _ = x.abs().sort(dim=1)
    width = a.shape[1]
    mid = width // 2
    if width % 2:
        return a[:, mid]
    return 0.5 * (a[:, mid - 1] + a[:, mid])


class MassiveActivations:
    """Massive activations (Sun et al. 2024): |x| > ``threshold`` and >= ``ratio`` x its hidden state's median |x|.

    ``total`` counts every such entry; ``top`` keeps only the ``top_k``
    largest (ties broken by sample, position, channel, so the list is
    deterministic), which bounds memory however many there are.
    """

    def __init__(self, threshold: float = 100.0, ratio: float = 1000.0, top_k: int = 64) -> None:
        self.threshold = float(threshold)
        self.ratio = float(ratio)
        self.top_k = int(top_k)
        self.total = 0
        self.top: list[Massive] = []

    def update(self, x: Any, sample: Any, position: Any, token_id: Any, a: Any = None) -> None:
        import torch

        if x.shape[0] == 0:
            return
        a = x.abs() if a is None else a
        # only rows with an entry above the threshold can hold a massive one: the median (a sort) is
        # taken for those alone, which is most of this accumulator's cost saved
        candidates = torch.nonzero(a.amax(dim=1) > self.threshold, as_tuple=True)[0]
        if candidates.numel() == 0:
            return
        a, sample, position, token_id = a[candidates], sample[candidates], position[candidates], token_id[candidates]
        median = hidden_median_abs(a)
        hit = (a > self.threshold) & (a >= self.ratio * median.unsqueeze(1))
        rows, channels = torch.nonzero(hit, as_tuple=True)
        if rows.numel() == 0:
            return
        self.total += int(rows.numel())
        values = a[rows, channels]
        if values.numel() > self.top_k:  # only the batch's largest can enter the running top-k
            keep = torch.topk(values, self.top_k).indices
            rows, channels, values = rows[keep], channels[keep], values[keep]
        found = [
            Massive(float(v), int(c), int(s), int(p), int(t), float(m))
            for v, c, s, p, t, m in zip(
                values.cpu().tolist(),
                channels.cpu().tolist(),
                sample[rows].cpu().tolist(),
                position[rows].cpu().tolist(),
                token_id[rows].cpu().tolist(),
                median[rows].cpu().tolist(),
            )
        ]
        merged = sorted(self.top + found, key=lambda m: (-m.value, m.sample, m.position, m.channel))
        self.top = merged[: self.top_k]


class SiteAccumulator:
    """All statistics of one hook site, fed with ``(N, H)`` float32 rows of real tokens."""

    def __init__(
        self,
        width: int,
        *,
        int8_threshold: float = 6.0,
        massive_threshold: float = 100.0,
        massive_ratio: float = 1000.0,
        massive_top_k: int = 64,
        device: Any = None,
    ) -> None:
        self.width = int(width)
        self.channels = ChannelStats(width, device)
        self.histogram = LogHistogram(device)
        self.kurtosis = TokenKurtosis()
        self.int8 = ThresholdCounts(width, int8_threshold, device)
        self.massive = MassiveActivations(massive_threshold, massive_ratio, massive_top_k)

    @property
    def tokens(self) -> int:
        return self.channels.count

    def update(self, x: Any, sample: Any, position: Any, token_id: Any) -> None:
        """Fold in real-token rows ``x`` and, per row, its sample index, position and token id."""
        if x.ndim != 2 or x.shape[1] != self.width:
            raise ValueError(f"expected (N, {self.width}) activations, got {tuple(x.shape)}")
        a = x.abs()
        self.channels.update(x, a)
        self.histogram.update(x, a)
        self.kurtosis.update(x)
        self.int8.update(x, a)
        self.massive.update(x, sample, position, token_id, a)


__all__ = [
    "BINS",
    "BIN_RATIO",
    "ChannelStats",
    "LogHistogram",
    "Massive",
    "MassiveActivations",
    "SiteAccumulator",
    "ThresholdCounts",
    "TokenKurtosis",
    "hidden_median_abs",
]
