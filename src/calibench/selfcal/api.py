"""BOS-only self-calibration, the paper's setting: the ``bos`` strategy and ``generate_calibration_set``.

Each of the ``n`` samples is a stream of ``seq_len`` tokens made of short
generations, each started from the start token alone (see
:mod:`calibench.selfcal.tokens`) and sampled with the linear temperature
schedule (:mod:`calibench.selfcal.schedule`), optionally with the first
token restricted to English stop words (:mod:`calibench.selfcal.stopwords`)::

    <start> g1 ... <stop> <start> g2 ... <stop> <start> g3 ...   (cut at seq_len)

The stop token the model emitted is kept as the separator; the next
generation's start token follows it unless the two are the same token (as
with ``<|endoftext|>`` models, where the stream is exactly the pre-training
packing ``doc <|endoftext|> doc <|endoftext|> ...``).  The manifest records
every parameter that decides the tokens.

The shared pipeline (:mod:`calibench.selfcal.pipeline`) does the checks,
loading, sampling loop and records; :data:`BOS_ONLY` supplies the start
token, the stop tokens, the first-token restriction and the vLLM backend.
"""

from __future__ import annotations

import dataclasses
import os
from types import SimpleNamespace
from typing import Any, Literal

import numpy as np
from pydantic import Field

from calibench.core.errors import CalibenchError, ParameterError
from calibench.core.settings import DEFAULTS
from calibench.data.calibset import CalibrationSet
from calibench.models import load_config
from calibench.selfcal.pipeline import (
    MAX_BATCH,
    TORCH_SAMPLING,
    Job,
    SamplerSettings,
    Strategy,
    generate,
)
from calibench.selfcal.sampler import GenerationStats, SamplingPlan, StartTokenTurns, TurnSource
from calibench.selfcal.stopwords import LANGUAGES, load_stopwords, stopword_token_ids, stopwords_sha256
from calibench.selfcal.tokens import StartToken, resolve_start_token, stop_token_ids
from calibench.selfcal.vllm_backend import sample_streams_vllm

__all__ = [
    "BOS_ONLY",
    "DEFAULTS_NOTE",
    "MAX_BATCH",
    "SEPARATOR_POLICY",
    "TEMPERATURE_FORMULA",
    "TORCH_SAMPLING",
    "GenerationSettings",
    "build_plan",
    "generate_calibration_set",
    "run_generation",
]

TEMPERATURE_FORMULA = (
    "t_i = t_init + (i / schedule_tokens) * (t_final - t_init) for i < schedule_tokens, t_final after; "
    "i = index of the generated token within its generation (0 = first token after the start token); t = 0 is greedy"
)
SEPARATOR_POLICY = (
    "each generation ends with the stop token the model sampled (kept in the sample); the next generation's "
    "start token follows unless the stop token is the start token itself; a generation cut by max_new_tokens "
    "is followed by the start token only"
)
DEFAULTS_NOTE = (
    "Default schedule 0.5 -> 1.0 over 64 tokens: a generation from the start token alone faces a nearly flat "
    "distribution over how a document may begin, and sampling it hot yields junk that the model then continues; "
    "a cool start gives a coherent opening, and t = 1 afterwards samples the model's own distribution. On "
    "SmolLM2-135M (8 x 128 tokens, stop-word first token) the perplexity of the generated text under the model "
    "was 12.1 with 0.5 -> 1.0 against 29.8 at a constant 1.0, and 300+ with 1.5 -> 1.0."
)


class GenerationSettings(SamplerSettings):
    """The user-facing generator knobs of BOS-only generation, validated (the schedule is SamplerSettings')."""

    first_token: Literal["any", "stopwords"] = Field(
        "any", description="stopwords restricts the first token of every generation to stop words of --language."
    )
    stopwords: str | None = Field(
        None, description="Stop-word file (one word a line) instead of the list shipped with calibench."
    )
    max_new_tokens: int | None = Field(
        None, description="Cap on the tokens of one generation (default: only the sample length)."
    )
    batch_size: int = Field(
        16, description="Samples generated together (torch backend); changes the tokens drawn, so it is recorded."
    )
    backend: Literal["torch", "vllm"] = Field(
        "torch", description="vllm runs the same plan on vLLM when it is installed."
    )
    start_token: str = Field("auto", description="Token every generation starts from: auto, bos, a token or an id.")
    language: str = Field("en", description="Language of the shipped stop-word list for --first-token stopwords.")

    def check(self) -> None:
        super().check()
        if self.first_token not in ("any", "stopwords"):
            raise ParameterError("first_token", f"must be 'any' or 'stopwords', got {self.first_token}")
        if self.language not in LANGUAGES:
            raise ParameterError(
                "language", f"has no stop-word list for '{self.language}' (have: {', '.join(LANGUAGES)})"
            )
        if self.stopwords is not None and self.first_token != "stopwords":
            raise ParameterError("stopwords", "only applies with --first-token stopwords")


def build_plan(
    tokenizer: Any, settings: GenerationSettings, seq_len: int, model: Any | None = None
) -> tuple[SamplingPlan, StartToken, dict[str, Any]]:
    """The resolved sampling plan, start token and first-token record for a tokenizer."""
    start = resolve_start_token(tokenizer, settings.start_token)
    stops = stop_token_ids(tokenizer, start, model)
    first_ids: tuple[int, ...] | None = None
    first_record: dict[str, Any] = {"mode": settings.first_token}
    if settings.first_token == "stopwords":
        words, origin = load_stopwords(settings.stopwords, language=settings.language)
        ids = stopword_token_ids(tokenizer, words)
        first_ids = tuple(ids)
        if settings.language != "en":  # English records stay as they were before languages existed
            first_record["language"] = settings.language
        first_record.update(
            {"list": origin, "words": len(words), "words_sha256": stopwords_sha256(words), "matching_tokens": len(ids)}
        )
    plan = SamplingPlan(
        start_id=start.id,
        stop_ids=tuple(stops),
        t_init=float(settings.t_init),
        t_final=float(settings.t_final),
        schedule_tokens=int(settings.schedule_tokens),
        max_new_tokens=int(settings.max_new_tokens or seq_len),
        vocab_size=len(tokenizer),
        first_token_ids=first_ids,
    )
    return plan, start, first_record


@dataclasses.dataclass
class _BosState:
    plan: SamplingPlan  # stop ids still without the model's
    start: StartToken
    first_record: dict[str, Any]


class BosOnly(Strategy):
    """``prompting bos``: every generation starts from the start token alone (the paper's setting)."""

    name = "bos"
    settings_model = GenerationSettings
    api = "generate_calibration_set"
    progress = "generating"
    temperature_formula = TEMPERATURE_FORMULA
    separator = SEPARATOR_POLICY

    def prepare(self, job: Job) -> _BosState:
        if job.settings.backend == "vllm":
            from calibench.selfcal.vllm_backend import require_vllm

            require_vllm()
            if job.spec is None:
                raise CalibenchError(
                    "the vllm backend loads the model itself: give a model name or directory, not a loaded model"
                )
        return _BosState(*build_plan(job.tokenizer, job.settings, job.seq_len))

    def load(self, job: Job, state: _BosState) -> Any:
        return None if job.settings.backend == "vllm" else super().load(job, state)

    def plan(self, job: Job, state: _BosState, loaded: Any) -> SamplingPlan:
        source = loaded
        if job.settings.backend == "vllm":  # vLLM loads the model itself: its stop ids come from the config alone
            source = SimpleNamespace(config=load_config(_spec(job)), generation_config=None)
        return dataclasses.replace(state.plan, stop_ids=tuple(stop_token_ids(job.tokenizer, state.start, source)))

    def turns(self, job: Job, state: _BosState, plan: SamplingPlan) -> TurnSource:
        return StartTokenTurns(plan.start_id)

    def backend(self, settings: GenerationSettings) -> str:
        return settings.backend

    def sample(
        self, job: Job, state: _BosState, loaded: Any, plan: SamplingPlan, on_tokens: Any
    ) -> tuple[np.ndarray, GenerationStats]:
        if job.settings.backend != "vllm":
            return super().sample(job, state, loaded, plan, on_tokens)

        return sample_streams_vllm(
            os.fspath(_spec(job)),
            job.tokenizer,
            job.n,
            job.seq_len,
            plan,
            job.seed,
            dtype=job.dtype,
            on_tokens=on_tokens,
        )

    def sampling_description(self, backend: str) -> str:
        if backend == "vllm":
            from calibench.selfcal.vllm_backend import SAMPLING_DESCRIPTION

            return SAMPLING_DESCRIPTION
        return TORCH_SAMPLING

    def record(self, job: Job, state: _BosState, plan: SamplingPlan) -> dict[str, Any]:
        return {
            "first_token": state.first_record,
            "start_token": state.start.to_dict(),
            "max_new_tokens_requested": job.settings.max_new_tokens,
        }

    def source_spec(self, job: Job) -> dict[str, Any]:
        return {"backend": job.settings.backend}

    def starts_with_bos(self, job: Job, state: _BosState, tokens: np.ndarray) -> bool:
        return state.start.id == job.tokenizer.bos_token_id


def _spec(job: Job) -> str | os.PathLike[str]:
    """The model spec the vllm backend loads (prepare refused a loaded model)."""
    if job.spec is None:
        raise CalibenchError("the vllm backend loads the model itself: give a model name or directory")
    return job.spec


BOS_ONLY = BosOnly()


def generate_calibration_set(model: Any, tokenizer: Any | None = None, **kwargs: Any) -> CalibrationSet:
    """Generate ``n`` x ``seq_len`` tokens of self-calibration data; see :func:`run_generation`."""
    return run_generation(model, tokenizer, **kwargs)[0]


def run_generation(
    model: Any,
    tokenizer: Any | None = None,
    *,
    n: int = 128,
    seq_len: int = 2048,
    seed: int = DEFAULTS.seed,
    settings: GenerationSettings | None = None,
    max_seq_len: int | None = None,
    dtype: str = DEFAULTS.dtype,
    device: str = DEFAULTS.device,
    **overrides: Any,
) -> tuple[CalibrationSet, GenerationStats]:
    """Generate ``n`` x ``seq_len`` tokens of self-calibration data; also return what happened (timing included).

    ``model`` is a loaded causal LM (then pass ``tokenizer``) or a model spec
    (a bundled name, directory or hub id), loaded here with ``dtype`` and
    ``device``.  Generator knobs come from ``settings`` and/or keyword
    overrides (``t_init=``, ``t_final=``, ``schedule_tokens=``,
    ``first_token=``, ``stopwords=``, ``max_new_tokens=``, ``batch_size=``,
    ``backend=``, ``start_token=``, ``language=``); an unknown one is a
    :class:`ParameterError`.  The same inputs and seed give a byte-identical set.

    ``dtype`` and ``device`` default to ``auto`` (:data:`calibench.core.settings.DEFAULTS`): the first CUDA
    GPU if there is one, else the CPU; float32 on the CPU, the checkpoint's own dtype on a GPU.
    """
    return generate(
        BOS_ONLY,
        model,
        tokenizer,
        n=n,
        seq_len=seq_len,
        seed=seed,
        settings=settings,
        max_seq_len=max_seq_len,
        dtype=dtype,
        device=device,
        **overrides,
    )
