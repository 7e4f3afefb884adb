"""Adaptive evaluation of a study: score items in blocks, stop comparisons once decided (or undecidable).

The unit of a decision is a comparison of two sources within a family
(model x method x n x seq_len x task), as in the report.  Each block of
items (the same positions for every cell of a model, so pairing holds) feeds
every running comparison of its family a test that stays valid under
repeated looks: set-aware where both sources have two or more sets
(:class:`calibench.core.sequential.LookwiseSourceComparison`: the fixed
set-aware test at each planned look, Bonferroni over the looks; a statement
about sources), items-only otherwise
(:class:`calibench.core.sequential.SequentialComparison`, a betting
confidence sequence; a statement about these sets); Holm across each family
at every look (:func:`family_status`).  A comparison stops when decided,
when its futility rule says the cap cannot decide it, or when the task has
no items left; only the cells of running comparisons score the next block.

Everything is replayed from the stored per-item results: :func:`replay`
feeds the blocks every cell has in order, so a resumed study continues
where it stopped, and the report reads the same statuses the run acted on.
Items are identified by their *position* in one seeded shuffle of the task
(:class:`calibench.evaluation.samples.ItemBlock`), stored with each item.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from calibench.core.errors import CalibenchError
from calibench.core.sequential import FUTILE, LookwiseSourceComparison, SequentialComparison, Status, family_status
from calibench.evaluation.kinds.perplexity import PPL_PREFIX
from calibench.inspect.study_task import split_activation_tasks
from calibench.study.cells import POSITION, Cell
from calibench.study.spec import AdaptiveSpec

Samples = dict[tuple[str, str], dict[str, dict[str, Any]]]  # (cell key, task) -> item id -> item


def item_score(task: str, item: dict[str, Any]) -> float | None:
    """The paired unit: a window's mean NLL for perplexity, the 0/1 ``acc`` otherwise (None when missing)."""
    value = item.get("nll") if task.startswith(PPL_PREFIX) else (item.get("metrics") or {}).get("acc")
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)) and math.isfinite(value):
        return float(value)
    return None


@dataclass
class Pair:
    """One comparison of two sources in a family, with the cells (set i of A against set i of B) it reads."""

    family: tuple[Any, ...]  # model, method, n, seq_len, task
    source_a: str
    source_b: str
    cells_a: list[Cell]
    cells_b: list[Cell]
    test: Any  # LookwiseSourceComparison (sets random) or SequentialComparison (items only)
    exhausted: str = ""  # why it stopped for want of items, if it did
    status: Status | None = None

    @property
    def task(self) -> str:
        return str(self.family[-1])

    @property
    def stopped(self) -> bool:
        return bool(self.exhausted) or self.test.stopped

    def cells(self) -> list[Cell]:
        return [*self.cells_a, *self.cells_b]


@dataclass
class State:
    """Where an adaptive study stands: every comparison, and which cell needs which block of which task next."""

    pairs: list[Pair]
    block: int
    cap: int
    needs: dict[str, tuple[int, set[str]]] = field(default_factory=dict)  # cell key -> (block index, tasks)

    @property
    def done(self) -> bool:
        return not self.needs

    def summary(self) -> list[dict[str, Any]]:
        """Every comparison's status, as the report shows it."""
        out = []
        for pair in self.pairs:
            status = pair.status
            model, method, n, seq_len, task = pair.family
            row = {
                "model": model,
                "method": method,
                "n": n,
                "seq_len": seq_len,
                "task": task,
                "source A": pair.source_a,
                "source B": pair.source_b,
                "scope": pair.test.scope,
                "sets": f"{len(pair.cells_a)}+{len(pair.cells_b)}",
            }
            if status is None:
                row.update({"state": "running", "items": 0, "reason": "no block scored yet"})
            else:
                row.update(
                    {
                        "state": status.state,
                        "items": status.items,
                        "difference (A-B)": status.estimate,
                        "CS low": status.low,
                        "CS high": status.high,
                        "anytime p": status.p,
                        "p (Holm)": status.p_adjusted,
                        "reason": pair.exhausted or status.reason,
                    }
                )
            out.append(row)
        return out


def _families(cells: list[Cell], tasks: list[str]) -> dict[tuple[Any, ...], dict[str, list[Cell]]]:
    """The grid's compressed cells by family, each source's cells in set order (noise-floor reruns left out)."""
    out: dict[tuple[Any, ...], dict[str, list[Cell]]] = {}
    for cell in cells:
        if cell.is_dense or cell.perturbation:
            continue
        for task in tasks:
            family = (cell.model, cell.method, cell.n, cell.seq_len, task)
            out.setdefault(family, {}).setdefault(cell.source, []).append(cell)
    for sources in out.values():
        for members in sources.values():
            members.sort(key=lambda c: c.set_index)
    return out


def _new_test(name: str, task: str, sets: int, settings: AdaptiveSpec, cap: int) -> Any:
    """Set-aware with 2+ sets per source (the fixed test at each planned look, Bonferroni over the looks); items
    only otherwise (betting confidence sequence on the set-averaged differences)."""
    if sets >= 2:
        return LookwiseSourceComparison(name, alpha=settings.alpha, cap=cap, block=min(settings.block, cap))
    perplexity = task.startswith(PPL_PREFIX)  # window NLL differences are clipped into a symmetric range
    bound = settings.nll_range if perplexity else 1.0
    return SequentialComparison(
        name,
        alpha=settings.alpha,
        cap=settings.cap,
        block=settings.block,
        lower=-bound,
        upper=bound,
        clip=perplexity,
    )


def pairs_of(
    cells: list[Cell], tasks: list[str], settings: AdaptiveSpec, totals: dict[tuple[str, str], int] | None = None
) -> list[Pair]:
    """Every comparison of the grid: per family, each pair of sources (sorted), set-aware where both have 2+ sets.

    A task with fewer items than the cap (``totals``, known from the first
    block, before any comparison is fed) plans its looks up to its items.
    """
    _, scored = split_activation_tasks(tasks)
    pairs = []
    for family, sources in sorted(_families(cells, scored).items(), key=lambda kv: str(kv[0])):
        names = sorted(sources)
        for i, a in enumerate(names):
            for b in names[i + 1 :]:
                k = min(len(sources[a]), len(sources[b]))
                name = f"{family[1]} {family[-1]}: {a} vs {b}"
                cap = min(settings.cap, (totals or {}).get((str(family[0]), str(family[-1])), settings.cap))
                test = _new_test(name, str(family[-1]), k, settings, cap)
                kept = None if k >= 2 else 1  # set-aware: every set of each source; items only: the first
                pairs.append(Pair(family, a, b, sources[a][:kept], sources[b][:kept], test))
    return pairs


def _positions(samples: Samples, cell: Cell, task: str) -> dict[int, float | None]:
    """Position -> score of a cell's stored items of a task."""
    out: dict[int, float | None] = {}
    for item in samples.get((cell.key, task), {}).values():
        if POSITION in item:
            out[int(item[POSITION])] = item_score(task, item)
    return out


def _block(pair: Pair, scores: dict[str, dict[int, float | None]], start: int, stop: int) -> Any:
    """The block's scores (each source's sets x items set-aware, the vector of differences items-only), or None
    when a cell has not scored the block yet."""
    rows_a = [scores[c.key] for c in pair.cells_a]
    rows_b = [scores[c.key] for c in pair.cells_b]
    positions = range(start, stop)
    if not all(p in row for p in positions for row in (*rows_a, *rows_b)):
        return None
    if any(row[p] is None for p in positions for row in (*rows_a, *rows_b)):
        raise CalibenchError(f"{pair.test.name}: an item without a score at positions {start}-{stop - 1}")
    a = np.array([[row[p] for p in positions] for row in rows_a], dtype=float)
    b = np.array([[row[p] for p in positions] for row in rows_b], dtype=float)
    if isinstance(pair.test, LookwiseSourceComparison):
        return a, b
    return (a - b).mean(axis=0)


def replay(
    cells: list[Cell],
    tasks: list[str],
    settings: AdaptiveSpec,
    samples: Samples,
    done: set[str],
    totals: dict[tuple[str, str], int],
) -> State:
    """Feed every stored block to the comparisons in order, and say which cells need which block next.

    ``done`` holds the keys of cells that finished their first block (a
    comparison with a failed cell stops, saying so); ``totals`` the number of
    items of each (model, task), known once a cell of the model scored its
    first block (until then the cap stands in).
    """
    pairs = pairs_of(cells, tasks, settings, totals)
    state = State(pairs, settings.block, settings.cap)
    scores = {(cell.key, pair.task): _positions(samples, cell, pair.task) for pair in pairs for cell in pair.cells()}
    by_family: dict[tuple[Any, ...], list[Pair]] = {}
    for pair in pairs:
        by_family.setdefault(pair.family, []).append(pair)

    def need(cell: Cell, index: int, task: str) -> None:
        block, wanted = state.needs.get(cell.key, (index, set()))
        if index < block:
            state.needs[cell.key] = (index, {task})
        elif index == block:
            state.needs[cell.key] = (block, wanted | {task})

    for family, members in by_family.items():
        model, task = str(family[0]), str(family[-1])
        total = min(settings.cap, totals.get((model, task), settings.cap))
        index = 0
        while True:
            start, stop = index * settings.block, min((index + 1) * settings.block, total)
            for pair in members:
                if not pair.stopped and not all(c.key in done for c in pair.cells()):
                    pair.exhausted = "a cell of this comparison failed"
                if not pair.stopped and start >= total:
                    pair.exhausted = f"all {total} items of the task used" if total < settings.cap else ""
            running = [p for p in members if not p.stopped]
            if not running or start >= total:
                break
            waiting = False
            for pair in running:
                diffs = _block(pair, {c.key: scores[(c.key, task)] for c in pair.cells()}, start, stop)
                if diffs is None:
                    waiting = True
                    for cell in pair.cells():
                        if not all(p in scores[(cell.key, task)] for p in range(start, stop)):
                            need(cell, index, task)
                    continue
                if isinstance(diffs, tuple):
                    pair.test.feed(*diffs)
                else:
                    pair.test.feed(diffs)
            if waiting:  # the family looks again once every running comparison has the block
                break
            for pair, status in zip(members, family_status([p.test for p in members])):
                if pair.test.items:
                    pair.status = status
            index += 1
    for pair in pairs:  # a comparison stopped for want of items (or a cell) reads as futile, with the reason
        if pair.exhausted and pair.status is not None and not pair.status.stopped:
            s = pair.status
            pair.status = Status(s.name, FUTILE, s.items, s.estimate, s.low, s.high, s.p, s.p_adjusted,
                                 pair.exhausted, s.scope)  # fmt: skip
    return state


def block_range(index: int, settings: AdaptiveSpec) -> tuple[int, int]:
    start = index * settings.block
    return start, min(start + settings.block, settings.cap)
