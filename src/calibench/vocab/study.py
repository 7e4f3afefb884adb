"""The study option: prune each cell's model to the vocabulary of its evaluation, and check what changed.

A spec's ``eval: {vocab: {mode: restricted}}`` makes every cell, after its
normal evaluation, prune the (compressed) model in memory to the tokens its
evaluation tasks use (counted as lm-eval renders them, perplexity held-out
text included, plus the always-kept ids), evaluate again and record, beside
the cell's unchanged rows: the keep set's size, the memory report and the
difference of every row and per-item score.  In ``exact-input`` mode any
difference is a failure of the cell (the guarantee is bit-identical
results); in ``restricted`` mode the differences are the measurement.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator

from calibench.core.errors import CalibenchError
from calibench.data.tokenizer import vocab_hash
from calibench.vocab.collect import Inputs, collect
from calibench.vocab.modes import MODES
from calibench.vocab.prune import prune

_CACHE: dict[tuple[Any, ...], Any] = {}


class VocabOption(BaseModel):
    """``eval.vocab`` in a study spec."""

    model_config = ConfigDict(extra="forbid")
    mode: str = "restricted"

    @field_validator("mode")
    @classmethod
    def _known_mode(cls, value: str) -> str:
        try:
            MODES.get(value)
        except CalibenchError as exc:
            raise ValueError(str(exc)) from None
        return value


def task_vocabulary(tokenizer: Any, config: Any, ev: dict[str, Any]) -> Any:
    """The keep set of a cell's evaluation (cached per tokenizer and evaluation settings in this process)."""

    tasks = ",".join(ev["tasks"])
    key = (
        vocab_hash(tokenizer),
        tasks,
        ev.get("limit"),
        ev.get("num_fewshot", 0),
        ev.get("apply_chat_template", False),
        ev.get("offline"),
    )
    if key not in _CACHE:
        _CACHE[key] = collect(
            tokenizer,
            Inputs(tasks=[tasks]),
            model=config,
            limit=ev.get("limit"),
            num_fewshot=ev.get("num_fewshot", 0),
            apply_chat_template=ev.get("apply_chat_template", False),
            offline=ev.get("offline"),
        )
    return _CACHE[key]


def _item_scores(samples: dict[str, list[dict[str, Any]]]) -> dict[str, list[float]]:
    """Every per-item number that scores an item (loglikelihoods, window NLLs), per task."""
    out: dict[str, list[float]] = {}
    for task, items in samples.items():
        values: list[float] = []
        for item in items:
            for key in ("loglikelihoods",):
                values.extend(float(v) for v in item.get(key) or [])
            for key in ("loglikelihood", "nll"):
                if isinstance(item.get(key), (int, float)):
                    values.append(float(item[key]))
        out[task] = values
    return out


def compare(full: Any, pruned: Any) -> dict[str, Any]:
    """Row by row and item by item differences (pruned - full)."""
    before = {(r.task, r.metric): r.value for r in full.rows}
    rows = []
    for r in pruned.rows:
        base = before.get((r.task, r.metric))
        rows.append({"task": r.task, "metric": r.metric, "full": base, "pruned": r.value,
                     "diff": None if base is None else r.value - base})  # fmt: skip
    a, b = _item_scores(full.samples), _item_scores(pruned.samples)
    items = {}
    for task in a:
        pairs = list(zip(a[task], b.get(task, [])))
        items[task] = max((abs(y - x) for x, y in pairs), default=0.0)
    identical = all(r["diff"] == 0 for r in rows) and full.samples == pruned.samples
    return {"rows": rows, "max_abs_item_diff": items, "identical": identical}


def pruned_evaluation(model: Any, tokenizer: Any, config: Any, ev: dict[str, Any], full: Any,
                      run_eval: Any, option: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
    """Prune ``model`` in place to the evaluation's vocabulary, evaluate with ``run_eval``, compare with ``full``."""

    chosen = VocabOption.model_validate(option)
    vocab = task_vocabulary(tokenizer, config, ev)
    state = prune(model, vocab, chosen.mode, tokenizer=tokenizer, keep_dropped=False)
    pruned = run_eval(model)
    diff = compare(full, pruned)
    record = {
        "mode": chosen.mode, "kept": len(vocab.kept), "vocab_size": state.record.vocab_size,
        "tied": state.record.tied, "share": len(vocab.kept) / state.record.vocab_size,
        "memory": state.report.summary() if state.report else None, **diff,
    }  # fmt: skip
    if chosen.mode == "exact-input" and not diff["identical"]:
        changed = [f"{r['task']} {r['metric']} {r['diff']:+.3g}" for r in diff["rows"] if r["diff"]]
        raise CalibenchError("exact-input vocabulary pruning changed the evaluation "
                             f"({', '.join(changed) or 'per-item scores'}): please report this")  # fmt: skip
    return record
