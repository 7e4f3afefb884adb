"""Typed settings of each command, beyond the shared ones (:mod:`calibench.core.settings`).

One pydantic model per command: its fields are the command's own options
(derived by :mod:`calibench.cli.derive`: the field name is the flag, the
default is the option's default, the description its help), validated before
any work starts.  Method parameters are not here: ``compress`` takes them from
:class:`calibench.compress.methods.MethodParams`, as the Python API and study
specs do; ``data build``/``generate``/``curate`` take the builders' models.
A model whose fields are exactly an API function's parameters lives with that
function instead (``eval``: :class:`calibench.evaluation.settings.EvalSettings`,
``recommend``: :class:`calibench.predict.settings.RecommendSettings`,
``study signals``: :class:`calibench.predict.settings.StudySignalsSettings`,
``vocab restore``: :class:`calibench.vocab.settings.VocabRestoreSettings`).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

from calibench.core.settings import regex_problem
from calibench.inspect.experts_math import DEFAULT_MIN_TOKENS

# Kept in step with the method registry by a test: importing the registry here would import torch
# and llm-compressor's dependencies on every CLI start, for a help string.
METHOD_HELP = (
    "rtn, gptq, awq, smoothquant, sparsegpt, wanda, magnitude; the compressed-tensors presets w4a16, w4a16-asym, "
    "w8a16, w8a8, fp8, fp8-dynamic, nvfp4a16, nvfp4; or prune+quant like sparsegpt+gptq. Exactly one of --method "
    "and --recipe."
)

MODE_HELP = (
    "restricted: embedding and head keep the kept rows (tie kept); kept-token logits identical, dropped "
    "tokens -inf, so log-probabilities are normalised over the kept tokens and generation emits kept tokens "
    "only. exact-input: only the input side is pruned, every logit identical; saves nothing on a tied model."
)


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CompressSettings(_Settings):
    calib: Path = Field(
        ..., description="Calibration set directory (from `calibench data build`).", json_schema_extra={"short": "-c"}
    )
    method: str | None = Field(None, description=METHOD_HELP)
    recipe: Path | None = Field(
        None,
        description="An llm-compressor recipe file (YAML: NAME_stage: NAME_modifiers: ModifierType: {...}), run with "
        "this calibration set instead of --method.",
    )


class VocabCollectSettings(_Settings):
    calib: list[str] = Field(
        default_factory=list, description="A calibration set directory (repeatable).", json_schema_extra={"short": "-c"}
    )
    text: list[str] = Field(default_factory=list, description="A .txt/.jsonl/.parquet file, all of it (repeatable).")
    source: list[str] = Field(
        default_factory=list,
        description="A registered source as NAME[:SPLIT], e.g. wiki or wiki:heldout (repeatable).",
    )
    tasks: str | None = Field(
        None,
        description="Evaluation tasks whose requests are counted as lm-eval renders them (arc_easy,piqa; ppl:wiki "
        "counts its held-out text).",
        json_schema_extra={"short": "-t"},
    )
    limit: int | None = Field(None, ge=1, description="At most N items per lm-eval task (as `calibench eval --limit`).")
    num_fewshot: int = Field(0, ge=0, description="Few-shot examples per prompt, as the evaluation will use them.")
    apply_chat_template: bool = Field(
        False, description="Render task prompts with the chat template, as the evaluation will."
    )
    min_count: int = Field(1, ge=1, description="Keep a token only if the inputs use it at least N times.")
    top_k: int | None = Field(
        None, ge=1, description="Keep at most the K most frequent counted tokens (always-kept tokens come on top)."
    )
    heldout: list[str] = Field(
        default_factory=list,
        description="Held-out text whose coverage to report (wiki, wikitext2, ... or a file; repeatable). Not counted.",
    )


class VocabPruneSettings(_Settings):
    keep: Path = Field(
        ...,
        description="The vocabulary file from `calibench vocab collect` (made for this model's tokenizer).",
        json_schema_extra={"short": "-k"},
    )
    mode: str = Field("restricted", description=MODE_HELP)
    fallback: str | None = Field(
        None,
        description="A kept token (id, or the token text such as <unk>) that replaces tokens outside the kept set at "
        "the input, counted and warned about; default: such a token is an error.",
    )
    dropped: str = Field(
        "stored",
        description="stored: keep the dropped rows in vocab-dropped.safetensors (restore needs nothing else); "
        "reference: record the original model and its sha256 instead (restricted mode only).",
    )


class InspectSettings(_Settings):
    n: int = Field(32, ge=1, description="Windows per set, for sets built from a builder name.")
    seq_len: int = Field(256, ge=1, description="Tokens per window, for built sets and the held-out text.")
    heldout: str = Field(
        "wiki",
        description="Held-out text for the int8 activation error: an offline domain (its held-out split) or a set "
        "directory; 'none' skips the error.",
    )
    layers: str | None = Field(
        None,
        description="Regex searched in qualified module names: only matching sites (e.g. 'layers\\.(0|1)\\b', 'mlp').",
    )
    top_k: int = Field(16, ge=1, description="Channels per site in the Jaccard overlap of the largest channels.")
    bits: int = Field(8, ge=2, le=16, description="Activation bits of the quantization error.")
    int8_threshold: float = Field(6.0, gt=0, description="LLM.int8 outlier magnitude.")
    outlier_layer_fraction: float = Field(
        0.25, gt=0, le=1, description="LLM.int8: share of layers a feature must be large in."
    )
    outlier_position_fraction: float = Field(
        0.06, gt=0, le=1, description="LLM.int8: share of positions a channel must be large at, in a layer."
    )
    massive_threshold: float = Field(100.0, gt=0, description="Massive activation: at least this |x| ...")
    massive_ratio: float = Field(
        1000.0, gt=0, description="... and this many times the median |x| of its hidden state."
    )

    @field_validator("layers")
    @classmethod
    def _layers_compile(cls, value: str | None) -> str | None:
        problem = None if value is None else regex_problem(value)
        if problem is not None:
            raise ValueError(f"the pattern is {problem}")
        return value


class InspectExpertsSettings(_Settings):
    min_expert_tokens: int = Field(
        DEFAULT_MIN_TOKENS,
        ge=1,
        description="An expert routed fewer tokens than this in a layer is starved (each token counts for each of "
        "its top-k experts).",
    )


class StudyRunSettings(_Settings):
    executor: str = Field("local", description="local (this process) or ray.")
    address: str | None = Field(None, description="Ray cluster address (default: a local Ray runtime).")
    jobs: int = Field(
        1,
        description="Local worker processes, cores shared between them (CPU studies: one per core is fastest).",
        json_schema_extra={"short": "-j"},
    )
    report: bool = Field(True, description="Write the report when the run ends.")
    reproducible: bool = Field(
        False,
        description="Pin CPU float kernels (MKL_CBWR=COMPATIBLE, ATen AVX2, one thread per process) so results match "
        "across machines; about 4-5x slower forward passes.",
    )
