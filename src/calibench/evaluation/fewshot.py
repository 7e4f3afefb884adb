"""Few-shot examples: how many lm-eval uses, and where it draws them from.

Online, lm-eval draws them from the hub's splits and calibench has nothing
to decide.  Offline, the data pack often lacks the split they come from
(almost every mirror is a validation or test split only); lm-eval would then
quietly fall back to another split, possibly the one being scored, and the
prompts would differ from an online run.  calibench refuses instead: such a
task is *skipped* with the reason (like a task without offline data), so the
other tasks of the run still go ahead.
"""

from __future__ import annotations

from typing import Any

BUILT_IN = "the exemplars written in its YAML"


def effective_shots(declared: int | None, requested: int | None) -> int:
    """lm-eval's rule (``simple_evaluate``): a YAML that sets 0 stays 0; ``None`` keeps the YAML's default."""
    if requested is None:
        return int(declared or 0)
    if declared == 0:
        return 0
    return int(requested)


def fewshot_source(config: dict[str, Any]) -> str | None:
    """The split lm-eval's task draws few-shot examples from, or None when its YAML writes them out.

    The order is lm-eval's (``ConfigurableTask.fewshot_docs``): ``fewshot_config.split``
    or ``fewshot_split``; else ``fewshot_config.samples``; else the training,
    validation, then test split.
    """
    fewshot_config = config.get("fewshot_config") or {}
    split = fewshot_config.get("split", config.get("fewshot_split"))
    if split:
        return str(split)
    if fewshot_config.get("samples") is not None:
        return None
    for key in ("training_split", "validation_split", "test_split"):
        if config.get(key):
            return str(config[key])
    return None


def offline_fewshot_problem(task: str, config: dict[str, Any], shots: int, available: list[str],
                            hint: str = "") -> str | None:  # fmt: skip
    """Why ``shots`` examples cannot be drawn from the offline splits ``available`` (None: they can)."""
    if shots == 0:
        return None
    split = fewshot_source(config)
    if split is None or split in available:
        return None
    extra = f"; {hint}" if hint else ""
    return (f"{shots}-shot {task} draws its examples from the {split} split, which the offline data lacks "
            f"(it has {', '.join(available)}); run it online or with --num-fewshot 0{extra}")  # fmt: skip
