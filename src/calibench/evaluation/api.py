"""``evaluate``: perplexity and zero-shot tasks for one model, in one call.

Everything that can be checked without the model is checked first (task
names, sizes, data packs, the model's context length), so a typo costs a
second, not a model load.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from calibench.errors import CalibenchError
from calibench.evaluation.heldout import HeldoutText, load_heldout_texts
from calibench.evaluation.perplexity import BosOption, cut_windows, perplexity_of_windows, resolve_bos_option, tokenize_joined
from calibench.evaluation.results import EvalResult, EvalRow, TaskRecord
from calibench.evaluation.tasks import TaskRequest, parse_tasks

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
    dtype: str = "float32",
    device: str = "cpu",
    bootstrap_iters: int = DEFAULT_BOOTSTRAP_ITERS,
) -> EvalResult:
    """Evaluate ``model`` on ``tasks`` (e.g. ``"ppl:wiki,arc_easy,piqa"``).

    ``model`` is a spec (bundled name, local checkpoint directory, hub id) or
    an in-memory causal LM, then with its ``tokenizer``.  ``limit`` caps the
    items of each zero-shot task and, unless ``max_windows`` is given, the
    windows of each perplexity task too (rows are marked limited);
    ``max_windows`` caps perplexity windows on its own.  ``offline=None`` goes offline by itself when
    the hub is unreachable; ``True`` forces the offline mirrors.  ``bos``
    applies to perplexity windows (lm-eval tasks keep lm-eval's handling:
    what the tokenizer does).  ``seq_len`` defaults to ``min(2048, model
    maximum)``.
    """
    started = time.perf_counter()
    requests = parse_tasks(tasks)
    _check_positive(limit=limit, batch_size=batch_size, max_windows=max_windows, bootstrap_iters=bootstrap_iters)
    if max_windows is None:
        max_windows = limit  # --limit N means at most N items of every task, windows included

    name, max_len = _describe_model(model, tokenizer)
    if seq_len is None:
        seq_len = min(DEFAULT_SEQ_LEN, max_len)
    if seq_len < 2:
        raise CalibenchError(f"--seq-len must be at least 2, got {seq_len}")
    if seq_len > max_len:
        raise CalibenchError(f"--seq-len {seq_len} is above the model's maximum of {max_len} tokens")

    ppl_requests = [r for r in requests if r.kind == "perplexity"]
    zs_requests = [r for r in requests if r.kind == "zeroshot"]
    needs_hub = bool(zs_requests) or any(not r.heldout.offline for r in ppl_requests)  # type: ignore[union-attr]
    from calibench.evaluation.connectivity import Connectivity, decide

    conn = decide(offline) if needs_hub else Connectivity(True, "no hub data requested")

    # Data first: a missing pack or an unknown split fails before the model loads.
    ppl_data = [_load_heldout(r, conn) for r in ppl_requests]
    prepared = []
    if zs_requests:
        from calibench.evaluation import lmeval

        with lmeval.quiet_lm_eval(_progress_enabled()):
            prepared = lmeval.prepare([r.zeroshot for r in zs_requests], conn.offline, conn.reason, limit)  # type: ignore[misc]

    model_obj, tok = _load_model(model, tokenizer, dtype, device)
    rows: list[EvalRow] = []
    records: dict[str, TaskRecord] = {}
    add_bos = resolve_bos_option(tok, bos) if ppl_requests else None

    for request, (record, texts) in zip(ppl_requests, ppl_data):
        records[request.name] = record
        if record.status == "ok":
            _announce(f"{request.name}: perplexity, seq_len {seq_len}")
            rows.extend(_run_perplexity(request.heldout, record, texts, model_obj, tok, seq_len, bool(add_bos),
                                        batch_size, max_windows))  # fmt: skip

    if prepared:
        from calibench.evaluation import lmeval

        with lmeval.quiet_lm_eval(_progress_enabled()):
            runnable = [p for p in prepared if p.task is not None]
            lm = lmeval.make_lm(model_obj, tok, batch_size) if runnable else None
            for i, prep in enumerate(prepared, 1):
                records[prep.spec.name] = prep.record
                if prep.task is None:
                    _announce(f"[{i}/{len(prepared)}] {prep.spec.name}: skipped ({prep.record.reason})")
                    continue
                rec = prep.record
                _announce(f"[{i}/{len(prepared)}] {prep.spec.name}: {rec.mode}, {rec.n_evaluated} of {rec.n_total} "
                          f"items, split {rec.split}")  # fmt: skip
                rows.extend(lmeval.run(lm, prep, rec.limit, bootstrap_iters))

    settings = {
        "seq_len": seq_len,
        "bos": bos if isinstance(bos, str) else ("always" if bos else "never"),
        "bos_resolved": add_bos,
        "batch_size": batch_size,
        "dtype": dtype if isinstance(model, (str, os.PathLike)) else str(getattr(model_obj, "dtype", "")),
        "device": str(_model_device(model_obj)),
        "limit": limit,
        "max_windows": max_windows,
        "offline": conn.offline,
        "offline_reason": conn.reason,
        "num_fewshot": 0,
        "bootstrap_iters": bootstrap_iters,
        "lm_eval_add_bos_token": "tokenizer default",
    }
    if prepared:
        from calibench.evaluation.lmeval import SEEDS

        settings["seeds"] = dict(SEEDS)
    return EvalResult(
        model=name,
        rows=rows,
        tasks=[records[r.name] for r in requests],
        settings=settings,
        versions=_versions(bool(prepared)),
        seconds=time.perf_counter() - started,
    )


# -- perplexity -------------------------------------------------------------------------------

def _load_heldout(request: TaskRequest, conn: Any) -> tuple[TaskRecord, list[str]]:
    spec: HeldoutText = request.heldout  # type: ignore[assignment]
    record = TaskRecord(task=request.name, kind="perplexity", split=spec.split, reference_split=spec.split)
    record.details.update(spec.protocol())
    started = time.perf_counter()
    from calibench.evaluation.connectivity import env_offline

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
    spec: HeldoutText, record: TaskRecord, texts: list[str], model: Any, tokenizer: Any, seq_len: int,
    add_bos: bool, batch_size: int, max_windows: int | None,
) -> list[EvalRow]:
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
    ppl, mean_nll, stderr = perplexity_of_windows(model, windows, batch_size=batch_size, label=record.task)
    record.n_total = available
    record.n_evaluated = len(windows)
    record.limit = max_windows if len(windows) < available else None
    record.details.update({
        "seq_len": seq_len, "bos": add_bos, "tokens": int(len(windows) * (seq_len - 1)),
        "text_tokens": int(len(ids)), "mean_nll": mean_nll,
        "stderr_method": "delta method over windows",
    })  # fmt: skip
    record.seconds += time.perf_counter() - started
    return [EvalRow(task=record.task, metric="perplexity", value=ppl, stderr=stderr, n=len(windows), limit=record.limit)]


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


def _progress_enabled() -> bool:
    from calibench import progress

    return progress.enabled()


def _announce(message: str) -> None:
    if _progress_enabled():
        sys.stderr.write(message + "\n")
        sys.stderr.flush()


def _versions(with_lm_eval: bool) -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    names = ["calibench", "torch", "transformers", "datasets"] + (["lm_eval"] if with_lm_eval else [])
    out = {}
    for pkg in names:
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            continue
    return out
