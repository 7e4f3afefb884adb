"""``generate_calibration_set``: the model writes its own calibration set.

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
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from calibench.core.errors import CalibenchError, ParameterError
from calibench.core.provenance import library_versions
from calibench.data.calibset import CalibrationSet, SamplingRecord, SourceRecord
from calibench.selfcal.sampler import GenerationStats, SamplingPlan, sample_streams
from calibench.selfcal.schedule import check_schedule
from calibench.selfcal.stopwords import load_stopwords, stopword_token_ids, stopwords_sha256
from calibench.selfcal.tokens import StartToken, resolve_start_token, stop_token_ids

TEMPERATURE_FORMULA = (
    "t_i = t_init + (i / schedule_tokens) * (t_final - t_init) for i < schedule_tokens, t_final after; "
    "i = index of the generated token within its generation (0 = first token after the start token); t = 0 is greedy"
)
SEPARATOR_POLICY = (
    "each generation ends with the stop token the model sampled (kept in the sample); the next generation's "
    "start token follows unless the stop token is the start token itself; a generation cut by max_new_tokens "
    "is followed by the start token only"
)
TORCH_SAMPLING = (
    "softmax(logits / t) in float32 (one-hot argmax when t = 0); per row and step one float64 uniform u from a "
    "torch.Generator seeded with the seed, token = first index whose float64 cumulative probability exceeds "
    "u * total (inverse CDF); rows restart independently (history masked, positions from 0)"
)
MAX_BATCH = 1024
DEFAULTS_NOTE = (
    "Default schedule 0.5 -> 1.0 over 64 tokens: a generation from the start token alone faces a nearly flat "
    "distribution over how a document may begin, and sampling it hot yields junk that the model then continues; "
    "a cool start gives a coherent opening, and t = 1 afterwards samples the model's own distribution. On "
    "SmolLM2-135M (8 x 128 tokens, stop-word first token) the perplexity of the generated text under the model "
    "was 12.1 with 0.5 -> 1.0 against 29.8 at a constant 1.0, and 300+ with 1.5 -> 1.0."
)


class GenerationSettings(BaseModel):
    """The user-facing generator knobs, validated."""

    model_config = ConfigDict(extra="forbid")
    # calibench's defaults, chosen by measurement on SmolLM2-135M (see DEFAULTS_NOTE), not taken from the paper
    t_init: float = Field(0.5, description="Temperature of the first generated token (>= 0; 0 is greedy).")
    t_final: float = Field(1.0, description="Temperature from token --schedule-tokens on (>= 0).")
    schedule_tokens: int = Field(64, description="n of the schedule t_i = t_init + (i/n)(t_final - t_init), i < n.")
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
        check_schedule(self.t_init, self.t_final, self.schedule_tokens)
        if not 1 <= self.batch_size <= MAX_BATCH:
            raise ParameterError("batch_size", f"must be between 1 and {MAX_BATCH}, got {self.batch_size}")
        if self.max_new_tokens is not None and self.max_new_tokens < 1:
            raise ParameterError("max_new_tokens", f"must be at least 1, got {self.max_new_tokens}")
        if self.first_token not in ("any", "stopwords"):
            raise ParameterError("first_token", f"must be 'any' or 'stopwords', got {self.first_token}")
        from calibench.selfcal.stopwords import LANGUAGES

        if self.language not in LANGUAGES:
            raise ParameterError(
                "language", f"has no stop-word list for '{self.language}' (have: {', '.join(LANGUAGES)})"
            )
        if self.stopwords is not None and self.first_token != "stopwords":
            raise ParameterError("stopwords", "only applies with --first-token stopwords")


def _model_name(model: Any, spec: str | os.PathLike[str] | None) -> str:
    from calibench.data.tokenizer import portable_name

    if spec is not None:
        return portable_name(os.fspath(spec))
    return portable_name(str(getattr(model, "name_or_path", "") or type(model).__name__))


def _model_record(model: Any, name: str, dtype: str, device: str) -> dict[str, Any]:
    """The model's name, architecture, dtype and device type (of the loaded model when there is one)."""
    record: dict[str, Any] = {"name": name, "dtype": str(dtype), "device": str(device).split(":")[0]}
    if model is not None:
        config = getattr(model, "config", None)
        record["architecture"] = (getattr(config, "architectures", None) or [type(model).__name__])[0]
        record["dtype"] = str(next(model.parameters()).dtype).replace("torch.", "")
        record["device"] = next(model.parameters()).device.type
    return record


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


def generate_calibration_set(model: Any, tokenizer: Any | None = None, **kwargs: Any) -> CalibrationSet:
    """Generate ``n`` x ``seq_len`` tokens of self-calibration data; see :func:`run_generation`."""
    return run_generation(model, tokenizer, **kwargs)[0]


def run_generation(
    model: Any,
    tokenizer: Any | None = None,
    *,
    n: int = 128,
    seq_len: int = 2048,
    seed: int = 0,
    settings: GenerationSettings | None = None,
    max_seq_len: int | None = None,
    dtype: str = "float32",
    device: str = "cpu",
    **overrides: Any,
) -> tuple[CalibrationSet, GenerationStats]:
    """Generate ``n`` x ``seq_len`` tokens of self-calibration data; also return what happened (timing included).

    ``model`` is a loaded causal LM (then pass ``tokenizer``) or a model spec
    (a bundled name, directory or hub id), loaded here with ``dtype`` and
    ``device``.  Generator knobs come from ``settings`` and/or keyword
    overrides (``t_init=``, ``t_final=``, ``schedule_tokens=``,
    ``first_token=``, ``stopwords=``, ``max_new_tokens=``, ``batch_size=``,
    ``backend=``, ``start_token=``).  The same inputs and seed give a
    byte-identical set.
    """
    from calibench.data.draw import validate_sizes
    from calibench.models import load_model, load_tokenizer, model_max_length

    unknown = sorted(set(overrides) - set(GenerationSettings.model_fields))
    if unknown:  # model_copy(update=) would drop them silently
        from calibench.core.errors import ParameterError

        raise ParameterError(unknown[0], "is not a generator setting", allowed=sorted(GenerationSettings.model_fields))
    settings = GenerationSettings.model_validate({**(settings or GenerationSettings()).model_dump(), **overrides})
    settings.check()
    spec = model if isinstance(model, (str, os.PathLike)) else None
    validate_sizes(n, seq_len, 1, None)
    if spec is not None:
        max_seq_len = max_seq_len or model_max_length(spec)
        validate_sizes(n, seq_len, 1, max_seq_len)
        tokenizer = tokenizer or load_tokenizer(spec)
    elif tokenizer is None:
        raise TypeError("generate_calibration_set(model, tokenizer): a loaded model needs its tokenizer")
    else:
        validate_sizes(n, seq_len, 1, max_seq_len or model_max_length(model))

    if settings.backend == "vllm":
        from calibench.selfcal.vllm_backend import require_vllm

        require_vllm()
        if spec is None:
            raise CalibenchError(
                "the vllm backend loads the model itself: give a model name or directory, not a loaded model"
            )
    plan, start, first_record = build_plan(tokenizer, settings, seq_len)  # fails fast, before any model load

    from calibench.core.progress import task

    loaded = None
    if settings.backend == "vllm":
        from types import SimpleNamespace

        from calibench.models import load_config

        stop_source: Any = SimpleNamespace(config=load_config(spec), generation_config=None)
    else:
        loaded = load_model(spec, dtype=dtype, device=device) if spec is not None else model
        stop_source = loaded
    plan = dataclasses.replace(plan, stop_ids=tuple(stop_token_ids(tokenizer, start, stop_source)))

    with task("generating", total=n * seq_len, unit="tokens") as bar:
        produced = 0

        def on_tokens(added: int, elapsed: float) -> None:
            nonlocal produced
            produced += added
            bar.advance(added)
            if elapsed > 0:
                bar.update(description=f"generating {produced / elapsed:,.0f} tokens/s")

        if settings.backend == "vllm":
            from calibench.selfcal.vllm_backend import sample_streams_vllm

            tokens, stats = sample_streams_vllm(
                spec,
                tokenizer,
                n,
                seq_len,
                plan,
                seed,
                dtype=dtype,  # type: ignore[arg-type]
                on_tokens=on_tokens,
            )
        else:
            tokens, stats = sample_streams(loaded, n, seq_len, plan, seed, settings.batch_size, on_tokens=on_tokens)

    name = _model_name(model, spec)
    generator = generator_record(
        settings, plan, start, first_record, stats, seed, _model_record(loaded, name, dtype, device), n, seq_len
    )
    fingerprint = hashlib.sha256(
        json.dumps({k: v for k, v in generator.items() if k != "result"}, sort_keys=True).encode()
    ).hexdigest()[:16]
    source = SourceRecord(
        name="self",
        kind="generated",
        split="none",
        spec={"model": name, "backend": settings.backend},
        fingerprint=fingerprint,
    )
    sampling = SamplingRecord(mode="generated", bos=start.id == tokenizer.bos_token_id)
    calib = CalibrationSet.create(tokens, tokenizer, source=source, sampling=sampling, seed=seed, generator=generator)
    return calib, stats


def generator_record(
    settings: GenerationSettings,
    plan: SamplingPlan,
    start: StartToken,
    first_record: dict[str, Any],
    stats: GenerationStats,
    seed: int,
    model_record: dict[str, Any],
    n: int,
    seq_len: int,
) -> dict[str, Any]:
    """Every parameter that decides the generated tokens, plus what happened (all deterministic)."""
    return {
        "method": "self-calibration",
        "model": model_record,
        "backend": settings.backend,
        "seed": seed,
        "n": n,
        "seq_len": seq_len,
        "t_init": plan.t_init,
        "t_final": plan.t_final,
        "schedule_tokens": plan.schedule_tokens,
        "temperature_formula": TEMPERATURE_FORMULA,
        "first_token": first_record,
        "start_token": start.to_dict(),
        "stop_token_ids": list(plan.stop_ids),
        "separator": SEPARATOR_POLICY,
        "min_new_tokens": plan.min_new_tokens,
        "max_new_tokens": plan.max_new_tokens,
        "max_new_tokens_requested": settings.max_new_tokens,
        "batch_size": settings.batch_size if settings.backend == "torch" else None,
        "sampling": TORCH_SAMPLING if settings.backend == "torch" else _vllm_sampling(),
        "libraries": library_versions(["torch", "transformers", *(["vllm"] if settings.backend == "vllm" else [])]),
        "result": stats.summary(),
    }


def _vllm_sampling() -> str:
    from calibench.selfcal.vllm_backend import SAMPLING_DESCRIPTION

    return SAMPLING_DESCRIPTION
