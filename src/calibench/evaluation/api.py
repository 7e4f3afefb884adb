"""``evaluate``: every kind of task (perplexity, lm-eval, summarization, ...) for one model, in one call.

Everything that can be checked without the model is checked first (task
names, sizes, options, the backend, data packs, the chat template, the
model's context length), so a typo costs a second, not a model load.

``evaluate`` runs no kind's code itself: each kind is a
:class:`~calibench.evaluation.kinds.base.TaskKind` registered in
:data:`calibench.evaluation.tasks.TASK_KINDS`, and every kind goes through the
same steps (parse, prepare before the model loads, run, finish).  A new kind is
one new module and one registry entry (see :mod:`calibench.evaluation.kinds.base`);
this file does not change.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from calibench.core.connectivity import Connectivity, decide
from calibench.core.errors import CalibenchError
from calibench.core.provenance import library_versions
from calibench.core.settings import DEFAULTS, accepts_settings
from calibench.evaluation.backends import backend_settings, check_backend, check_gpu
from calibench.evaluation.kinds.base import EvalContext, KindOutput, TaskKind
from calibench.evaluation.lmeval import LmEvalOptions, parse_gen_kwargs
from calibench.evaluation.lmeval_output import check_lm_eval_dir
from calibench.evaluation.perplexity import BosOption
from calibench.evaluation.results import EvalResult
from calibench.evaluation.samples import ItemBlock
from calibench.evaluation.settings import SEQ_LEN_FIELD, EvalSettings
from calibench.evaluation.tasks import LM_EVAL_KIND, TaskRequest, group_by_kind, parse_tasks
from calibench.models import (
    load_config,
    load_model,
    load_tokenizer,
    model_max_length,
    resolve_device,
    resolve_model_path,
)

DEFAULT_SEQ_LEN = 2048  # the papers' window; capped at the model's context length
DEFAULT_BOOTSTRAP_ITERS = 1000  # only non-mean metrics (lambada perplexity) bootstrap their stderr


@accepts_settings(EvalSettings, renames=SEQ_LEN_FIELD)
def evaluate(
    model: Any,
    tasks: str | Iterable[str] = EvalSettings.model_fields["tasks"].default,
    *,
    tokenizer: Any = None,
    limit: int | None = None,
    offline: bool | None = DEFAULTS.offline,
    batch_size: int = DEFAULTS.batch_size,
    seq_len: int | None = None,
    bos: BosOption = "auto",
    max_windows: int | None = DEFAULTS.max_windows,
    dtype: str = DEFAULTS.dtype,
    device: str = DEFAULTS.device,
    bootstrap_iters: int = DEFAULT_BOOTSTRAP_ITERS,
    num_fewshot: int | None = 0,
    apply_chat_template: bool | str = False,
    fewshot_as_multiturn: bool | None = None,
    log_samples: bool = False,
    gen_kwargs: str | dict[str, Any] | None = None,
    backend: str = "hf",
    tensor_parallel_size: int = EvalSettings.model_fields["tensor_parallel_size"].default,
    gpu_memory_utilization: float = EvalSettings.model_fields["gpu_memory_utilization"].default,
    max_model_len: int | None = None,
    lm_eval_out: str | os.PathLike[str] | None = None,
    settings: EvalSettings | None = None,
    items: ItemBlock | tuple[int, int] | None = None,
) -> EvalResult:
    """Evaluate ``model`` on ``tasks`` (e.g. ``"ppl:wiki,arc_easy,piqa"``, any lm-eval task name).

    ``model`` is a spec (bundled name, local checkpoint directory, hub id) or
    an in-memory causal LM, then with its ``tokenizer``.  ``limit`` caps the
    items of each lm-eval task and, unless ``max_windows`` is given, the
    windows of each perplexity task too (rows are marked limited);
    ``max_windows`` caps perplexity windows on its own.  ``offline=None`` goes offline by itself when
    the hub is unreachable; ``True`` forces the offline mirrors.  ``bos``
    applies to perplexity windows (lm-eval tasks keep lm-eval's handling:
    what the tokenizer does).  ``seq_len`` defaults to ``min(2048, model
    maximum)``.

    lm-eval's own options go to ``simple_evaluate`` as they are:
    ``num_fewshot`` (calibench's default 0, the papers' protocol; ``None``
    keeps each task's default, e.g. 5 for gsm8k), ``apply_chat_template``
    (True, or a template name), ``fewshot_as_multiturn`` (default: on with a
    chat template, as in lm-eval's CLI), ``gen_kwargs`` (``"max_gen_toks=64"``
    or a dict; generative tasks only).  ``log_samples`` keeps per-item
    results in ``EvalResult.samples``.  ``backend`` is ``"hf"`` (HFLM around
    the model) or ``"vllm"`` (lm-eval's VLLM on the model directory).
    ``tensor_parallel_size``, ``gpu_memory_utilization`` and ``max_model_len`` go to vLLM's engine (with
    ``backend="vllm"`` only; :class:`~calibench.evaluation.settings.BackendSettings`).
    ``lm_eval_out`` also writes lm-eval's own output layout to that folder.
    ``items=(start, stop)`` (or an :class:`ItemBlock` with a seed) scores only
    the items at those positions of every task (lm-eval documents, perplexity
    windows; in the task's order, or a seeded shuffle of it; fewer where a
    task has fewer), each item marked with its ``position``: one block of a
    study's adaptive evaluation, whose blocks together are the first ``stop``
    items.

    ``settings`` gives these options as one :class:`EvalSettings` (what
    ``calibench eval`` takes; its ``ppl_seq_len`` is ``seq_len`` here);
    keywords override its fields.  ``dtype`` and ``device`` default to
    ``auto``: the first CUDA GPU if there is one, else the CPU, in the
    checkpoint's own dtype on a GPU and float32 on the CPU (see
    :class:`calibench.core.settings.CommonSettings`).
    """
    started = time.perf_counter()
    if isinstance(model, (str, os.PathLike)):
        device = str(resolve_device(device))  # a CUDA device on a machine without one fails here, before any work
    requests = parse_tasks(tasks, offline=offline)
    groups = group_by_kind(requests)
    _check_positive(limit=limit, batch_size=batch_size, max_windows=max_windows, bootstrap_iters=bootstrap_iters)
    if isinstance(items, tuple):
        items = ItemBlock(*items)
    if items is not None and not (0 <= items.start < items.stop):
        raise CalibenchError(f"items must be a range (start, stop) with 0 <= start < stop, got {items}")
    if items is not None and (limit is not None or max_windows is not None):
        raise CalibenchError("items (a block of items) replaces limit and max_windows: give one or the other")
    options = lm_eval_options(num_fewshot, apply_chat_template, fewshot_as_multiturn, log_samples, gen_kwargs)
    engine = backend_settings(backend, tensor_parallel_size, gpu_memory_utilization, max_model_len)
    chosen = check_backend(backend, model)
    check_gpu(chosen, engine.tensor_parallel_size)
    if options.gen_kwargs and not any(kind.name == LM_EVAL_KIND for kind, _ in groups):
        raise CalibenchError("--gen-kwargs sets lm-eval's generation: request at least one lm-eval task")
    if lm_eval_out is not None:
        if not any(kind.name == LM_EVAL_KIND for kind, _ in groups):
            raise CalibenchError("--lm-eval-out writes lm-eval's results: request at least one lm-eval task")
        check_lm_eval_dir(lm_eval_out)
    name, max_len = _describe_model(model, tokenizer)
    seq_len = _seq_len(seq_len, max_len)
    ctx = EvalContext(
        model, name, max_len, _connectivity(offline, groups), options, chosen, seq_len, limit,
        max_windows=limit if max_windows is None else max_windows,  # --limit N: at most N items of every task
        batch_size=batch_size, bos=bos, bootstrap_iters=bootstrap_iters, dtype=dtype, device=device,
        lm_eval_out=lm_eval_out, tokenizer=tokenizer, items=items, engine=engine,
    )  # fmt: skip

    # Data first: every kind loads and checks what it can before the model loads.
    prepared = [(kind, kind.prepare(reqs, ctx)) for kind, reqs in groups]
    if any(kind.needs_model(prep, ctx) for kind, prep in prepared):
        ctx.loaded_model, ctx.tokenizer = _load_model(model, ctx.tokenizer, dtype, device)
    recorded = _settings(ctx)  # the model's device and dtype before a kind frees it
    outputs = [kind.run(prep, ctx) for kind, prep in prepared]
    return _assemble(ctx, requests, outputs, recorded, time.perf_counter() - started)


def _assemble(
    ctx: EvalContext, requests: list[TaskRequest], outputs: list[KindOutput], settings: dict[str, Any], seconds: float
) -> EvalResult:
    """The kinds' rows in kind order, records in request order, samples when asked for; then each kind's finish."""
    records = {name: record for out in outputs for name, record in out.records.items()}
    result = EvalResult(
        model=ctx.name,
        rows=[row for out in outputs for row in out.rows],
        tasks=[records[r.name] for r in requests],
        settings=settings,
        versions=library_versions(["calibench", "torch", "transformers", "datasets"]),
        seconds=seconds,
        samples={k: v for out in outputs for k, v in out.samples.items()} if ctx.options.log_samples else {},
    )
    result._lm_eval_meta = {"model_source": ctx.backend.name, "fewshot_as_multiturn": ctx.options.fewshot_as_multiturn}
    for out in outputs:
        if out.finish is not None:
            out.finish(result)
    return result


def _settings(ctx: EvalContext) -> dict[str, Any]:
    """What the run used; kinds add theirs in their finish (``bos_resolved`` is perplexity's)."""
    model = ctx.loaded_model
    return {
        "seq_len": ctx.seq_len,
        "bos": ctx.bos if isinstance(ctx.bos, str) else ("always" if ctx.bos else "never"),
        "bos_resolved": None,
        "batch_size": ctx.batch_size,
        # resolved ("auto" is float32 on CPU, the checkpoint's dtype on a GPU)
        "dtype": str(getattr(model, "dtype", "")).removeprefix("torch.") if model is not None else ctx.dtype,
        "device": str(_model_device(model)) if model is not None else ctx.device,
        "limit": ctx.limit,
        "max_windows": ctx.max_windows,
        "offline": ctx.conn.offline,
        "offline_reason": ctx.conn.reason,
        **ctx.options.settings(),
        "backend": ctx.backend.name,
        **(ctx.engine.vllm_engine_args() if ctx.backend.name == "vllm" else {}),
        "bootstrap_iters": ctx.bootstrap_iters,
        "lm_eval_add_bos_token": "tokenizer default",
    }


def _connectivity(offline: bool | None, groups: list[tuple[TaskKind, list[TaskRequest]]]) -> Connectivity:
    """Online or offline, decided once (probing the hub only when some kind may read it)."""
    if any(kind.needs_hub(reqs) for kind, reqs in groups):
        return decide(offline)
    return Connectivity(True, "no hub data requested")


def _seq_len(seq_len: int | None, max_len: int) -> int:
    if seq_len is None:
        seq_len = min(DEFAULT_SEQ_LEN, max_len)
    if seq_len < 2:
        raise CalibenchError(f"--seq-len must be at least 2, got {seq_len}")
    if seq_len > max_len:
        raise CalibenchError(f"--seq-len {seq_len} is above the model's maximum of {max_len} tokens")
    return seq_len


def lm_eval_options(
    num_fewshot: int | None, apply_chat_template: bool | str, fewshot_as_multiturn: bool | None,
    log_samples: bool, gen_kwargs: str | dict[str, Any] | None,
) -> LmEvalOptions:  # fmt: skip
    """lm-eval's options, validated with lm-eval's CLI rules (multiturn follows the chat template)."""
    if num_fewshot is not None and num_fewshot < 0:
        raise CalibenchError(f"--num-fewshot must be 0 or more, got {num_fewshot}")
    if apply_chat_template is None or apply_chat_template == "":
        apply_chat_template = False
    if fewshot_as_multiturn is None:
        fewshot_as_multiturn = bool(apply_chat_template)
    elif fewshot_as_multiturn and not apply_chat_template:
        raise CalibenchError("--fewshot-as-multiturn needs --apply-chat-template (few-shot turns are chat turns)")
    parsed = parse_gen_kwargs(gen_kwargs)
    return LmEvalOptions(num_fewshot, apply_chat_template, bool(fewshot_as_multiturn), bool(log_samples), parsed)


# -- model --------------------------------------------------------------------------------------


def _describe_model(model: Any, tokenizer: Any) -> tuple[str, int]:
    """A display name and the context length, without loading weights for a spec."""
    if isinstance(model, (str, os.PathLike)):
        config = load_config(model)
        return os.fspath(model), model_max_length(config)
    if not hasattr(model, "config") or not callable(model):
        raise CalibenchError(f"cannot evaluate a {type(model).__name__}: give a model spec or a causal LM")
    if tokenizer is None:
        raise CalibenchError("an in-memory model needs its tokenizer: evaluate(model, tasks, tokenizer=...)")
    name = getattr(model.config, "_name_or_path", "") or type(model).__name__
    return str(name), model_max_length(model)


def _load_model(model: Any, tokenizer: Any, dtype: str, device: str) -> tuple[Any, Any]:
    if not isinstance(model, (str, os.PathLike)):
        model.eval()
        return model, tokenizer
    try:
        loaded = load_model(model, dtype=dtype, device=device)
    except CalibenchError:
        raise
    except Exception as exc:  # corrupt weights raise library-specific errors
        path = resolve_model_path(model)
        if not Path(path).is_dir():
            raise
        text = " ".join(str(exc).split()) or type(exc).__name__
        raise CalibenchError(f"could not load model from {path}: {text[:300]}") from exc
    return loaded, tokenizer if tokenizer is not None else load_tokenizer(model)


def _model_device(model: Any) -> Any:
    try:
        return next(model.parameters()).device
    except (StopIteration, AttributeError, TypeError):
        return "unknown"


# -- misc ----------------------------------------------------------------------------------------


def _check_positive(**values: int | None) -> None:
    for key, value in values.items():
        if value is not None and value < 1:
            raise CalibenchError(f"--{key.replace('_', '-')} must be at least 1, got {value}")
