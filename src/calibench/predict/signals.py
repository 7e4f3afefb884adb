"""The registry of cheap signals: each predicts, per calibration set x model (x method), how well the set will do.

Every signal costs far less than compress + evaluate.  Groups share their
work (one outlier pass gives all ``outliers.*`` values), cached on the
:class:`Probe` that holds the model and the held-out windows:

* ``reconstruction``: the first k decoder layers compressed with the real
  method on the set, their output error on held-out text
  (:mod:`calibench.predict.reconstruction`); per method;
* ``coverage`` / ``diversity``: COLA's activation-space metrics
  (:mod:`calibench.curate.metrics`) with the evaluation text's windows
  as the pool: how close every evaluation window is to some set window, and
  how spread the set is;
* ``outliers.*``: the set's activation outliers on the dense model, as the
  study task ``act:outliers`` measures them (:mod:`calibench.inspect.study_task`);
* ``experts.*``: on a mixture-of-experts model, how the set's tokens spread
  over the experts (:mod:`calibench.inspect.experts`): an expert the set
  routes few tokens to is calibrated on few rows.  On a dense model these
  signals do not apply: their value is NaN with the reason;
* ``stats.*``: set statistics (:mod:`calibench.data.stats`,
  :mod:`calibench.predict.tokens`): NLL under the model, token entropy,
  distinct-token share, n-gram diversity, and the unigram divergence from the
  evaluation text.

Sign convention, explicit per signal: ``sign = +1`` means higher values
predict a *better* full result, ``-1`` lower values do, ``0`` the direction
is not known in advance and is learned on the selection cells
(:func:`calibench.predict.validate.validate`).  Only the signals with a
mechanism behind their direction have a fixed sign: a smaller reconstruction
error, a closer coverage and a token distribution nearer the evaluation
text should all help.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from calibench.core.errors import CalibenchError
from calibench.core.registry import Registry
from calibench.core.settings import DEFAULTS
from calibench.curate.activations import capture_features, layer_widths
from calibench.curate.layers import find_decoder_layers
from calibench.curate.metrics import coverage, diversity
from calibench.curate.projection import DEFAULT_DIM, RandomProjection
from calibench.curate.setstats import METRIC_SEED
from calibench.data.calibset import CalibrationSet
from calibench.data.stats import set_statistics
from calibench.data.stats.text import windows_of
from calibench.inspect.experts import DEFAULT_MIN_TOKENS, ExpertRouting, expert_routing, no_moe_message
from calibench.inspect.experts_routers import find_moe_layers
from calibench.inspect.study_task import DEFAULT_HELDOUT, outlier_rows
from calibench.inspect.study_task import heldout_windows as heldout_set
from calibench.predict.reconstruction import reconstruction
from calibench.predict.tokens import distinct_share, token_entropy, unigram_js

DEFAULT_K_LAYERS = 2
DEFAULT_HELDOUT_WINDOWS = 32


@dataclass
class Probe:
    """What signals are measured with, for one model: the dense model, its tokenizer and held-out windows.

    ``model`` is never modified.  ``heldout`` holds windows of the evaluation
    text (of the sets' ``seq_len``); ``cache`` keeps shared intermediate
    results per set (and method), so each group's work runs once.
    """

    model: Any
    tokenizer: Any
    model_spec: str
    heldout: CalibrationSet
    k_layers: int = DEFAULT_K_LAYERS
    batch_size: int = DEFAULTS.batch_size
    seed: int = DEFAULTS.seed
    cache: dict[Any, Any] = field(default_factory=dict)

    def cached(self, key: Any, compute: Callable[[], Any]) -> Any:
        if key not in self.cache:
            self.cache[key] = compute()
        return self.cache[key]


@dataclass(frozen=True)
class Signal:
    name: str
    group: str
    sign: int  # +1 higher predicts better, -1 lower predicts better, 0 learned on the selection split
    per_method: bool  # depends on the compression method (else one value per set and model)
    description: str
    compute: Callable[[Probe, CalibrationSet, str | None, dict[str, Any]], float]
    #: Why the signal does not apply to the probe's model (None: it does); its value is then NaN.
    not_applicable: Callable[[Probe], str | None] | None = None

    @property
    def direction(self) -> str:
        return {1: "higher is better", -1: "lower is better"}.get(self.sign, "learned")


def _check_sign(signal: Signal) -> None:
    if signal.sign not in (-1, 0, 1):
        raise ValueError(f"signal {signal.name}: sign must be -1, 0 or +1")


#: Every signal, by name, in registration order (the order reports list them in).
SIGNALS: Registry[Signal] = Registry("signal", validate=_check_sign, ordered=True)


def register_signal(signal: Signal) -> Signal:
    return SIGNALS.register(signal.name, signal)


def groups() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for _, signal in SIGNALS.items():
        out.setdefault(signal.group, []).append(signal.name)
    return out


def get_signal(name: str) -> Signal:
    return SIGNALS.get(name)


def parse_signals(text: str | Sequence[str] | None) -> list[Signal]:
    """Signals by name or group (``outliers`` stands for every ``outliers.*``, ``reconstruction`` for both
    reconstruction errors); None or empty: all of them."""
    names = [t.strip() for t in (text.split(",") if isinstance(text, str) else (text or [])) if t.strip()]
    if not names:
        return [signal for _, signal in SIGNALS.items()]
    chosen: list[Signal] = []
    by_group = groups()
    for name in names:
        members = by_group.get(name, [name])  # a group name stands for its members (they share the work)
        for member in members:
            signal = get_signal(member)
            if signal not in chosen:
                chosen.append(signal)
    return chosen


def _params_key(method: str | None, params: dict[str, Any]) -> str:
    return json.dumps([method, params], sort_keys=True, default=str)


# ----------------------------------------------------------------- groups (shared, cached work)


def _reconstruction(probe: Probe, calib: CalibrationSet, method: str | None, params: dict[str, Any]) -> Any:

    if method is None:
        raise CalibenchError("the reconstruction signal needs a compression method")

    def run() -> Any:
        return reconstruction(
            probe.model,
            calib,
            method,
            probe.heldout,
            params=params,
            k=probe.k_layers,
            tokenizer=probe.tokenizer,
            seed=probe.seed,
            batch_size=probe.batch_size,
        )

    return probe.cached(("reconstruction", calib.set_id, probe.k_layers, _params_key(method, params)), run)


def reconstruction_of(probe: Probe, calib: CalibrationSet, method: str, params: dict[str, Any]) -> Any:
    """The whole :class:`~calibench.predict.reconstruction.Reconstruction` (errors and timings), cached on the probe."""
    return _reconstruction(probe, calib, method, dict(params))


def _features(probe: Probe, calib: CalibrationSet) -> np.ndarray:
    """COLA's projected activation features of a set's windows (seed and dim of ``data stats --pool``)."""

    def run() -> np.ndarray:
        layers = find_decoder_layers(probe.model)
        projection = RandomProjection(layer_widths(probe.model, layers), DEFAULT_DIM, METRIC_SEED)
        (features,) = capture_features(
            probe.model,
            calib.input_ids,
            calib.attention_mask,
            [projection],
            batch_size=probe.batch_size,
            layers=layers,
            label=f"activations {calib.set_id}",
        )
        return features

    return probe.cached(("features", calib.set_id), run)


def _activation_metrics(probe: Probe, calib: CalibrationSet) -> dict[str, float]:

    def run() -> dict[str, float]:
        pool, own = _features(probe, probe.heldout), _features(probe, calib)
        return {"coverage": coverage(pool, own), "diversity": diversity(own)}

    return probe.cached(("activation_metrics", calib.set_id), run)


def _outliers(probe: Probe, calib: CalibrationSet) -> dict[str, float]:

    def run() -> dict[str, float]:
        rows = outlier_rows(probe.model, calib, probe.tokenizer, probe.model_spec, probe.heldout)
        return {row["metric"]: float(row["value"]) for row in rows}

    return probe.cached(("outliers", calib.set_id), run)


def _set_statistics(probe: Probe, calib: CalibrationSet) -> dict[str, float]:

    def run() -> dict[str, float]:
        stats = set_statistics(calib, probe.tokenizer, probe.model, batch_size=probe.batch_size)
        windows = windows_of(calib.input_ids, calib.attention_mask)
        heldout = windows_of(probe.heldout.input_ids, probe.heldout.attention_mask)
        return {
            "mean_nll": float(stats["mean_nll"]),
            "ngram_diversity": float(stats["ngram_diversity"]),
            "token_entropy": token_entropy(windows),
            "distinct_share": distinct_share(windows),
            "eval_js": unigram_js(windows, heldout),
        }

    return probe.cached(("stats", calib.set_id), run)


def _not_moe(probe: Probe) -> str | None:
    moe_layers = probe.cached(("moe_layers",), lambda: len(find_moe_layers(probe.model)))
    return None if moe_layers else no_moe_message(probe.model_spec)


def _expert_routing(probe: Probe, calib: CalibrationSet) -> ExpertRouting:

    def run() -> ExpertRouting:
        return expert_routing(
            probe.model, {calib.set_id: calib}, min_expert_tokens=DEFAULT_MIN_TOKENS, batch_size=probe.batch_size
        )

    return probe.cached(("experts", calib.set_id), run)


def _mean_entropy(routing: ExpertRouting) -> float:
    values = [e for e in routing.sets[0].entropy if e is not None]
    return float(np.mean(values)) if values else float("nan")


def _group_value(group: Callable[[Probe, CalibrationSet], dict[str, float]], key: str) -> Callable[..., float]:
    return lambda probe, calib, method, params: float(group(probe, calib)[key])


for _signal in (
    Signal(
        "reconstruction",
        "reconstruction",
        -1,
        True,
        "relative output error sum||Yc-Y||^2/sum||Y||^2 of the first k layers, compressed on the set, on held-out text",
        lambda p, c, m, a: _reconstruction(p, c, m, a).relative_error,
    ),
    Signal(
        "reconstruction.token",
        "reconstruction",
        -1,
        True,
        "the same error per held-out token, then averaged (robust to massive-activation tokens)",
        lambda p, c, m, a: _reconstruction(p, c, m, a).token_relative_error,
    ),
    Signal(
        "coverage",
        "coverage",
        -1,
        False,
        "mean distance from each evaluation window to the nearest set window (COLA features; lower: covered)",
        lambda p, c, m, a: _activation_metrics(p, c)["coverage"],
    ),
    Signal(
        "coverage.diversity",
        "coverage",
        0,
        False,
        "mean pairwise distance of the set's windows (COLA features)",
        lambda p, c, m, a: _activation_metrics(p, c)["diversity"],
    ),
    Signal(
        "outliers.max_abs",
        "outliers",
        0,
        False,
        "largest |x| at any linear input",
        _group_value(_outliers, "max_abs_linear"),
    ),
    Signal(
        "outliers.kurtosis",
        "outliers",
        0,
        False,
        "mean Pearson kurtosis of linear inputs over the hidden dimension",
        _group_value(_outliers, "kurtosis_linear"),
    ),
    Signal(
        "outliers.features",
        "outliers",
        0,
        False,
        "LLM.int8 outlier features (|x|>=6 in 25% of layers, 6% of tokens)",
        _group_value(_outliers, "outlier_features"),
    ),
    Signal(
        "outliers.massive",
        "outliers",
        0,
        False,
        "massive activations in the residual stream (Sun et al.)",
        _group_value(_outliers, "massive_activations"),
    ),
    Signal(
        "outliers.int8_error",
        "outliers",
        0,
        False,
        "static int8 activation error on held-out text with the set's scales",
        _group_value(_outliers, "int8_static_error"),
    ),
    Signal(
        "experts.coverage",
        "experts",
        1,
        False,
        f"MoE: share of experts routed >= {DEFAULT_MIN_TOKENS} of the set's tokens, in the worst-covered layer",
        lambda p, c, m, a: _expert_routing(p, c).sets[0].coverage["min_layer"],
        _not_moe,
    ),
    Signal(
        "experts.coverage_mean",
        "experts",
        1,
        False,
        f"MoE: share of experts routed >= {DEFAULT_MIN_TOKENS} of the set's tokens, averaged over MoE layers",
        lambda p, c, m, a: _expert_routing(p, c).sets[0].coverage["mean_layer"],
        _not_moe,
    ),
    Signal(
        "experts.entropy",
        "experts",
        0,
        False,
        "MoE: routing entropy over log(n_experts), averaged over MoE layers (1: tokens spread evenly)",
        lambda p, c, m, a: _mean_entropy(_expert_routing(p, c)),
        _not_moe,
    ),
    Signal(
        "stats.mean_nll",
        "stats",
        0,
        False,
        "mean token NLL of the set under the dense model (log-perplexity)",
        _group_value(_set_statistics, "mean_nll"),
    ),
    Signal(
        "stats.token_entropy",
        "stats",
        0,
        False,
        "entropy (bits) of the set's unigram distribution",
        _group_value(_set_statistics, "token_entropy"),
    ),
    Signal(
        "stats.distinct_share",
        "stats",
        0,
        False,
        "distinct tokens / tokens",
        _group_value(_set_statistics, "distinct_share"),
    ),
    Signal(
        "stats.ngram_diversity",
        "stats",
        0,
        False,
        "mean distinct/total n-grams, n=1..4",
        _group_value(_set_statistics, "ngram_diversity"),
    ),
    Signal(
        "stats.eval_js",
        "stats",
        -1,
        False,
        "Jensen-Shannon divergence (bits) of the set's unigram distribution from the evaluation text's",
        _group_value(_set_statistics, "eval_js"),
    ),
):
    register_signal(_signal)


@dataclass(frozen=True)
class SignalValue:
    signal: str
    value: float
    seconds: float  # the time this call took (shared work is paid by the first signal of a group)
    reason: str | None = None  # why the value is NaN, where the signal does not apply to the model


def compute(
    signal: Signal | str,
    probe: Probe,
    calib: CalibrationSet,
    method: str | None = None,
    params: dict[str, Any] | None = None,
) -> SignalValue:
    """One signal's value for a set (and method); NaN when it is undefined (e.g. diversity of one window) or
    does not apply to the model (``experts.*`` on a dense model: ``reason`` says why)."""
    signal = get_signal(signal) if isinstance(signal, str) else signal
    started = time.perf_counter()
    reason = signal.not_applicable(probe) if signal.not_applicable is not None else None
    if reason is not None:
        return SignalValue(signal.name, float("nan"), time.perf_counter() - started, reason)
    value = signal.compute(probe, calib, method if signal.per_method else None, dict(params or {}))
    return SignalValue(signal.name, float(value), time.perf_counter() - started)


def make_probe(
    model: Any,
    tokenizer: Any,
    model_spec: str,
    tasks: Sequence[str],
    seq_len: int,
    *,
    heldout_windows: int = DEFAULT_HELDOUT_WINDOWS,
    k_layers: int = DEFAULT_K_LAYERS,
    batch_size: int = DEFAULTS.batch_size,
    seed: int = DEFAULTS.seed,
) -> Probe:
    """A probe whose held-out windows come from the evaluation's text (its first ``ppl:`` task, else wiki)."""

    if k_layers < 1:
        raise CalibenchError(f"--k-layers must be at least 1, got {k_layers}")
    heldout = heldout_set(list(tasks), tokenizer, model_spec, heldout_windows, seq_len)
    return Probe(model, tokenizer, model_spec, heldout, k_layers=k_layers, batch_size=batch_size, seed=seed)


def heldout_name(tasks: Sequence[str]) -> str:
    """The text the probe's held-out windows are drawn from, for records."""

    return next((t.removeprefix("ppl:") for t in tasks if t.startswith("ppl:")), DEFAULT_HELDOUT)
