"""The options of :func:`calibench.evaluation.evaluate` beyond the shared ones, typed, as one model.

``calibench eval`` derives its options from :class:`EvalSettings` (the field
name is the flag, the default the option's default, the description its
help); ``evaluate(model, settings=EvalSettings(...))`` takes the same model,
its keywords overriding the settings' fields.  The shared concepts (dtype,
device, batch size, offline, max windows) are
:class:`calibench.core.settings.CommonSettings`' fields.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

TASKS_HELP = (
    "Comma-separated: ppl:<wikitext2|c4|wiki|science|math|code>, calibench's tasks "
    "(arc_easy, arc_challenge, boolq, hellaswag, lambada_openai, openbookqa, piqa, rte, storycloze, "
    "winogrande, copa, sciq, gsm8k; all with offline data but storycloze), groups (paper, zeroshot), "
    "any lm-eval task, group or tag name (online), and summ:<xsum|multilexsum|mtsdialog|xsum-hub|cnn_dailymail|"
    "FILE.jsonl>[:style=..:max_new_tokens=..:chat=..:nli=..:harim=..] (abstractive summarization: generated "
    "greedily, scored for overlap and faithfulness; add --log-samples to pair runs with `calibench compare`)."
)


class BackendSettings(BaseModel):
    """What runs lm-eval's requests, and vLLM's engine settings: one definition for ``calibench eval``'s options,
    ``evaluate()``'s keywords and a study spec's ``eval:`` block."""

    model_config = ConfigDict(extra="forbid")

    backend: Literal["hf", "vllm"] = Field(
        "hf",
        description="hf: HFLM around the loaded model; vllm: lm-eval's vLLM model on the checkpoint directory "
        "(needs vLLM and a CUDA GPU).",
    )
    tensor_parallel_size: int = Field(
        1, ge=1, description="vLLM only: GPUs one copy of the model is split across (tensor parallelism)."
    )
    gpu_memory_utilization: float = Field(
        0.9,
        gt=0,
        le=1,
        description="vLLM only: fraction of each GPU's memory its engine may take (weights and KV cache).",
    )
    max_model_len: int | None = Field(
        None,
        ge=1,
        description="vLLM only: the longest sequence (prompt and generation) its engine serves (default: the "
        "model's context length); lower it when the KV cache does not fit.",
    )

    @field_validator("tensor_parallel_size", "gpu_memory_utilization", "max_model_len")
    @classmethod
    def _vllm_settings_need_vllm(cls, value: Any, info: ValidationInfo) -> Any:
        backend = info.data.get("backend", "hf")
        if backend != "vllm" and info.field_name is not None and value != cls.model_fields[info.field_name].default:
            raise ValueError(f"applies to backend vllm only (the backend is {backend}): choose vllm, or drop it")
        return value

    def vllm_engine_args(self) -> dict[str, Any]:
        """These settings as lm-eval's VLLM keyword arguments (its ``--model_args``), unset ones left out."""
        args: dict[str, Any] = {
            "tensor_parallel_size": self.tensor_parallel_size,
            "gpu_memory_utilization": self.gpu_memory_utilization,
        }
        if self.max_model_len is not None:
            args["max_model_len"] = self.max_model_len
        return args


VLLM_FIELDS = ("tensor_parallel_size", "gpu_memory_utilization", "max_model_len")


class EvalSettings(BackendSettings):
    """What to evaluate and how, beyond the shared settings; ``ppl_seq_len`` is ``evaluate``'s ``seq_len``."""

    model_config = ConfigDict(extra="forbid")

    tasks: str = Field("ppl:wiki,arc_easy,piqa", description=TASKS_HELP, json_schema_extra={"short": "-t"})
    limit: int | None = Field(
        None,
        ge=1,
        description="At most N items per task: lm-eval items, and perplexity windows unless --max-windows is "
        "given (results are marked limited).",
    )
    num_fewshot: int = Field(
        0,
        description="Few-shot examples per prompt (lm-eval's num_fewshot; 0 is the papers' protocol). Offline, a "
        "task whose examples come from a split the pack lacks is skipped with the reason.",
    )
    apply_chat_template: bool = Field(
        False, description="Render prompts with the tokenizer's chat template (lm-eval's apply_chat_template)."
    )
    fewshot_as_multiturn: bool | None = Field(
        None, description="Few-shot examples as chat turns (default: on with --apply-chat-template, as in lm-eval)."
    )
    gen_kwargs: str | None = Field(
        None, description="Generation settings for generative tasks, lm-eval's syntax: max_gen_toks=64,temperature=0."
    )
    log_samples: bool = Field(
        False,
        description="Keep per-item results: into --out (key 'samples') and, with --lm-eval-out, lm-eval's "
        "samples_<task>_<time>.jsonl.",
    )
    lm_eval_out: Path | None = Field(
        None, description="Also write lm-eval's own layout into this folder, as `lm_eval --output_path DIR` does."
    )
    ppl_seq_len: int | None = Field(
        None, ge=2, description="Perplexity window length (default: min(2048, model maximum))."
    )
    bos: Literal["auto", "always", "never"] = Field(
        "auto", description="BOS at the start of each perplexity window: auto follows the tokenizer."
    )


SEQ_LEN_FIELD = {"ppl_seq_len": "seq_len"}  # the field whose evaluate() parameter is spelled otherwise
