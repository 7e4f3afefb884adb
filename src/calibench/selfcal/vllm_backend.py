"""Optional vLLM backend: the same sampling plan, run by vLLM (used only when installed and requested).

vLLM has no per-step temperature schedule, so the schedule is applied by a
per-request logits processor: it divides the logits of generated token i by
``t_i`` (or keeps only the argmax when ``t_i == 0``) and restricts token 0 to
the stop-word ids, and vLLM then samples at temperature 1 with no top-k or
top-p: the same distribution as the torch backend.  The processor is plugged
in through vLLM's ``AdapterLogitsProcessor`` (V1 engine), with the plan passed
in ``SamplingParams.extra_args``.

Generations run in rounds: each round asks for one generation for every
sample that is not yet full, each request with its own seed derived from
(seed, sample, generation number), so the result does not depend on how vLLM
schedules requests.  Bitwise equality with the torch backend is not expected
(different kernels); the same seed on the same setup gives the same set.
"""

from __future__ import annotations

import hashlib
import importlib.util
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from calibench.core.errors import CalibenchError
from calibench.models import resolve_model_path
from calibench.selfcal.sampler import GenerationStats, SamplingPlan
from calibench.selfcal.schedule import temperature_at

SAMPLING_DESCRIPTION = (
    "vLLM: per-request logits processor divides the logits of generated token i by t_i (argmax only when t_i = 0) "
    "and restricts token 0 to the stop-word ids; vLLM samples at temperature 1, no top-k/top-p, with a "
    "per-request seed sha256(seed, sample, generation) so that scheduling does not change the result"
)
EXTRA_KEY = "calibench_plan"


def vllm_available() -> bool:
    return importlib.util.find_spec("vllm") is not None


def require_vllm() -> None:
    if not vllm_available():
        raise CalibenchError(
            "--backend vllm needs vLLM, which is not installed: `pip install vllm`, or use --backend torch"
        )


def request_seed(seed: int, sample: int, generation: int) -> int:
    digest = hashlib.sha256(f"calibench-vllm:{seed}:{sample}:{generation}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def plan_to_extra(plan: SamplingPlan) -> dict[str, Any]:
    return {
        "t_init": plan.t_init,
        "t_final": plan.t_final,
        "schedule_tokens": plan.schedule_tokens,
        "first_token_ids": list(plan.first_token_ids) if plan.first_token_ids is not None else None,
        "vocab_size": plan.vocab_size,
    }


def make_request_processor(extra: dict[str, Any]) -> Callable[[list[int], Any], Any]:
    """The per-request processor: ``(output_ids, logits[V]) -> logits`` for generated token ``len(output_ids)``."""
    import torch

    first = extra.get("first_token_ids")
    first_index = torch.as_tensor(first, dtype=torch.long) if first is not None else None
    vocab_size = int(extra["vocab_size"])

    def process(output_ids: list[int], logits: Any) -> Any:
        i = len(output_ids)
        if logits.shape[-1] > vocab_size:
            logits[vocab_size:] = float("-inf")
        if i == 0 and first_index is not None:
            keep = torch.full_like(logits, float("-inf"))
            index = first_index.to(logits.device)
            keep[index] = logits[index]
            logits = keep
        t = temperature_at(i, extra["t_init"], extra["t_final"], extra["schedule_tokens"])
        if t == 0:
            best = int(torch.argmax(logits))
            value = logits[best].clone()
            logits.fill_(float("-inf"))
            logits[best] = value
            return logits
        return logits / t

    return process


def _adapter_class() -> Any:
    from vllm.v1.sample.logits_processor import AdapterLogitsProcessor

    class CalibenchScheduleProcessor(AdapterLogitsProcessor):
        def is_argmax_invariant(self) -> bool:
            return False  # the first-token restriction changes the argmax

        def new_req_logits_processor(self, params: Any) -> Any:
            extra = getattr(params, "extra_args", None) or {}
            return make_request_processor(extra[EXTRA_KEY]) if EXTRA_KEY in extra else None

        req_logits_processor = new_req_logits_processor  # older vLLM name

    return CalibenchScheduleProcessor


def sample_streams_vllm(
    spec: str,
    tokenizer: Any,
    n: int,
    seq_len: int,
    plan: SamplingPlan,
    seed: int,
    dtype: str = "float32",
    on_tokens: Callable[[int, float], None] | None = None,
    llm: Any | None = None,
) -> tuple[np.ndarray, GenerationStats]:
    """Same contract as :func:`calibench.selfcal.sampler.sample_streams`, run by vLLM."""
    require_vllm()
    from vllm import LLM, SamplingParams

    if llm is None:
        llm = LLM(model=resolve_model_path(spec), dtype=dtype, seed=seed, logits_processors=[_adapter_class()])
    extra = {EXTRA_KEY: plan_to_extra(plan)}
    stop_set = set(plan.stop_ids)
    streams = [[plan.start_id] for _ in range(n)]
    generations = [0] * n
    stats = GenerationStats()
    began = time.perf_counter()
    stats.tokens = n
    if on_tokens is not None:
        on_tokens(n, 0.0)
    while True:
        pending = [i for i in range(n) if len(streams[i]) < seq_len]
        if not pending:
            break
        params = [
            SamplingParams(
                n=1,
                temperature=1.0,
                seed=request_seed(seed, i, generations[i]),
                max_tokens=min(plan.max_new_tokens, seq_len - len(streams[i])),
                min_tokens=plan.min_new_tokens,
                stop_token_ids=list(plan.stop_ids),
                ignore_eos=False,
                extra_args=extra,
                detokenize=False,
            )
            for i in pending
        ]
        prompts = [{"prompt_token_ids": [plan.start_id]} for _ in pending]
        outputs = llm.generate(prompts, params, use_tqdm=False)
        added = 0
        for i, output in zip(pending, outputs):
            completion = output.outputs[0]
            ids = [int(t) for t in completion.token_ids]
            if completion.finish_reason == "stop" and (not ids or ids[-1] not in stop_set):
                reason = completion.stop_reason if isinstance(completion.stop_reason, int) else plan.stop_ids[0]
                ids.append(int(reason))
            before = len(streams[i])
            streams[i].extend(ids)
            generations[i] += 1
            if ids and ids[-1] in stop_set:
                stats.end(len(ids), "stop", ids[-1])
            elif len(ids) >= plan.max_new_tokens:
                stats.end(len(ids), "max_new_tokens")
            else:
                stats.end(len(ids), "seq_len")
            if len(streams[i]) < seq_len and (not ids or ids[-1] != plan.start_id):
                streams[i].append(plan.start_id)
            del streams[i][seq_len:]
            added += len(streams[i]) - before
        stats.tokens += added
        if on_tokens is not None:
            on_tokens(added, time.perf_counter() - began)
    stats.seconds = time.perf_counter() - began
    return np.asarray(streams, dtype=np.int32), stats
