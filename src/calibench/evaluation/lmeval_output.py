"""lm-eval's own output layout, for tools that read ``lm_eval --output_path DIR``.

``DIR/<model name, sanitized>/results_<timestamp>.json`` (``results``,
``groups``, ``group_subtasks``, ``configs``, ``versions``, ``n-shot``,
``higher_is_better``, ``n-samples``, ``config``, ``task_hashes`` and the
general run info) and, when samples were logged,
``samples_<task>_<timestamp>.jsonl`` per task.  The files are written by
lm-eval's own ``EvaluationTracker`` into a temporary folder beside them and
renamed into place, samples first and the results file last, so a reader
that finds a results file finds its samples complete, and a failed write
leaves nothing behind.

calibench runs one ``simple_evaluate`` per requested task; their outputs are
merged into one file here, as if lm-eval had run them together.  Perplexity
tasks are calibench's own and are not part of this layout (they are in
``--out``).
"""

from __future__ import annotations

import copy
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from calibench.core.errors import CalibenchError
from calibench.core.fsutil import _tmp_prefix, check_writable_location, remove_stale_temps
from calibench.evaluation.results import EvalResult

#: the per-task mappings of simple_evaluate's output, merged across calls; other keys come from the first call
PER_TASK_KEYS = ("results", "groups", "group_subtasks", "configs", "versions", "n-shot", "higher_is_better",
                 "n-samples", "samples")  # fmt: skip


def merge_outputs(outputs: list[dict[str, Any]]) -> dict[str, Any]:
    """Several ``simple_evaluate`` outputs as one."""
    merged: dict[str, Any] = {}
    for out in outputs:
        for key, value in out.items():
            if key in PER_TASK_KEYS and isinstance(value, dict):
                merged.setdefault(key, {}).update(value)
            else:
                merged.setdefault(key, value)
    return merged


def has_lm_eval_output(result: EvalResult) -> bool:
    return bool(result._lm_eval_outputs)


def check_lm_eval_dir(directory: str | os.PathLike[str]) -> None:
    """Refuse a destination that is a file or cannot be written (before any work starts)."""

    path = Path(directory)
    if path.exists() and not path.is_dir():
        raise CalibenchError(f"--lm-eval-out {path} is a file: give a directory (lm-eval writes several files)")
    check_writable_location(path / "results.json")


def write_lm_eval_output(result: EvalResult, directory: str | os.PathLike[str]) -> list[Path]:
    """Write ``result``'s lm-eval tasks the way ``lm_eval --output_path DIR`` does; returns the files written.

    Needs the result of a run in this process (lm-eval's configs and raw
    samples are not kept in calibench's JSON).
    """
    from lm_eval.loggers import EvaluationTracker

    if not has_lm_eval_output(result):
        raise CalibenchError(
            "no lm-eval task ran in this result (perplexity tasks are not in lm-eval's layout); "
            "lm-eval's layout needs the run itself: pass lm_eval_out to evaluate() or --lm-eval-out"
        )
    check_lm_eval_dir(directory)
    merged = merge_outputs(result._lm_eval_outputs)
    samples = merged.pop("samples", None)
    meta = result._lm_eval_meta
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)

    tracker = EvaluationTracker(output_path=None)
    general = tracker.general_config_tracker
    general.log_experiment_args(
        model_source=meta.get("model_source", "hf"), model_args={"pretrained": result.model},
        system_instruction=None, chat_template=meta.get("chat_template"),
        fewshot_as_multiturn=bool(meta.get("fewshot_as_multiturn")),
    )  # fmt: skip
    general.start_time = time.perf_counter() - result.seconds
    dest = root / str(general.model_name_sanitized)
    remove_stale_temps(dest)
    tmp = Path(tempfile.mkdtemp(prefix=_tmp_prefix(dest), dir=root))
    try:
        tracker.output_path = str(tmp)
        tracker.save_results_aggregated(results=copy.deepcopy(merged), samples=copy.deepcopy(samples))
        for task_name in merged.get("configs", {}) if samples else ():
            if task_name in samples:
                tracker.save_results_samples(task_name=task_name, samples=copy.deepcopy(samples[task_name]))
        written = tmp / str(general.model_name_sanitized)
        files = sorted(written.glob("*")) if written.is_dir() else []
        results_files = [f for f in files if f.name.startswith("results_")]
        if not results_files:  # the tracker logs a warning and carries on; calibench says so
            raise CalibenchError(f"lm-eval could not write its results under {root}")
        dest.mkdir(parents=True, exist_ok=True)
        out: list[Path] = []
        try:
            for path in [f for f in files if f not in results_files] + results_files:
                os.replace(path, dest / path.name)
                out.append(dest / path.name)
        except BaseException:
            for path in out:  # a results file without its samples is worse than none
                path.unlink(missing_ok=True)
            raise
        return out
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
