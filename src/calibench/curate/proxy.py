"""Proxy evaluation: compress with a set, then perplexity on each capability's reference text.

A cheap stand-in for the zero-shot suite when comparing calibration sets
(COLA uses it to rank candidates): a fresh copy of the model is compressed
with :func:`calibench.compress.compress` and scored with
:func:`calibench.evaluation.perplexity` (the GPTQ/SparseGPT/Wanda protocol:
joined text, non-overlapping windows, explicit BOS) on every capability's
reference, capped at ``max_windows`` windows of ``seq_len`` tokens.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from calibench.core.settings import DEFAULTS
from calibench.curate.capabilities import Capability, load_reference, parse_capabilities
from calibench.data.calibset import CalibrationSet
from calibench.evaluation import perplexity


@dataclass
class ProxyResult:
    set_id: str
    method: str
    perplexity: dict[str, float]  # capability -> perplexity of the compressed model
    windows: dict[str, int]
    compression: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def record(self) -> dict[str, Any]:
        return {
            "set_id": self.set_id,
            "method": self.method,
            "perplexity": self.perplexity,
            "windows": self.windows,
            "compression": self.compression,
            "seconds": round(self.seconds, 2),
        }


def reference_perplexity(
    model: Any,
    tokenizer: Any,
    capabilities: Sequence[Capability],
    seq_len: int,
    max_windows: int | None = 16,
    batch_size: int = DEFAULTS.batch_size,
    texts: dict[str, list[str]] | None = None,
) -> tuple[dict[str, float], dict[str, int]]:

    ppl, windows = {}, {}
    for cap in capabilities:
        ref = texts[cap.name] if texts and cap.name in texts else load_reference(cap)
        result = perplexity(
            model,
            tokenizer,
            ref,
            seq_len,
            max_windows=max_windows,
            batch_size=batch_size,
            label=f"perplexity on {cap.name}",
        )
        ppl[cap.name] = result.perplexity
        windows[cap.name] = result.windows
    return ppl, windows


def proxy_evaluate(
    model: str,
    calib: CalibrationSet,
    method: str,
    capabilities: str | Sequence[str],
    *,
    tokenizer: Any = None,
    seq_len: int = 256,
    max_windows: int | None = 16,
    batch_size: int = DEFAULTS.batch_size,
    seed: int = DEFAULTS.seed,
    texts: dict[str, list[str]] | None = None,
    **params: Any,
) -> ProxyResult:
    """Compress a fresh ``model`` with ``calib`` by ``method`` and score it on each capability."""
    from calibench.compress import compress
    from calibench.models import load_model, load_tokenizer

    started = time.perf_counter()
    caps = parse_capabilities(list(capabilities) if not isinstance(capabilities, str) else capabilities)
    tokenizer = tokenizer if tokenizer is not None else load_tokenizer(model)
    lm = load_model(model)
    result = compress(lm, calib, method, tokenizer=tokenizer, seed=seed, **params)
    ppl, windows = reference_perplexity(result.model, tokenizer, caps, seq_len, max_windows, batch_size, texts)
    compression = {
        "method": result.record["method"],
        "params": result.record["params"],
        "achieved": result.record.get("achieved"),
        "wall_time_s": result.record.get("wall_time_s"),
    }
    return ProxyResult(calib.set_id, method, ppl, windows, compression, time.perf_counter() - started)
