"""``evaluate``: perplexity and lm-eval tasks for one model, in one call.

Everything that can be checked without the model is checked first (task
names, sizes, options, the backend, data packs, the chat template, the
model's context length), so a typo costs a second, not a model load.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from calibench.core.errors import CalibenchError
from calibench.core.provenance import library_versions
from calibench.core.text import one_line
from calibench.evaluation.heldout import HeldoutText, load_heldout_texts
from calibench.evaluation.perplexity import BosOption, cut_windows, resolve_bos_option, score_windows, tokenize_joined
from calibench.evaluation.results import EvalResult, EvalRow, TaskRecord
from calibench.evaluation.samples import Item, window_items
from calibench.evaluation.tasks import LM_EVAL_KIND, SUMM_KIND, TASK_KINDS, TaskRequest, parse_tasks

DEFAULT_SEQ_LEN = 2048  # the papers' window; capped at the model's context length
DEFAULT_BOOTSTRAP_ITERS = 1000  # only non-mean metrics (lambada perplexity) bootstrap their stderr


def evaluate(
    model: Any,
    tasks: str | Iterable[str],
    *,
    tokenizer: Any = None,
    limit: int | None = None,
    offline: bool | None = None,
    batch_size: int = 8,
    seq_len: int | None = None,
    bos: BosOption = "auto",
    max_windows: int | None = None,
    dtype: str = "auto",
    device: str = "auto",
    bootstrap_iters: int = DEFAULT_BOOTSTRAP_ITERS,
    num_fewshot: int | None = 0,
    apply_chat_template: bool | str = False,
    fewshot_as_multiturn: bool | None = None,
    log_samples: bool = False,
    gen_kwargs: str | dict[str, Any] | None = None,
    backend: str = "hf",
    lm_eval_out: str | os.PathLike[str] | None = None,
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
    ``lm_eval_out`` also writes lm-eval's own output layout to that folder.
    """
    from calibench.evaluation.backends import LmInputs, check_backend
    from calibench.models import resolve_device

    started = time.perf_counter()
    if isinstance(model, (str, os.PathLike)):
        device = str(resolve_device(device))  # a CUDA device on a machine without one fails here, before any work
    requests = parse_tasks(tasks, offline=offline)
    _check_positive(limit=limit, batch_size=batch_size, max_windows=max_windows, bootstrap_iters=bootstrap_iters)
    if max_windows is None:
        max_windows = limit  # --limit N means at most N items of every task, windows included
    ppl_requests = [r for r in requests if r.kind == "perplexity"]
    lm_requests = [r for r in requests if r.kind == LM_EVAL_KIND]
    summ_requests = [r for r in requests if r.kind == SUMM_KIND]
    options = _lm_eval_options(num_fewshot, apply_chat_template, fewshot_as_multiturn, log_samples, gen_kwargs)
    chosen = check_backend(backend, model)
    if lm_eval_out is not None:
        from calibench.evaluation.lmeval_output import check_lm_eval_dir

        if not lm_requests:
            raise CalibenchError("--lm-eval-out writes lm-eval's results: request at least one lm-eval task")
        check_lm_eval_dir(lm_eval_out)

    name, max_len = _describe_model(model, tokenizer)
    if seq_len is None:
        seq_len = min(DEFAULT_SEQ_LEN, max_len)
    if seq_len < 2:
        raise CalibenchError(f"--seq-len must be at least 2, got {seq_len}")
    if seq_len > max_len:
        raise CalibenchError(f"--seq-len {seq_len} is above the model's maximum of {max_len} tokens")

    needs_hub = bool(lm_requests) or any(not r.heldout.offline for r in ppl_requests)  # type: ignore[union-attr]
    from calibench.core.connectivity import Connectivity, decide

    conn = decide(offline) if needs_hub else Connectivity(True, "no hub data requested")

    # Data first: a missing pack or an unknown split fails before the model loads.
    ppl_data = [_load_heldout(r, conn) for r in ppl_requests]
    prepared = []
    if lm_requests:
        from calibench.evaluation import lmeval

        with lmeval.quiet_lm_eval(_progress_enabled()):
            prepared = lmeval.prepare([r.lm_eval for r in lm_requests], conn.offline, conn.reason, limit,  # type: ignore[misc]
                                      num_fewshot=options.num_fewshot)  # fmt: skip
    runnable = [p for p in prepared if p.task is not None]
    if runnable and options.apply_chat_template:
        tokenizer = tokenizer if tokenizer is not None else _load_tokenizer(model)
        _check_chat_template(tokenizer, options.apply_chat_template, name)
    summ_prepared = _prepare_summarization(summ_requests, limit, model, tokenizer, name)
    if summ_prepared and tokenizer is None:
        tokenizer = _load_tokenizer(model)

    needs_torch = bool(ppl_requests) or bool(summ_prepared) or (bool(runnable) and chosen.needs_torch_model)
    model_obj, tok = _load_model(model, tokenizer, dtype, device) if needs_torch else (None, tokenizer)
    rows: list[EvalRow] = []
    records: dict[str, TaskRecord] = {}
    samples: dict[str, list[Item]] = {}
    add_bos = resolve_bos_option(tok, bos) if ppl_requests else None
    for request, (record, texts) in zip(ppl_requests, ppl_data):
        records[request.name] = record
        if record.status == "ok":
            _announce(f"{request.name}: perplexity, seq_len {seq_len}")
            task_rows, items = _run_perplexity(request.heldout, record, texts, model_obj, tok, seq_len,  # type: ignore[arg-type]
                                               bool(add_bos), batch_size, max_windows)  # fmt: skip
            rows.extend(task_rows)
            if options.log_samples:
                samples[request.name] = items
    for prep in summ_prepared:
        _announce(f"{prep.task.name}: summarization, {len(prep.docs)} of {prep.n_total} documents")
        task_rows, record, items = TASK_KINDS.get(SUMM_KIND).run(prep, model_obj, tok, model if isinstance(model, (str, os.PathLike))
                                                     else None, batch_size)  # fmt: skip
        records[prep.task.name] = record
        rows.extend(task_rows)
        if options.log_samples:
            samples[prep.task.name] = items
    device_used = str(_model_device(model_obj)) if model_obj is not None else device
    model_dtype = str(getattr(model_obj, "dtype", "")).removeprefix("torch.") if model_obj is not None else dtype
    if not chosen.needs_torch_model and isinstance(model, (str, os.PathLike)):
        model_obj = None  # vLLM loads its own copy: free the perplexity model first
        _free_memory()

    outputs: list[dict[str, Any]] = []
    meta: dict[str, Any] = {"model_source": chosen.name, "fewshot_as_multiturn": options.fewshot_as_multiturn}
    if prepared:
        inputs = LmInputs(model_obj, tok, _path_of(model), batch_size, dtype, device)
        for prep in prepared:
            records[prep.spec.name] = prep.record
        for done in _run_lm_eval(prepared, chosen, inputs, bootstrap_iters, options, meta):
            rows.extend(done.rows)
            samples.update(done.samples)
            outputs.append(done.output)

    settings: dict[str, Any] = {
        "seq_len": seq_len,
        "bos": bos if isinstance(bos, str) else ("always" if bos else "never"),
        "bos_resolved": add_bos,
        "batch_size": batch_size,
        "dtype": model_dtype,  # resolved ("auto" is float32 on CPU, the checkpoint's dtype on a GPU)
        "device": device_used,
        "limit": limit,
        "max_windows": max_windows,
        "offline": conn.offline,
        "offline_reason": conn.reason,
        **options.settings(),
        "backend": chosen.name,
        "bootstrap_iters": bootstrap_iters,
        "lm_eval_add_bos_token": "tokenizer default",
    }
    if prepared:
        from calibench.evaluation.lmeval import SEEDS

        settings["seeds"] = dict(SEEDS)
    result = EvalResult(
        model=name,
        rows=rows,
        tasks=[records[r.name] for r in requests],
        settings=settings,
        versions=_versions(bool(prepared)),
        seconds=time.perf_counter() - started,
        samples=samples,
    )
    result._lm_eval_outputs = outputs
    result._lm_eval_meta = meta
    if lm_eval_out is not None and outputs:
        from calibench.evaluation.lmeval_output import write_lm_eval_output

        written = write_lm_eval_output(result, lm_eval_out)
        result.settings["lm_eval_out"] = [str(p) for p in written]
    return result


def _run_lm_eval(prepared: list[Any], backend: Any, inputs: Any, bootstrap_iters: int, options: Any,
                 meta: dict[str, Any]) -> Iterator[Any]:  # fmt: skip
    """Score the prepared lm-eval tasks one ``simple_evaluate`` each, announcing progress; yields each ``TaskRun``."""
    from calibench.evaluation import lmeval

    with lmeval.quiet_lm_eval(_progress_enabled()):
        lm = None
        if any(p.task is not None for p in prepared):
            lm = backend.make(inputs)
            if options.apply_chat_template:
                meta["chat_template"] = lm.chat_template(options.apply_chat_template)
        for i, prep in enumerate(prepared, 1):
            rec = prep.record
            if prep.task is None:
                _announce(f"[{i}/{len(prepared)}] {prep.spec.name}: skipped ({rec.reason})")
                continue
            shots = "" if rec.num_fewshot is None else f", {rec.num_fewshot}-shot"
            _announce(f"[{i}/{len(prepared)}] {prep.spec.name}: {rec.mode}, {rec.n_evaluated} of {rec.n_total} "
                      f"items, split {rec.split}{shots}")  # fmt: skip
            yield lmeval.run(lm, prep, rec.limit, bootstrap_iters, options)


def _lm_eval_options(
    num_fewshot: int | None, apply_chat_template: bool | str, fewshot_as_multiturn: bool | None,
    log_samples: bool, gen_kwargs: str | dict[str, Any] | None,
) -> Any:  # fmt: skip
    """lm-eval's options, validated with lm-eval's CLI rules (multiturn follows the chat template)."""
    from calibench.evaluation.lmeval import LmEvalOptions

    if num_fewshot is not None and num_fewshot < 0:
        raise CalibenchError(f"--num-fewshot must be 0 or more, got {num_fewshot}")
    if apply_chat_template is None or apply_chat_template == "":
        apply_chat_template = False
    if fewshot_as_multiturn is None:
        fewshot_as_multiturn = bool(apply_chat_template)
    elif fewshot_as_multiturn and not apply_chat_template:
        raise CalibenchError("--fewshot-as-multiturn needs --apply-chat-template (few-shot turns are chat turns)")
    from calibench.evaluation.lmeval import parse_gen_kwargs

    parsed = parse_gen_kwargs(gen_kwargs)
    return LmEvalOptions(num_fewshot, apply_chat_template, bool(fewshot_as_multiturn), bool(log_samples), parsed)


def _check_chat_template(tokenizer: Any, wanted: bool | str, name: str) -> None:
    template = getattr(tokenizer, "chat_template", None)
    if not template:
        raise CalibenchError(f"--apply-chat-template: the tokenizer of {name} has no chat template "
                             "(base models usually have none); drop the option")  # fmt: skip
    if isinstance(wanted, str) and isinstance(template, dict) and wanted not in template:
        raise CalibenchError(f"--apply-chat-template: the tokenizer of {name} has no chat template '{wanted}' "
                             f"(it has {', '.join(sorted(template))})")  # fmt: skip


def _prepare_summarization(
    requests: list[TaskRequest], limit: int | None, model: Any, tokenizer: Any, name: str
) -> list[Any]:
    """Load every summarization dataset and check the prompts can be rendered, before the model loads."""
    if not requests:
        return []
    kind = TASK_KINDS.get(SUMM_KIND)
    tok = tokenizer if tokenizer is not None else _load_tokenizer(model)
    for request in requests:
        kind.check_model(request.summ, tok, name)  # chat=yes on a model without a chat template fails here
    return [kind.prepare(r.summ, limit) for r in requests]  # type: ignore[arg-type]


# -- perplexity -------------------------------------------------------------------------------


def _load_heldout(request: TaskRequest, conn: Any) -> tuple[TaskRecord, list[str]]:
    spec: HeldoutText = request.heldout  # type: ignore[assignment]
    record = TaskRecord(task=request.name, kind="perplexity", split=spec.split, reference_split=spec.split)
    record.details.update(spec.protocol())
    started = time.perf_counter()
    from calibench.core.connectivity import env_offline

    # Offline by the environment, `datasets` fails fast (or reads its cache); offline because
    # the hub is unreachable (or on request), it would retry for ~25 s: do not try.
    if not spec.offline and conn.offline and not env_offline() and not os.environ.get("CALIBENCH_HUB_MIRROR"):
        record.status, record.reason = "skipped", f"{spec.name} is a hub dataset and the run is offline ({conn.reason})"
        return record, []
    if spec.kind == "pack":
        from calibench.evaluation.mirrors import pack_root

        pack_root()  # a one-line error naming the pull command when the pack is missing
    try:
        texts, fingerprint = load_heldout_texts(spec)
    except CalibenchError as exc:
        if spec.offline:
            raise
        record.status, record.reason = "skipped", str(exc)
        return record, []
    record.mode = "offline" if spec.offline else "online"
    record.data = f"{spec.kind} source {spec.source}, split {spec.split}"
    record.details["fingerprint"] = fingerprint
    record.details["documents"] = len(texts)
    record.seconds = time.perf_counter() - started
    return record, texts


def _run_perplexity(
    spec: HeldoutText,
    record: TaskRecord,
    texts: list[str],
    model: Any,
    tokenizer: Any,
    seq_len: int,
    add_bos: bool,
    batch_size: int,
    max_windows: int | None,
) -> tuple[list[EvalRow], list[Item]]:
    started = time.perf_counter()
    ids = tokenize_joined(texts, tokenizer, spec.joiner)
    body = seq_len - 1 if add_bos else seq_len
    available = len(ids) // body
    if spec.max_windows is not None:
        available = min(available, spec.max_windows)  # the protocol's own cap is not a limit
    cap = available if max_windows is None else min(available, max_windows)
    if cap == 0:
        raise CalibenchError(
            f"{record.task}: the held-out text has {len(ids):,} tokens, fewer than one window of {seq_len}; "
            "lower --seq-len"
        )
    windows = cut_windows(ids, seq_len, tokenizer.bos_token_id if add_bos else None, cap)
    scores = score_windows(model, windows, batch_size=batch_size, label=record.task)
    ppl, mean_nll, stderr = scores.perplexity, scores.mean_nll, scores.stderr
    record.n_total = available
    record.n_evaluated = len(windows)
    record.limit = max_windows if len(windows) < available else None
    record.details.update({
        "seq_len": seq_len, "bos": add_bos, "tokens": int(len(windows) * (seq_len - 1)),
        "text_tokens": int(len(ids)), "mean_nll": mean_nll,
        "stderr_method": "delta method over windows",
    })  # fmt: skip
    record.seconds += time.perf_counter() - started
    row = EvalRow(task=record.task, metric="perplexity", value=ppl, stderr=stderr, n=len(windows), limit=record.limit)
    return [row], window_items(scores.nll_per_window, scores.tokens_per_window)


# -- model --------------------------------------------------------------------------------------


def _describe_model(model: Any, tokenizer: Any) -> tuple[str, int]:
    """A display name and the context length, without loading weights for a spec."""
    from calibench.models import load_config, model_max_length

    if isinstance(model, (str, os.PathLike)):
        config = load_config(model)
        return os.fspath(model), model_max_length(config)
    if not hasattr(model, "config") or not callable(model):
        raise CalibenchError(f"cannot evaluate a {type(model).__name__}: give a model spec or a causal LM")
    if tokenizer is None:
        raise CalibenchError("an in-memory model needs its tokenizer: evaluate(model, tasks, tokenizer=...)")
    name = getattr(model.config, "_name_or_path", "") or type(model).__name__
    return str(name), model_max_length(model)


def _path_of(model: Any) -> str | None:
    """The directory (or hub id) of a model given as a spec."""
    if not isinstance(model, (str, os.PathLike)):
        return None
    from calibench.models import resolve_model_path

    return str(resolve_model_path(model))


def _load_tokenizer(model: Any) -> Any:
    from calibench.models import load_tokenizer

    return load_tokenizer(model)


def _free_memory() -> None:
    """Return the memory of dropped models (the GPU's too) before another engine loads its copy."""
    import gc

    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:  # pragma: no cover
        pass


def _load_model(model: Any, tokenizer: Any, dtype: str, device: str) -> tuple[Any, Any]:
    if not isinstance(model, (str, os.PathLike)):
        model.eval()
        return model, tokenizer
    from calibench.models import load_model, load_tokenizer, resolve_model_path

    try:
        loaded = load_model(model, dtype=dtype, device=device)
    except CalibenchError:
        raise
    except Exception as exc:  # corrupt weights raise library-specific errors
        path = resolve_model_path(model)
        if not Path(path).is_dir():
            raise
        raise CalibenchError(f"could not load model from {path}: {one_line(exc, 300)}") from exc
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


def _progress_enabled() -> bool:
    from calibench.core import progress

    return progress.enabled()


def _announce(message: str) -> None:
    if _progress_enabled():
        sys.stderr.write(message + "\n")
        sys.stderr.flush()


def _versions(with_lm_eval: bool) -> dict[str, str]:
    return library_versions(["calibench", "torch", "transformers", "datasets"] + (["lm_eval"] if with_lm_eval else []))
