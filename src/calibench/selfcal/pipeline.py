"""The self-calibration pipeline: one path from settings to a recorded CalibrationSet, for every strategy.

The model writes its own calibration text in turns (see
:mod:`calibench.selfcal.sampler`); a *strategy* says how each turn opens and
what that adds to the record, and is a :data:`STRATEGIES` entry named by the
``prompting`` it implements:

* ``bos``: every generation starts from the start token alone, the paper's
  setting (:mod:`calibench.selfcal.api`);
* ``chat``: every turn is a generic prompt rendered through the chat template
  (:mod:`calibench.selfcal.prompted`).

Everything else is shared and lives here: the settings and the refusal of an
unknown one (with did-you-mean), the size checks, the model loading, the
progress bar, the sampling loop, and the manifest's provenance (the generator
record, its fingerprint, the source and sampling records).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from calibench import models
from calibench.core.errors import ParameterError
from calibench.core.progress import task
from calibench.core.provenance import library_versions
from calibench.core.registry import Registry
from calibench.core.settings import DEFAULTS
from calibench.data.calibset import CalibrationSet, SamplingRecord, SourceRecord
from calibench.data.draw import validate_sizes
from calibench.data.tokenizer import portable_name
from calibench.selfcal.sampler import GenerationStats, SamplingPlan, TurnSource, sample_turns
from calibench.selfcal.schedule import check_schedule

MAX_BATCH = 1024
TORCH_SAMPLING = (
    "softmax(logits / t) in float32 (one-hot argmax when t = 0); per row and step one float64 uniform u from a "
    "torch.Generator seeded with the seed, token = first index whose float64 cumulative probability exceeds "
    "u * total (inverse CDF); rows restart independently (history masked, positions from 0)"
)


# ----------------------------------------------------------------------------- settings


class SamplerSettings(BaseModel):
    """The knobs every strategy has: the temperature schedule and the batch; a strategy's settings extend it.

    Each strategy declares its own ``max_new_tokens`` and ``batch_size`` (their
    defaults and places among its fields differ); they are checked here.
    """

    model_config = ConfigDict(extra="forbid")
    # calibench's defaults, chosen by measurement on SmolLM2-135M (see calibench.selfcal.api.DEFAULTS_NOTE)
    t_init: float = Field(0.5, description="Temperature of the first generated token (>= 0; 0 is greedy).")
    t_final: float = Field(1.0, description="Temperature from token --schedule-tokens on (>= 0).")
    schedule_tokens: int = Field(64, description="n of the schedule t_i = t_init + (i/n)(t_final - t_init), i < n.")

    if TYPE_CHECKING:
        max_new_tokens: int | None
        batch_size: int

    def check(self) -> None:
        check_schedule(self.t_init, self.t_final, self.schedule_tokens)
        if not 1 <= self.batch_size <= MAX_BATCH:
            raise ParameterError("batch_size", f"must be between 1 and {MAX_BATCH}, got {self.batch_size}")
        if self.max_new_tokens is not None and self.max_new_tokens < 1:
            raise ParameterError("max_new_tokens", f"must be at least 1, got {self.max_new_tokens}")


# ----------------------------------------------------------------------------- records


def model_name(model: Any, spec: str | os.PathLike[str] | None) -> str:
    if spec is not None:
        return portable_name(os.fspath(spec))
    return portable_name(str(getattr(model, "name_or_path", "") or type(model).__name__))


def model_record(model: Any, name: str, dtype: str, device: str) -> dict[str, Any]:
    """The model's name, architecture, dtype and device type (of the loaded model when there is one)."""
    record: dict[str, Any] = {"name": name, "dtype": str(dtype), "device": str(device).split(":")[0]}
    if model is not None:
        config = getattr(model, "config", None)
        record["architecture"] = (getattr(config, "architectures", None) or [type(model).__name__])[0]
        record["dtype"] = str(next(model.parameters()).dtype).replace("torch.", "")
        record["device"] = next(model.parameters()).device.type
    return record


def generator_libraries(backend: str) -> dict[str, str]:
    """The versions of the libraries that decide the generated tokens."""
    return library_versions(["torch", "transformers"] + (["vllm"] if backend == "vllm" else []))


# ----------------------------------------------------------------------------- strategies


@dataclasses.dataclass
class Job:
    """One generation request, resolved and checked: what every strategy hook sees."""

    model: Any  # as given: a loaded model or a spec
    spec: str | os.PathLike[str] | None  # the model spec, when one was given
    name: str  # the model's portable name (recorded)
    tokenizer: Any
    n: int
    seq_len: int
    seed: int
    settings: Any  # the strategy's settings model, checked
    dtype: str
    device: str
    inputs: dict[str, Any]  # the strategy's other inputs (prompt file, template), None where not given


class Strategy:
    """How the turns of self-calibration open, and what that adds to the record; the pipeline does the rest.

    A strategy is registered in :data:`STRATEGIES` under the ``prompting`` it
    implements.  Its hooks get the :class:`Job` and the ``state`` its
    :meth:`prepare` returned.
    """

    name: str = ""  # its prompting, as registered
    settings_model: type[SamplerSettings] = SamplerSettings
    api: str = ""  # its public function, named in messages
    inputs: tuple[str, ...] = ()  # keyword inputs besides the settings
    builder_inputs: tuple[str, ...] = ()  # those the `self` builder passes from its parameters
    progress: str = "generating"
    temperature_formula: str = ""
    separator: str = ""

    def accepts(self) -> list[str]:
        """Every keyword the strategy takes besides the sizes: its settings and its inputs."""
        return [*self.settings_model.model_fields, *self.inputs]

    def precheck(self, tokenizer: Any, model_name: str) -> None:
        """What a caller can have refused from the tokenizer alone, before it loads the weights itself."""

    def prepare(self, job: Job) -> Any:
        """Everything that can be refused, before the model loads; returns the strategy's state."""
        raise NotImplementedError

    def load(self, job: Job, state: Any) -> Any:
        """The loaded model the sampler runs (None when the backend loads it itself)."""
        return models.load_model(job.spec, dtype=job.dtype, device=job.device) if job.spec is not None else job.model

    def plan(self, job: Job, state: Any, loaded: Any) -> SamplingPlan:
        raise NotImplementedError

    def turns(self, job: Job, state: Any, plan: SamplingPlan) -> TurnSource:
        raise NotImplementedError

    def new_stats(self) -> GenerationStats:
        return GenerationStats()

    def backend(self, settings: Any) -> str:
        return "torch"

    def sample(
        self, job: Job, state: Any, loaded: Any, plan: SamplingPlan, on_tokens: Callable[[int, float], None]
    ) -> tuple[np.ndarray, GenerationStats]:
        """The tokens, by the shared sampling loop with this strategy's turns."""
        turns = self.turns(job, state, plan)
        return sample_turns(
            loaded,
            job.n,
            job.seq_len,
            plan,
            job.seed,
            turns,
            job.settings.batch_size,
            on_tokens=on_tokens,
            stats=self.new_stats(),
        )

    def sampling_description(self, backend: str) -> str:
        return TORCH_SAMPLING

    def record(self, job: Job, state: Any, plan: SamplingPlan) -> dict[str, Any]:
        """The strategy's own fields of the generator record (every one that decides the tokens)."""
        return {}

    def source_spec(self, job: Job) -> dict[str, Any]:
        """The source record's spec, besides the model."""
        return {}

    def starts_with_bos(self, job: Job, state: Any, tokens: np.ndarray) -> bool:
        raise NotImplementedError


def _check_strategy(value: Any) -> None:
    if not isinstance(value, Strategy):
        raise TypeError(f"a self-calibration strategy must be a Strategy, got {type(value).__name__}")


STRATEGIES: Registry[Strategy] = Registry("prompting", validate=_check_strategy)
STRATEGIES.register_lazy("bos", "calibench.selfcal.api:BOS_ONLY")
STRATEGIES.register_lazy("chat", "calibench.selfcal.prompted:CHAT")


def strategy_for(prompting: str | Strategy) -> Strategy:
    return prompting if isinstance(prompting, Strategy) else STRATEGIES.get(prompting)


def refuse_unknown(strategy: Strategy, keys: list[str]) -> None:
    """An option the strategy does not take is refused, never dropped: by name, with did-you-mean."""
    for key in sorted(keys):
        if key in strategy.accepts():
            continue
        for other in STRATEGIES.names():
            if other != strategy.name and key in STRATEGIES.get(other).accepts():
                raise ParameterError(key, f"applies to prompting {other} only (this is prompting {strategy.name})")
        raise ParameterError(
            key, f"is not a generator setting of prompting {strategy.name}", allowed=sorted(strategy.accepts())
        )


def resolve_settings(strategy: Strategy, settings: BaseModel | None, overrides: dict[str, Any]) -> Any:
    """``settings`` (or the defaults) with ``overrides`` applied, validated and checked."""
    refuse_unknown(strategy, list(overrides))
    model = strategy.settings_model
    if settings is not None and not isinstance(settings, model):
        raise ParameterError(
            "settings", f"must be {model.__name__} for prompting {strategy.name}, got {type(settings).__name__}"
        )
    try:
        resolved = model.model_validate({**(settings.model_dump() if settings is not None else {}), **overrides})
    except ValidationError as exc:
        error = exc.errors()[0]
        param = str(error["loc"][0]) if error["loc"] else "settings"
        message = str(error["msg"])
        raise ParameterError(param, f"{message[0].lower()}{message[1:]} (got {error.get('input')!r})") from None
    resolved.check()
    return resolved


# ----------------------------------------------------------------------------- the pipeline


def generate(
    prompting: str | Strategy,
    model: Any,
    tokenizer: Any | None = None,
    *,
    n: int = 128,
    seq_len: int = 2048,
    seed: int = DEFAULTS.seed,
    settings: BaseModel | None = None,
    max_seq_len: int | None = None,
    dtype: str = DEFAULTS.dtype,
    device: str = DEFAULTS.device,
    **options: Any,
) -> tuple[CalibrationSet, GenerationStats]:
    """``n`` x ``seq_len`` tokens the model writes itself with strategy ``prompting``, and what happened.

    ``model`` is a loaded causal LM (then pass ``tokenizer``) or a model spec
    (a bundled name, directory or hub id), loaded here with ``dtype`` and
    ``device``.  ``options`` are the strategy's inputs and keyword overrides
    of ``settings``; one it does not take is a :class:`ParameterError`.  The
    same inputs and seed give a byte-identical set.

    ``dtype`` and ``device`` default to ``auto`` (:data:`calibench.core.settings.DEFAULTS`): the first CUDA
    GPU if there is one, else the CPU; float32 on the CPU, the checkpoint's own dtype on a GPU.
    """
    strategy = strategy_for(prompting)
    refuse_unknown(strategy, list(options))
    inputs = {key: options.pop(key, None) for key in strategy.inputs}
    resolved = resolve_settings(strategy, settings, options)
    spec = model if isinstance(model, (str, os.PathLike)) else None
    validate_sizes(n, seq_len, 1, None)
    if spec is not None:
        validate_sizes(n, seq_len, 1, max_seq_len or models.model_max_length(spec))
        tokenizer = tokenizer or models.load_tokenizer(spec)
    elif tokenizer is None:
        raise TypeError(f"{strategy.api}(model, tokenizer): a loaded model needs its tokenizer")
    else:
        validate_sizes(n, seq_len, 1, max_seq_len or models.model_max_length(model))
    job = Job(model, spec, model_name(model, spec), tokenizer, n, seq_len, seed, resolved, dtype, device, inputs)
    state = strategy.prepare(job)  # everything that can be refused is checked before the model loads
    loaded = strategy.load(job, state)
    plan = strategy.plan(job, state, loaded)

    with task(strategy.progress, total=n * seq_len, unit="tokens") as bar:
        produced = 0

        def on_tokens(added: int, elapsed: float) -> None:
            nonlocal produced
            produced += added
            bar.advance(added)
            if elapsed > 0:
                bar.update(description=f"{strategy.progress} {produced / elapsed:,.0f} tokens/s")

        tokens, stats = strategy.sample(job, state, loaded, plan, on_tokens)

    backend = strategy.backend(resolved)
    generator = {
        "method": "self-calibration",
        "model": model_record(loaded, job.name, dtype, device),
        "backend": backend,
        "seed": seed,
        "n": n,
        "seq_len": seq_len,
        "t_init": plan.t_init,
        "t_final": plan.t_final,
        "schedule_tokens": plan.schedule_tokens,
        "temperature_formula": strategy.temperature_formula,
        "stop_token_ids": list(plan.stop_ids),
        "separator": strategy.separator,
        "min_new_tokens": plan.min_new_tokens,
        "max_new_tokens": plan.max_new_tokens,
        "batch_size": resolved.batch_size if backend == "torch" else None,
        "sampling": strategy.sampling_description(backend),
        "libraries": generator_libraries(backend),
        **strategy.record(job, state, plan),
        "result": stats.summary(),
    }
    fingerprint = hashlib.sha256(
        json.dumps({k: v for k, v in generator.items() if k != "result"}, sort_keys=True).encode()
    ).hexdigest()[:16]
    source = SourceRecord(
        name="self",
        kind="generated",
        split="none",
        spec={"model": job.name, **strategy.source_spec(job)},
        fingerprint=fingerprint,
    )
    sampling = SamplingRecord(mode="generated", bos=strategy.starts_with_bos(job, state, tokens))
    calib = CalibrationSet.create(tokens, tokenizer, source=source, sampling=sampling, seed=seed, generator=generator)
    return calib, stats
