"""``calibench recommend``: which calibration set for this model and method, chosen within a compute budget.

1. **Build** every candidate's sets through the set-builder registry (the
   same path as ``data build`` and study specs).
2. **Probe** the cost of one full compress + evaluate before spending it: the
   first k decoder layers compressed on the first candidate (the
   reconstruction signal's own work), scaled to all layers, plus an
   evaluation of the dense model on :data:`PROBE_ITEMS` items per task scaled
   to the full item counts.  A budget that cannot pay for the signals and one
   full run is refused here, before anything is written.
3. **Rank** the candidates by a cheap signal (:data:`DEFAULT_SIGNAL` unless
   told; :mod:`calibench.predict.signals`).
4. **Evaluate fully** from the top of the ranking while the remaining budget
   covers the estimated cost of one more run; each run is an ordinary study
   cell (:func:`calibench.study.runner.run_cell`: compress with
   llm-compressor, evaluate), so its numbers are comparable with a study's.
   After the first run the estimate is the measured time.
5. **Pick** the best full result, and say how sure: the signal's validated
   Spearman (from ``--study DIR`` where its signals were computed, or
   :data:`VALIDATED`) and a paired bootstrap CI of the difference between the
   best and the runner-up on their shared items (windows or documents).

The output directory holds the chosen set (``set/``, a normal set
directory) and the card (``card.md``, ``card.json``), written atomically.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from calibench.core.errors import CalibenchError, UnknownNameError
from calibench.core.fsutil import atomic_dir, check_new_output
from calibench.core.settings import DEFAULTS, accepts_settings
from calibench.core.stats import paired_bootstrap_ci, sign_flip_pvalue
from calibench.data.builders import builders, resolve
from calibench.data.calibset import CalibrationSet
from calibench.data.sources import list_sources
from calibench.evaluation import evaluate
from calibench.models import load_tokenizer, model_max_length
from calibench.placement import load_placed
from calibench.predict.card import card_data, render_markdown
from calibench.predict.progress import outer_bar
from calibench.predict.reconstruction import warm_up
from calibench.predict.report import AVERAGE_ACC as REPORT_AVERAGE
from calibench.predict.report import cell_outcomes, outcome_name, validations
from calibench.predict.settings import RecommendSettings, parse_params
from calibench.predict.signals import Probe, compute, get_signal, make_probe, reconstruction_of
from calibench.predict.study_signals import cell_signals, study_cells
from calibench.report.frame import load_frame
from calibench.report.tables import item_score
from calibench.study.cells import Cell
from calibench.study.runner import quiet_libraries, run_cell
from calibench.study.spec import EvalSpec
from calibench.study.store import item_id

#: The signal candidates are ranked by when none is named: the per-token reconstruction error of the first k
#: layers.  On the smollm2-135m grid (examples/choice-study.yaml, 2026-12-02) it was the best signal with a
#: direction known without fitting, over both methods (held-out Spearman with -log ppl 0.63 GPTQ, 0.97 Wanda);
#: a learned-direction signal (outliers.kurtosis did well on GPTQ) cannot be the default for a method no grid
#: measured, and the sum-ratio ``reconstruction`` was weaker (0.30 and 0.80).
DEFAULT_SIGNAL = "reconstruction.token"

#: Validation measured on a grid, shown on the card when no ``--study`` is given: ``validated.json`` beside this
#: module, written by ``tools/validated_table.py`` from the committed study reports (never edited by hand).
#: Keyed by model, then method, each entry with the method parameters and objective it was measured at and, per
#: signal, ``{"spearman": rho, "ci": [low, high], "held_out": rho, "sign": s, "outcome": ..., "cells": n,
#: "study": where}``.  A number measured on one model and setting is not claimed for another: see
#: :func:`known_validation`.
VALIDATED: dict[str, dict[str, dict[str, Any]]] = json.loads(
    resources.files("calibench.predict").joinpath("validated.json").read_text(encoding="utf-8")
)


def known_validation(
    model: str, method: str, params: dict[str, Any], objective: str, signal: str
) -> dict[str, Any] | None:
    """The recorded validation of ``signal`` for exactly this model, method, parameters and objective, if measured."""
    entry = VALIDATED.get(Path(model).name if Path(model).is_dir() else model, {}).get(method)
    if not entry or dict(entry["params"]) != dict(params) or entry["objective"] != objective:
        return None
    return entry["signals"].get(signal)


PROBE_ITEMS = 8  # items (or windows) per task of the timed evaluation probe
AVERAGE_ACC = "average acc"


@dataclass
class FullResult:
    objective: float  # higher is better: -log ppl or average accuracy
    metrics: dict[str, float]  # task -> perplexity or accuracy, as reported
    samples: dict[str, list[dict[str, Any]]]
    seconds: float
    record: dict[str, Any]


@dataclass
class Candidate:
    name: str
    set_index: int
    calib: CalibrationSet
    signal_value: float = math.nan
    signal_seconds: float = 0.0
    rank: int = 0
    full: FullResult | None = None

    @property
    def label(self) -> str:
        return self.name if self.set_index == 0 else f"{self.name}#{self.set_index}"


def _objective(unit: Candidate) -> float:
    """The full evaluation's objective of an evaluated candidate."""
    assert unit.full is not None, f"{unit.label} has no full evaluation"
    return unit.full.objective


@dataclass
class Recommendation:
    chosen: Candidate
    candidates: list[Candidate]  # in ranking order
    signal: str
    sign: int
    objective: str
    validation: dict[str, Any] | None
    comparison: dict[str, Any] | None
    cost: dict[str, Any]
    settings: dict[str, Any]
    out: Path | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def evaluated(self) -> list[Candidate]:
        return [c for c in self.candidates if c.full is not None]


# ----------------------------------------------------------------- checks before any work


def known_candidates() -> list[str]:

    return sorted({n for n in builders() if n != "text"} | set(list_sources()))


def parse_candidates(candidates: str | Sequence[str]) -> list[str]:
    """Candidate names, each resolvable by the set-builder registry; refuses an empty list and duplicates."""

    names = [c.strip() for c in (candidates.split(",") if isinstance(candidates, str) else candidates) if c.strip()]
    if not names:
        raise CalibenchError("no candidates given: pass --candidates with at least one source, e.g. wiki,code,self")
    for name in names:
        if names.count(name) > 1:
            raise CalibenchError(f"candidate '{name}' is given twice: name each candidate once")
        try:
            resolve(name)
        except UnknownNameError:
            raise CalibenchError(
                f"unknown candidate '{name}': known candidates are {', '.join(known_candidates())}, "
                "a .txt/.jsonl/.parquet file, hub:ORG/NAME or mix:A=W,B=W"
            ) from None
    return names


def _eval_spec(
    tasks: str | Sequence[str], limit: int | None, batch_size: int, ppl_seq_len: int | None, ppl_max_windows: int | None
) -> Any:
    from pydantic import ValidationError

    task_list = [t.strip() for t in (tasks.split(",") if isinstance(tasks, str) else tasks) if t.strip()]
    try:
        return EvalSpec(
            tasks=task_list,
            limit=limit,
            batch_size=batch_size,
            ppl_seq_len=ppl_seq_len,
            ppl_max_windows=ppl_max_windows,
        )
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(x) for x in error["loc"])
        message = str(error["msg"]).removeprefix("Value error, ")
        flag = {
            "tasks": "--tasks",
            "limit": "--limit",
            "batch_size": "--batch-size",
            "ppl_seq_len": "--ppl-seq-len",
            "ppl_max_windows": "--ppl-max-windows",
        }.get(where.split(".")[0], where)
        raise CalibenchError(f"{flag}: {message}") from None


def objective_of(tasks: Sequence[str], objective: str = "auto") -> str:
    """The result the choice maximises: a perplexity task (as -log ppl) or the average accuracy."""
    scored = [t for t in tasks if not t.startswith(("ppl:", "act:", "summ:"))]
    ppl = [t for t in tasks if t.startswith("ppl:")]
    if objective == "auto":
        if scored:
            return AVERAGE_ACC
        if ppl:
            return ppl[0]
        raise CalibenchError("--tasks has neither a perplexity task nor an accuracy task to choose a set by")
    if objective == AVERAGE_ACC and scored or objective in ppl:
        return objective
    raise CalibenchError(
        f"--objective {objective} is not among the tasks: use auto, '{AVERAGE_ACC}' or one of "
        f"{', '.join(ppl) or 'the ppl: tasks'}"
    )


def objective_value(objective: str, rows: Sequence[dict[str, Any]]) -> tuple[float, dict[str, float]]:
    """(objective, per-task metric) from a cell's result rows."""
    metrics: dict[str, float] = {}
    for row in rows:
        if row["task"].startswith("ppl:") and row["metric"] == "perplexity":
            metrics[row["task"]] = float(row["value"])
        elif row["metric"] == "acc" and ":" not in row["task"]:
            metrics[row["task"]] = float(row["value"])
    if objective == AVERAGE_ACC:
        accs = [v for t, v in metrics.items() if not t.startswith("ppl:")]
        return (float(sum(accs) / len(accs)) if accs else math.nan), metrics
    value = metrics.get(objective, math.nan)
    return (-math.log(value) if value > 0 else math.nan), metrics


# ----------------------------------------------------------------- cost


def eval_estimate(records: Sequence[Any], limit: int | None, max_windows: int | None) -> float:
    """Seconds of a full evaluation, from a probe's per-task records scaled to the full item counts.

    Each task's probe time is scaled by (items a full run scores) / (items the
    probe scored): a full run scores ``min(available, limit)`` items, and
    perplexity windows are capped by ``max_windows`` (else by ``limit``).
    Fixed costs per task (loading, tokenizing) are scaled too, so before the
    first full run the estimate errs high; after it, the measured time is used.
    """
    total = 0.0
    for record in records:
        if record.status != "ok" or not record.n_evaluated:
            continue
        cap = (max_windows if max_windows is not None else limit) if record.kind == "perplexity" else limit
        full = record.n_total if cap is None else min(record.n_total or cap, cap)
        total += record.seconds * max(1.0, (full or record.n_evaluated) / record.n_evaluated)
    return total


def _minutes(seconds: float) -> str:
    minutes = seconds / 60.0
    return f"{minutes:.2f}" if minutes < 10 else f"{minutes:.1f}"


def _round_up_minutes(seconds: float) -> str:
    """A --budget value (minutes) just above ``seconds``, for the error message."""
    minutes = seconds / 60.0
    step = 0.01 if minutes < 1 else 0.1 if minutes < 10 else 1.0
    return f"{math.ceil(minutes / step + 1e-9) * step:.{2 if step == 0.01 else 1 if step == 0.1 else 0}f}"


# ----------------------------------------------------------------- validation of the signal


def validation_from_study(
    study: str | Path, model: str, method: str, params: dict[str, Any], objective: str
) -> dict[str, dict[str, Any]]:
    """Per signal, what a study measured for this model and method (its report's predictor table), if anything."""

    cells = [
        c
        for c in study_cells(study)
        if c.model == model and c.method_name == method and all(c.params.get(k) == v for k, v in params.items())
    ]
    if not cells:
        return {}
    label = cells[0].method
    frame, _, _ = load_frame(study)
    outcome = REPORT_AVERAGE if objective == AVERAGE_ACC else outcome_name(objective)
    found = validations(cell_outcomes(frame[(frame.model == model) & (frame.method == label)]), cell_signals(study))
    entry = found.get((model, label, outcome))
    if entry is None:
        return {}
    result, cells_count = entry
    out: dict[str, dict[str, Any]] = {}
    for name, v in result.signals.items():
        out[name] = {
            "spearman": v.all_cells.estimate,
            "ci": [v.all_cells.low, v.all_cells.high],
            "held_out": v.held_out_rho,
            "outcome": outcome,
            "cells": v.cells,
            "study": str(study),
            "method_label": label,
            "sign": -1 if v.all_cells.estimate < 0 else 1,
            "chosen": result.chosen_all.signal if result.chosen_all else None,
            "procedure_held_out": result.procedure_held_out,
        }
    return out


# ----------------------------------------------------------------- the paired comparison


def paired_comparison(objective: str, best: Candidate, runner_up: Candidate) -> dict[str, Any] | None:
    """Best minus runner-up on their shared items, with a paired bootstrap CI and a sign-flip p-value.

    For a perplexity objective an item is a window and its score the window's
    mean NLL, negated so that higher is better (the mean difference is the
    log-perplexity gain of the best); for the average accuracy the items of
    every accuracy task are pooled (the mean of pooled item differences
    weighs tasks by their item counts).
    """

    def scores(candidate: Candidate) -> dict[str, float]:
        out: dict[str, float] = {}
        assert candidate.full is not None
        for task, items in candidate.full.samples.items():
            wanted = task == objective if objective != AVERAGE_ACC else not task.startswith(("ppl:", "summ:"))
            if not wanted:
                continue
            for i, item in enumerate(items):
                score = item_score(task, item)
                if score is not None:
                    out[f"{task}|{item_id(item, i)}"] = -score if task.startswith("ppl:") else score
        return out

    a, b = scores(best), scores(runner_up)
    common = sorted(set(a) & set(b))
    if len(common) < 2:
        return None
    import numpy as np

    d = np.array([a[k] for k in common]) - np.array([b[k] for k in common])
    ci = paired_bootstrap_ci(d)
    p = sign_flip_pvalue(d)
    # Both must agree: on a few dozen items the percentile bootstrap is a little anti-conservative, so a CI that
    # just excludes zero beside a permutation p >= 0.05 is reported as borderline, not as a resolved difference.
    return {
        "best": best.label,
        "runner_up": runner_up.label,
        "items": len(common),
        "quantity": "-NLL per window (log-ppl gain)" if objective != AVERAGE_ACC else "accuracy per item (pooled)",
        "difference": ci.estimate,
        "ci": [ci.low, ci.high],
        "p": p,
        "resolved": bool((ci.low > 0 or ci.high < 0) and p < 0.05),
    }


# ----------------------------------------------------------------- the run


def _build(
    names: list[str], model_spec: str, dense: Any, tokenizer: Any, n: int, seq_len: int, sets: int, seed: int, bar: Any
) -> list[Candidate]:
    from calibench.data.builders import build_sets

    out: list[Candidate] = []
    for name in names:
        bar.update(f"building {name}")
        builder, _ = resolve(name)
        runs_model = builder.needs_model or builder.name == "mix"
        built = build_sets(
            name,
            model=dense if runs_model else model_spec,
            tokenizer=tokenizer,
            max_seq_len=model_max_length(model_spec),
            n=n,
            seq_len=seq_len,
            seed=seed,
            sets=sets,
        )
        out.extend(Candidate(name, i, calib) for i, calib in enumerate(built))
        bar.advance()
    return out


def _sign_for(signal: Any, validation: dict[str, dict[str, Any]]) -> int:
    if signal.sign:
        return signal.sign
    known = validation.get(signal.name)
    if known and "sign" in known:
        return int(known["sign"])
    raise CalibenchError(
        f"signal {signal.name} has no known direction: give --study DIR where it was validated, or "
        "a signal with a fixed one (reconstruction, coverage, stats.eval_js)"
    )


def _cell(
    model_spec: str,
    method: str,
    label: str,
    params: dict[str, Any],
    candidate: Candidate,
    n: int,
    seq_len: int,
    seed: int,
    ev: dict[str, Any],
    dtype: str,
    device: str,
) -> Any:

    return Cell(
        model=model_spec,
        method=label,
        method_name=method,
        params=params,
        source=candidate.name,
        source_params={},
        num_sets=1,
        set_index=candidate.set_index,
        n=n,
        seq_len=seq_len,
        seed=seed,
        eval=ev,
        dtype=dtype,
        device=device,
    )


@accepts_settings(RecommendSettings)
def recommend(
    model: str,
    method: str,
    *,
    candidates: str | Sequence[str],
    budget: float,
    params: dict[str, Any] | str | None = None,
    n: int = 16,
    seq_len: int = 128,
    sets: int = 1,
    seed: int = DEFAULTS.seed,
    tasks: str | Sequence[str] = ("ppl:wiki",),
    signal: str | None = None,
    out: str | Path | None = None,
    force: bool = DEFAULTS.force,
    k_layers: int = 2,
    limit: int | None = None,
    batch_size: int = DEFAULTS.batch_size,
    ppl_seq_len: int | None = None,
    ppl_max_windows: int | None = None,
    objective: str = "auto",
    top: int | None = None,
    study: str | Path | None = None,
    heldout_windows: int = 32,
    dtype: str = DEFAULTS.dtype,
    device: str = DEFAULTS.device,
    settings: RecommendSettings | None = None,
) -> Recommendation:
    """Choose a calibration set for ``model`` compressed with ``method`` within ``budget`` minutes; see the module
    docstring.

    Every check that needs no model runs first, so bad input costs a second.
    With ``out`` the chosen set and the card are written there (atomically,
    at the end).  ``settings`` gives the options as one
    :class:`~calibench.predict.settings.RecommendSettings` (what ``calibench
    recommend`` takes; ``params`` as ``KEY=VALUE,...`` text or a dict);
    keywords override its fields.

    ``dtype`` and ``device`` default to ``auto`` (:data:`calibench.core.settings.DEFAULTS`): the first CUDA
    GPU if there is one, else the CPU; float32 on the CPU, the checkpoint's own dtype on a GPU.
    """
    from calibench.compress.methods import make_params, resolve

    started = time.perf_counter()
    if isinstance(params, str):
        params = parse_params(params)
    params = {k: v for k, v in (params or {}).items() if v is not None}
    names = parse_candidates(candidates)
    methods = resolve(method)
    make_params(methods, **params)  # unknown method or parameter: one line, now
    if not any(m.reads_calibration for m in methods):
        raise CalibenchError(
            f"{method} reads no calibration set: every set gives the same checkpoint, so there is nothing to "
            "recommend; compress it with any set (`calibench compress --method "
            f"{method} ...`)"
        )
    ev_spec = _eval_spec(tasks, limit, batch_size, ppl_seq_len, ppl_max_windows)
    goal = objective_of(ev_spec.tasks, objective)
    chosen_signal = get_signal(signal) if signal is not None else None
    if not budget > 0:
        raise CalibenchError(f"--budget must be a positive number of minutes, got {budget:g}")
    for flag, value in (
        ("--n", n),
        ("--seq-len", seq_len),
        ("--sets", sets),
        ("--k-layers", k_layers),
        ("--heldout-windows", heldout_windows),
    ):
        if value < 1:
            raise CalibenchError(f"{flag} must be at least 1, got {value}")
    if top is not None and top < 1:
        raise CalibenchError(f"--top must be at least 1, got {top}")
    if study is not None:
        from calibench.predict.study_signals import _check_study

        _check_study(Path(study))
    if out is not None:
        check_new_output(out, force=force)

    validation = validation_from_study(study, str(model), method, params, goal) if study is not None else {}
    if chosen_signal is None:
        picked = next(iter(validation.values()), {}).get("chosen") if validation else None
        chosen_signal = get_signal(picked or DEFAULT_SIGNAL)
    recorded = known_validation(str(model), method, params, goal, chosen_signal.name) if not validation else None
    if recorded is not None:
        validation = {chosen_signal.name: recorded}
    sign = _sign_for(chosen_signal, validation)
    budget_s = budget * 60.0
    label = "-".join([method, *[f"{k}={v}" for k, v in sorted(params.items())]])
    return _run(
        model=str(model),
        method=method,
        label=label,
        params=params,
        names=names,
        n=n,
        seq_len=seq_len,
        sets=sets,
        seed=seed,
        ev_spec=ev_spec,
        goal=goal,
        signal=chosen_signal,
        sign=sign,
        validation=validation.get(chosen_signal.name),
        budget_s=budget_s,
        out=out,
        force=force,
        k_layers=k_layers,
        top=top,
        heldout_windows=heldout_windows,
        dtype=dtype,
        device=device,
        started=started,
    )


def _run(
    *,
    model: str,
    method: str,
    label: str,
    params: dict[str, Any],
    names: list[str],
    n: int,
    seq_len: int,
    sets: int,
    seed: int,
    ev_spec: Any,
    goal: str,
    signal: Any,
    sign: int,
    validation: dict[str, Any] | None,
    budget_s: float,
    out: str | Path | None,
    force: bool,
    k_layers: int,
    top: int | None,
    heldout_windows: int,
    dtype: str,
    device: str,
    started: float,
) -> Recommendation:
    """The phases of :func:`recommend`, after its checks."""
    import json

    phases: dict[str, float] = {}
    tokenizer = load_tokenizer(model)
    dense = load_placed(model, dtype=dtype, device=device).eval()
    if signal.not_applicable is not None:  # e.g. experts.* on a dense model: refused before any set is built
        reason = signal.not_applicable(Probe(dense, tokenizer, model, heldout=None))  # type: ignore[arg-type]
        if reason is not None:
            raise CalibenchError(f"--signal {signal.name} does not apply: {reason}; choose another --signal")
    with outer_bar("building candidates", len(names)) as bar:
        mark = time.perf_counter()
        units = _build(names, model, dense, tokenizer, n, seq_len, sets, seed, bar)
        phases["build_s"] = time.perf_counter() - mark

    mark = time.perf_counter()
    probe = make_probe(
        dense,
        tokenizer,
        model,
        ev_spec.tasks,
        seq_len,
        heldout_windows=heldout_windows,
        k_layers=k_layers,
        batch_size=ev_spec.batch_size,
        seed=seed,
    )
    with outer_bar("probing the cost", 2) as bar:
        bar.update("compressing the first layers")
        first = units[0]
        warm_up(method, params)
        recon = reconstruction_of(probe, first.calib, method, params)
        bar.advance()
        bar.update("timed evaluation")
        probe_limit = min(PROBE_ITEMS, ev_spec.limit or PROBE_ITEMS)
        windows = min(PROBE_ITEMS, ev_spec.ppl_max_windows or PROBE_ITEMS)
        with quiet_libraries():
            from calibench.inspect.study_task import split_activation_tasks

            _, eval_tasks = split_activation_tasks(ev_spec.tasks)
            probe_eval = evaluate(
                dense,
                eval_tasks,
                tokenizer=tokenizer,
                limit=probe_limit,
                max_windows=windows,
                batch_size=ev_spec.batch_size,
                seq_len=ev_spec.ppl_seq_len,
            )
        bar.advance()
    compress_estimate = recon.compress_seconds * recon.total_layers / recon.k_layers
    evaluation_estimate = eval_estimate(probe_eval.tasks, ev_spec.limit, ev_spec.ppl_max_windows)
    full_estimate = compress_estimate + evaluation_estimate
    phases["probe_s"] = time.perf_counter() - mark

    # the signal of the first unit, timed, stands for the others in the budget check
    mark = time.perf_counter()
    first_value = compute(signal, probe, first.calib, method, params)
    first.signal_value, first.signal_seconds = first_value.value, first_value.seconds
    per_signal = max(first_value.seconds, recon.seconds if signal.group == "reconstruction" else 0.0)
    needed = (time.perf_counter() - started) + per_signal * (len(units) - 1) + full_estimate
    if needed > budget_s:
        raise CalibenchError(
            f"budget {budget_s / 60:g} min is too small: one full evaluation is estimated at "
            f"{_minutes(full_estimate)} min"
            f" (with building, probing and ranking {len(units)} candidate set{'s' if len(units) > 1 else ''}, "
            f"{_minutes(needed)} min); give at least "
            f"--budget {_round_up_minutes(needed)}"
        )
    with outer_bar("ranking by " + signal.name, len(units) - 1) as bar:
        for unit in units[1:]:
            bar.update(unit.label)
            value = compute(signal, probe, unit.calib, method, params)
            unit.signal_value, unit.signal_seconds = value.value, value.seconds
            bar.advance()
    phases["signals_s"] = time.perf_counter() - mark
    ranked = sorted(
        units,
        key=lambda u: (
            not math.isfinite(u.signal_value),
            -sign * u.signal_value if math.isfinite(u.signal_value) else 0.0,
            names.index(u.name),
            u.set_index,
        ),
    )
    for rank, unit in enumerate(ranked, 1):
        unit.rank = rank
    del probe, dense

    ev = ev_spec.model_dump(mode="json")
    measured: list[float] = []
    full_runs: list[dict[str, Any]] = []
    notes: list[str] = []
    with outer_bar("full evaluations", min(len(ranked), top or len(ranked))) as bar:
        for unit in ranked:
            spent = time.perf_counter() - started
            estimate = (sum(measured) / len(measured)) if measured else full_estimate
            if measured and (budget_s - spent < estimate or (top is not None and len(measured) >= top)):
                break
            bar.update(f"{unit.label} (rank {unit.rank})")
            cell = _cell(model, method, label, params, unit, n, seq_len, seed, ev, dtype, device)
            with quiet_libraries():
                outcome = run_cell(cell, unit.calib)
            objective, metrics = objective_value(goal, outcome["rows"])
            unit.full = FullResult(
                objective, metrics, outcome.get("samples") or {}, outcome["seconds"], outcome["record"]
            )
            measured.append(outcome["seconds"])
            full_runs.append({"candidate": unit.label, "seconds": outcome["seconds"]})
            bar.advance()
    phases["full_s"] = sum(measured)
    evaluated = [u for u in ranked if u.full is not None and math.isfinite(u.full.objective)]
    if not evaluated:
        raise CalibenchError(f"no full evaluation gave a finite {goal}: check --tasks")
    best = max(evaluated, key=_objective)
    others = sorted((u for u in evaluated if u is not best), key=lambda u: -_objective(u))
    comparison = paired_comparison(goal, best, others[0]) if others else None
    if not others:
        notes.append("only one candidate fitted the budget: the choice rests on the signal's ranking alone")
    total = time.perf_counter() - started
    cost = {
        **{k: round(v, 3) for k, v in phases.items()},
        "full_runs": full_runs,
        "total_s": round(total, 3),
        "budget_s": round(budget_s, 3),
        "budget_used": round(total / budget_s, 4),
        "estimate": {
            "compress_s": round(compress_estimate, 3),
            "evaluate_s": round(evaluation_estimate, 3),
            "full_s": round(full_estimate, 3),
            "k_layers_compress_s": round(recon.compress_seconds, 3),
            "layers": recon.total_layers,
            "k_layers": recon.k_layers,
        },
        "measured_full_s": round(sum(measured) / len(measured), 3) if measured else None,
    }
    settings = {
        "model": model,
        "method": method,
        "params": params,
        "candidates": names,
        "n": n,
        "seq_len": seq_len,
        "sets": sets,
        "seed": seed,
        "tasks": list(ev_spec.tasks),
        "limit": ev_spec.limit,
        "ppl_seq_len": ev_spec.ppl_seq_len,
        "ppl_max_windows": ev_spec.ppl_max_windows,
        "batch_size": ev_spec.batch_size,
        "k_layers": k_layers,
        "heldout_windows": heldout_windows,
        "top": top,
        "dtype": dtype,
        "device": device,
    }
    result = Recommendation(best, ranked, signal.name, sign, goal, validation, comparison, cost, settings, notes=notes)
    if out is not None:
        data = card_data(result)
        with atomic_dir(out, force=force) as tmp:
            best.calib.save(tmp / "set")
            (tmp / "card.json").write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")
            (tmp / "card.md").write_text(render_markdown(data), encoding="utf-8")
        result.out = Path(out)
    return result
