"""``curate()``: the three COLA stages end to end, and the random baseline from the same pool.

1. score the candidate sources against the capabilities' reference text and
   keep the best (:mod:`.scoring`);
2. process the kept sources' calibration split into a pool of windows
   (:mod:`.processing`, :mod:`.pool`);
3. capture the pool's per-layer activations under the model, project them per
   batch (:mod:`.activations`, :mod:`.projection`) and keep the pool member
   nearest each k-means centroid (:mod:`.selection`).

The result is a :class:`~calibench.data.calibset.CalibrationSet` (source
``curated``, sampling mode ``curated``) whose manifest's ``generator`` records
every stage's choices and whose parent is the pool set.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from calibench.core.errors import CalibenchError, ParameterError
from calibench.core.settings import DEFAULTS, CommonSettings
from calibench.curate.activations import capture_features, layer_widths
from calibench.curate.capabilities import canonical_name, load_reference, parse_capabilities
from calibench.curate.embeddings import DEFAULT_EMBEDDING_MODEL, SentenceEmbedder
from calibench.curate.layers import find_decoder_layers
from calibench.curate.metrics import activation_metrics
from calibench.curate.pool import build_pool, subset
from calibench.curate.processing import DEFAULT_MIN_TOKENS, ProcessingSettings
from calibench.curate.projection import DEFAULT_DIM, RandomProjection
from calibench.curate.scoring import DEFAULT_ALPHA, ScoreMatrix, capability_weights, sample_texts, score_sources
from calibench.curate.selection import DEFAULT_N_INIT, Selection, kmeans_select, random_select
from calibench.data.calibset import CalibrationSet
from calibench.data.draw import validate_sizes
from calibench.data.sources import get_text_source
from calibench.data.tokenizer import resolve_bos

CURATED_SOURCE = "curated"
RANDOM_SOURCE = "curation-pool-random"


class CurationConfig(BaseModel):
    """Every choice of the three stages; validated before any work starts."""

    model_config = ConfigDict(extra="forbid")
    sources: list[str] = Field(
        default_factory=lambda: ["wiki", "science", "math", "code"],
        description=(
            "Candidate sources, comma-separated (registered names or local files); pools read their calibration split."
        ),
    )
    capabilities: list[str] = Field(
        default_factory=lambda: ["commonsense", "math", "code"],
        description="Target capabilities: commonsense, math, code, language_modelling (lm), or NAME=SOURCE.",
    )
    mode: Literal["general", "targeted"] = Field(
        "general", description="general: all capabilities weigh 1.0; targeted: --target 1.0, the rest 0.2."
    )
    target: str | None = Field(None, description="The capability to favour with --mode targeted.")
    n: int = Field(128, description="Samples in the curated set (1..1024) = k of k-means.")
    seq_len: int = Field(2048, description="Tokens per sample, at most the model's maximum.")
    pool_size: int | None = Field(
        None, description="Candidate windows, split evenly over the kept sources (default 8 x --n)."
    )
    alpha: float = Field(
        DEFAULT_ALPHA,
        description="Weight of the embedding similarity against the token-distribution similarity in stage 1.",
    )
    top_k: int | None = Field(
        None, description="Keep this many sources (default: the best source of each highest-weight capability)."
    )
    embedding_model: str = Field(
        DEFAULT_EMBEDDING_MODEL,
        description="Sentence encoder for stage 1: an asset name (minilm), local directory or hub id.",
    )
    score_texts: int = Field(32, description="Texts per source and per capability sampled for stage 1.")
    min_tokens: int = Field(DEFAULT_MIN_TOKENS, description="Drop documents shorter than this (stage 2).")
    reformat: bool = Field(True, description="Rewrite math and QA text as question/reasoning/answer.")
    pack: bool = Field(
        True,
        description="Fill each window with following documents (no padding); --no-pack pads one document per window.",
    )
    projection_dim: int = Field(DEFAULT_DIM, description="Dimension of the random projection of activations.")
    n_init: int = Field(DEFAULT_N_INIT, description="k-means restarts (the best inertia wins).")
    seed: int = Field(
        DEFAULTS.seed,
        description=f"{CommonSettings.model_fields['seed'].description} Of the projection and k-means (or of the "
        "random draw with --selection random).",
    )
    pool_seed: int = Field(0, description="Seed of the pool (document order) and of stage 1's text samples.")
    batch_size: int = Field(
        DEFAULTS.batch_size,
        description=f"{CommonSettings.model_fields['batch_size'].description} Of the activation capture.",
    )
    bos: bool | Literal["auto"] = Field("auto", description="Prefix each window with BOS: auto follows the tokenizer.")
    selection: Literal["kmeans", "random"] = Field(
        "kmeans", description="kmeans (COLA) or random: the baseline drawn uniformly from the same pool."
    )

    @property
    def resolved_pool_size(self) -> int:
        return self.pool_size if self.pool_size is not None else 8 * self.n

    def check(self, max_seq_len: int | None = None) -> None:

        validate_sizes(self.n, self.seq_len, 1, max_seq_len)
        if not self.sources:
            raise CalibenchError("give at least one source (e.g. --sources wiki,code,math,science)")
        if len(set(self.sources)) != len(self.sources):
            raise CalibenchError(f"a source is listed twice in --sources {','.join(self.sources)}")
        caps = [c.name for c in parse_capabilities(self.capabilities)]
        capability_weights(caps, self.mode, _canonical_target(self.target))
        if self.resolved_pool_size < self.n:
            raise ParameterError("pool_size", f"{self.resolved_pool_size} is smaller than n {self.n}")
        for name in ("projection_dim", "n_init", "batch_size", "score_texts", "min_tokens"):
            if getattr(self, name) < 1:
                raise ParameterError(name, f"must be at least 1, got {getattr(self, name)}")
        if not 0.0 <= self.alpha <= 1.0:
            raise ParameterError("alpha", f"must be between 0 and 1, got {self.alpha}")
        if self.top_k is not None and self.top_k < 1:
            raise ParameterError("top_k", f"must be at least 1, got {self.top_k}")
        for name in self.sources:
            get_text_source(name)


#: documents read, at most, per source to bound its windows up front (beyond it the bound is skipped)
BOUND_MAX_DOCS = 50_000
#: bytes a reformatted document may gain (question/reasoning/answer labels), in the bound
REFORMAT_SLACK = 64


def pool_bound(config: CurationConfig) -> int | None:
    """At most how many pool windows all of ``config.sources`` can give (None when too costly to know).

    Without tokenizing: a token covers at least one UTF-8 byte, so a packed source holds at most its bytes
    divided by the window body; an unpacked one at most one window per document.
    """
    body = max(1, config.seq_len - 1)
    total = 0
    for name in config.sources:
        source = get_text_source(name)
        docs = source.documents(source.check_split(None))
        count = len(docs)
        if not config.pack:
            total += count
            continue
        if count > BOUND_MAX_DOCS:
            return None
        size = 0
        for start in range(0, count, 1000):
            texts = docs.batch(list(range(start, min(count, start + 1000))))
            size += sum(len(t.encode("utf-8")) + REFORMAT_SLACK for t in texts)
        total += size // body
    return total


def check_pool_fits(config: CurationConfig) -> None:
    """Refuse a pool (``--pool-size``, default 8 x ``--n``) larger than the sources can fill, before stage 1."""
    bound = pool_bound(config)
    wanted = config.resolved_pool_size
    if bound is not None and wanted > bound:
        how = "--pool-size" if config.pool_size is not None else f"8 x --n {config.n}"
        raise CalibenchError(
            f"a pool of {wanted} windows ({how}) is more than the sources can give: at most {bound} windows of "
            f"{config.seq_len} tokens; lower --n, --pool-size or --seq-len, or add sources"
        )


def _canonical_target(target: str | None) -> str | None:
    if target is None:
        return None

    return canonical_name(target)


@dataclass
class CurationResult:
    calib: CalibrationSet
    pool: CalibrationSet
    scores: ScoreMatrix | None
    selected_sources: list[str]
    selection: Selection | None
    features: np.ndarray | None  # (pool, dim) projected pool features (None for random selection)
    metrics: dict[str, Any]
    seconds: dict[str, float]


def run_stage1(
    config: CurationConfig, tokenizer: Any, embedder: Any | None = None
) -> tuple[ScoreMatrix, dict[str, float], list[str]]:
    """The score matrix, the capability weights and the kept sources."""
    caps = parse_capabilities(config.capabilities)
    weights = capability_weights([c.name for c in caps], config.mode, _canonical_target(config.target))
    embedder = embedder or SentenceEmbedder(config.embedding_model)
    source_texts = {}
    for name in config.sources:
        source = get_text_source(name)
        docs = source.documents(source.check_split(None))
        rng = np.random.default_rng(config.pool_seed)
        picks = rng.permutation(len(docs))[: config.score_texts]
        source_texts[name] = [t for t in docs.batch([int(i) for i in picks]) if t.strip()]
    reference_texts = {c.name: sample_texts(load_reference(c), config.score_texts, config.pool_seed) for c in caps}
    matrix = score_sources(source_texts, reference_texts, tokenizer, embedder, alpha=config.alpha)
    return matrix, weights, matrix.select(weights, config.top_k)


def pool_features(
    model: Any,
    pool: CalibrationSet,
    seeds: Sequence[int],
    dim: int = DEFAULT_DIM,
    batch_size: int = DEFAULTS.batch_size,
) -> tuple[list[np.ndarray], list[RandomProjection], dict[str, Any]]:
    """Projected features of every pool row, one matrix per projection seed, from one capture."""

    layers = find_decoder_layers(model)
    widths = layer_widths(model, layers)
    projections = [RandomProjection(widths, dim, seed) for seed in seeds]
    feats = capture_features(
        model,
        pool.input_ids,
        pool.attention_mask,
        projections,
        batch_size=batch_size,
        layers=layers,
        label="stage 3: capturing pool activations",
    )
    return feats, projections, layers.describe()


def select_from_features(
    features: np.ndarray,
    pool: CalibrationSet,
    tokenizer: Any,
    n: int,
    seed: int,
    n_init: int,
    generator: dict[str, Any],
) -> tuple[CalibrationSet, Selection, dict[str, Any]]:
    selection = kmeans_select(features, n, seed=seed, n_init=n_init)
    metrics = activation_metrics(features, features[selection.indices])
    gen = {
        **generator,
        "stage3": {**generator.get("stage3", {}), "kmeans": selection.record()},
        "chosen_pool_indices": selection.indices,
        "metrics": metrics,
    }
    calib = subset(pool, selection.indices, tokenizer, seed=seed, name=CURATED_SOURCE, mode="curated", generator=gen)
    return calib, selection, metrics


def random_from_pool(
    pool: CalibrationSet, n: int, seed: int, tokenizer: Any, generator: dict[str, Any] | None = None
) -> CalibrationSet:
    """The baseline: ``n`` pool rows drawn uniformly with ``seed``."""
    indices = random_select(pool.n, n, seed)
    gen = {
        "method": "random-from-pool",
        "pool": {"set_id": pool.set_id, "size": pool.n},
        "seed": seed,
        "chosen_pool_indices": indices,
        **(generator or {}),
    }
    return subset(pool, indices, tokenizer, seed=seed, name=RANDOM_SOURCE, mode="random-from-pool", generator=gen)


def curate(
    model: Any,
    config: CurationConfig | None = None,
    *,
    tokenizer: Any = None,
    embedder: Any = None,
    dtype: str = DEFAULTS.dtype,
    device: str = DEFAULTS.device,
    **overrides: Any,
) -> CurationResult:
    """Run COLA for ``model`` (a spec or a loaded causal LM with ``tokenizer``).

    ``dtype`` and ``device`` default to ``auto`` (:data:`calibench.core.settings.DEFAULTS`): the first CUDA
    GPU if there is one, else the CPU; float32 on the CPU, the checkpoint's own dtype on a GPU.
    """
    config = _resolve_config(config, overrides)
    return curate_seeds(
        model, [config.seed], config, tokenizer=tokenizer, embedder=embedder, dtype=dtype, device=device
    )[0]


def curate_seeds(
    model: Any,
    seeds: Sequence[int],
    config: CurationConfig | None = None,
    *,
    tokenizer: Any = None,
    embedder: Any = None,
    dtype: str = DEFAULTS.dtype,
    device: str = DEFAULTS.device,
    **overrides: Any,
) -> list[CurationResult]:
    """COLA once per seed over one pool: result i equals ``curate(..., seed=seeds[i])``.

    Stages 1-2 and the activation capture do not depend on the seed, so they
    run once; each seed gets its own projection (applied during that one
    capture) and its own k-means.  This is how a study draws k curated sets.
    """
    from calibench.models import load_model, load_tokenizer, model_max_length

    config = _resolve_config(config, overrides)
    is_spec = isinstance(model, str)
    if tokenizer is None:
        if not is_spec:
            raise CalibenchError("pass the tokenizer with an in-memory model")
        tokenizer = load_tokenizer(model)
    config.check(model_max_length(model) if is_spec else None)
    seconds: dict[str, float] = {}
    started = time.perf_counter()

    matrix, weights, kept = run_stage1(config, tokenizer, embedder)
    seconds["stage1"] = time.perf_counter() - started
    stage1 = {
        "mode": config.mode,
        "target": _canonical_target(config.target),
        "top_k": config.top_k,
        "selected_sources": kept,
        **matrix.record(weights),
    }

    t = time.perf_counter()
    add_bos = resolve_bos(tokenizer, config.bos)
    pool = build_pool(
        kept,
        tokenizer,
        config.resolved_pool_size,
        config.seq_len,
        seed=config.pool_seed,
        add_bos=add_bos,
        settings=ProcessingSettings(config.min_tokens, config.reformat, config.pack),
        extra={"stage1": stage1},
    )
    seconds["stage2"] = time.perf_counter() - t

    pool_record = {
        "set_id": pool.set_id,
        "size": pool.n,
        "seed": config.pool_seed,
        "per_source": {k: v["windows"] for k, v in (pool.manifest.generator or {})["per_source"].items()},
    }

    def base_for(seed: int) -> dict[str, Any]:
        return {
            "method": "cola",
            "paper": "He et al., Preserving LLM Capabilities through Calibration Data Curation (NeurIPS 2025)",
            "config": config.model_copy(update={"seed": seed}).model_dump(mode="json"),
            "stage1": stage1,
            "stage2": (pool.manifest.generator or {}).get("stage2"),
            "pool": pool_record,
        }

    if config.selection == "random":
        results = []
        for seed in seeds:
            base = base_for(seed)
            calib = random_from_pool(
                pool, config.n, seed, tokenizer, {"stage1": stage1, "pool": base["pool"], "config": base["config"]}
            )
            results.append(
                CurationResult(
                    calib, pool, matrix, kept, None, None, {}, {**seconds, "total": time.perf_counter() - started}
                )
            )
        return results

    t = time.perf_counter()
    lm = load_model(model, dtype=dtype, device=device) if is_spec else model
    feats, projections, layer_info = pool_features(lm, pool, list(seeds), config.projection_dim, config.batch_size)
    seconds["stage3_capture"] = time.perf_counter() - t
    results = []
    for seed, features, projection in zip(seeds, feats, projections):
        t = time.perf_counter()
        base = base_for(seed)
        base["stage3"] = {
            "layers": layer_info,
            "feature": "per-layer sequence mean over unmasked tokens, L2-normalised, concatenated / sqrt(L)",
            "projection": projection.describe(),
        }
        calib, selection, metrics = select_from_features(features, pool, tokenizer, config.n, seed, config.n_init, base)
        timing = {**seconds, "stage3_select": time.perf_counter() - t, "total": time.perf_counter() - started}
        results.append(CurationResult(calib, pool, matrix, kept, selection, features, metrics, timing))
    return results


def _resolve_config(config: CurationConfig | None, overrides: dict[str, Any]) -> CurationConfig:
    config = (config or CurationConfig()).model_copy(update=overrides) if overrides else (config or CurationConfig())
    return CurationConfig.model_validate(config.model_dump())
