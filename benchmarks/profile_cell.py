"""Where a study cell's time goes: each stage of real cells, timed, as a ``--jobs`` worker runs them.

Builds the cells from a small study spec (by default the demo's: SmolLM2-135M,
GPTQ W4 g64 and Wanda 50%, wiki sets of n=8 x 128 tokens, ``ppl:wiki`` with
4 windows of 256 tokens and ``arc_easy`` + ``piqa`` limited to 12 items, batch
size 16, offline) and runs, for each method, ``--cells`` consecutive cells
(sets 0, 1, ...) in one fresh process with torch single-threaded, exactly
what a ``--jobs`` worker does: the set from the study's set cache (built on
first use, outside the timings, as the driver does), ``run_cell`` under
``quiet_libraries``, and the store write.  The first cell of a process pays
what a worker pays once (imports, caches); the next ones show what every
cell pays.

Nothing in calibench or the libraries is changed: the stages are timed by
wrapping library functions for the duration of this script (llm-compressor's
``trace_subgraphs``, ``Subgraph.forward``, the modifiers' calibration hooks
and solves, lm-eval's ``simple_evaluate`` pieces...).  Times are *exclusive*:
a stage's nested stages are subtracted from it, so the rows of a cell add up
to its wall time ("other" is what no wrapper covers).

    python benchmarks/profile_cell.py --out profile.json
    python benchmarks/profile_cell.py --methods wanda --cells 2 --limit 4
    python benchmarks/profile_cell.py --compare before.json after.json

Not a test: nothing is asserted.  Prints one markdown table per method.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import functools
import json
import os
import subprocess
import sys
import tempfile
import time
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

METHODS = {
    "gptq": "{name: gptq, params: {bits: 4, group_size: 64}}",
    "wanda": "{name: wanda, params: {sparsity: 0.5}}",
    "sparsegpt": "{name: sparsegpt, params: {sparsity: 0.5}}",
}

SPEC = """name: profile-cell
models: [{model}]
methods:
  - {method}
sources:
  - name: {source}
    sets: {sets}
n: [{n}]
seq_len: [{seq_len}]
seed: 0
eval:
  tasks: [{tasks}]
  limit: {limit}
  batch_size: {batch_size}
  ppl_seq_len: 256
  ppl_max_windows: 4
  offline: true
"""

# -- timing ------------------------------------------------------------------------------------


class Profiler:
    """Exclusive wall time per stage: a stage's nested stages are subtracted from it."""

    def __init__(self) -> None:
        self.totals: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self._stack: list[list[Any]] = []  # [name, time spent in nested stages]
        self._patches: list[tuple[Any, str, Any]] = []
        self.task: str = ""  # the lm-eval task being scored, for per-task stage names

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        self._stack.append([name, 0.0])
        try:
            yield
        finally:
            elapsed = time.perf_counter() - started
            _, nested = self._stack.pop()
            self.totals[name] = self.totals.get(name, 0.0) + elapsed - nested
            self.calls[name] = self.calls.get(name, 0) + 1
            if self._stack:
                self._stack[-1][1] += elapsed

    def wrap(self, owner: Any, attr: str, name: str | Callable[[], str]) -> None:
        """Time every call of ``owner.attr`` (a module function or a class's method) as stage ``name``."""
        original = owner.__dict__[attr] if isinstance(owner, type) else getattr(owner, attr)
        func = original.__func__ if isinstance(original, staticmethod) else original

        @functools.wraps(func)
        def timed(*args: Any, **kwargs: Any) -> Any:
            with self.stage(name() if callable(name) else name):
                return func(*args, **kwargs)

        setattr(owner, attr, staticmethod(timed) if isinstance(original, staticmethod) else timed)
        self._patches.append((owner, attr, original))

    def unwrap(self) -> None:
        for owner, attr, original in reversed(self._patches):
            setattr(owner, attr, original)
        self._patches.clear()

    def take(self) -> tuple[dict[str, float], dict[str, int]]:
        """The totals since the last take, and reset."""
        totals, calls = self.totals, self.calls
        self.totals, self.calls = {}, {}
        return totals, calls


def instrument(prof: Profiler) -> None:
    """Wrap the functions whose time is a stage (looked up where their callers look them up)."""
    import lm_eval.evaluator
    import lm_eval.loggers.utils
    import lm_eval.models.huggingface
    from llmcompressor.modifiers.gptq import base as gptq_base
    from llmcompressor.modifiers.pruning.sparsegpt import base as sgpt_base
    from llmcompressor.modifiers.pruning.sparsegpt import sgpt_base as sgpt_common
    from llmcompressor.modifiers.pruning.wanda import base as wanda_base
    from llmcompressor.pipelines.sequential import helpers as seq_helpers
    from llmcompressor.pipelines.sequential import pipeline as seq_pipeline
    from lm_eval.api.task import Task

    import calibench.compress
    import calibench.compress.api
    import calibench.compress.fold
    import calibench.data.tokenizer
    import calibench.evaluation.api
    import calibench.evaluation.backends
    import calibench.evaluation.kinds.lm_eval
    import calibench.evaluation.kinds.perplexity
    import calibench.evaluation.lmeval
    import calibench.study.runner
    from calibench.study.store import Store

    runner = calibench.study.runner
    prof.wrap(runner, "fresh_model", "model load")
    prof.wrap(runner, "tokenizer_for", "model load")
    prof.wrap(calibench.data.tokenizer, "vocab_hash", "tokenizer hash (vocab sha256)")

    prof.wrap(calibench.compress, "compress", "compress: checks, record")  # the name the runner imports
    prof.wrap(calibench.compress.api, "_run_stage", "oneshot: set-up, data, finalize (llm-compressor)")
    prof.wrap(seq_pipeline, "trace_subgraphs", "oneshot: tracing (trace_subgraphs)")
    prof.wrap(seq_helpers.Subgraph, "forward", "oneshot: calibration forwards")
    prof.wrap(gptq_base.GPTQModifier, "calibrate_module", "oneshot: calibration hooks (Hessians, norms)")
    prof.wrap(wanda_base.WandaPruningModifier, "calibrate_module", "oneshot: calibration hooks (Hessians, norms)")
    prof.wrap(sgpt_common.SparsityModifierBase, "calibrate_module", "oneshot: calibration hooks (Hessians, norms)")
    prof.wrap(gptq_base, "quantize_weight", "oneshot: solve (GPTQ quantize_weight)")
    prof.wrap(wanda_base, "sparsify_weight", "oneshot: solve (Wanda sparsify_weight)")
    prof.wrap(sgpt_base, "sparsify_weight", "oneshot: solve (SparseGPT sparsify_weight)")
    prof.wrap(calibench.compress.api, "achieved", "compress: achieved sparsity/bits")
    prof.wrap(calibench.compress.fold, "fold_weight_quantization", "fold")
    for module in (calibench.compress.api, calibench.evaluation.api, calibench.evaluation.kinds.lm_eval):
        prof.wrap(module, "library_versions", "library versions (package metadata)")

    prof.wrap(runner, "evaluate", "eval: other (parse, checks, assembly)")
    kinds_ppl = calibench.evaluation.kinds.perplexity
    prof.wrap(kinds_ppl, "load_heldout", "eval: held-out text load")
    prof.wrap(kinds_ppl, "tokenize_joined", "eval: held-out tokenize")
    prof.wrap(kinds_ppl, "score_windows", "eval: perplexity scoring")
    prof.wrap(calibench.evaluation.kinds.lm_eval.LmEvalKind, "prepare", "eval: lm-eval task building: other")
    lmeval = calibench.evaluation.lmeval
    prof.wrap(lmeval, "task_manager", "eval: lm-eval task building: TaskManager (index)")
    prof.wrap(lmeval, "build_mirror", "eval: lm-eval task building: offline mirror data")
    prof.wrap(lmeval, "declared_config", "eval: lm-eval task building: task YAML")
    prof.wrap(lmeval, "build_offline", "eval: lm-eval task building: TaskFactory.build")
    prof.wrap(lmeval, "_describe", "eval: lm-eval task building: sizes (eval_docs)")
    prof.wrap(lm_eval.models.huggingface.HFLM, "__init__", "eval: HFLM wrapper")

    original_run = lmeval.run

    @functools.wraps(original_run)
    def run_task(lm: Any, prepared: Any, *args: Any, **kwargs: Any) -> Any:
        prof.task = prepared.spec.name
        try:
            with prof.stage(f"eval: {prof.task}: lm-eval overhead"):
                return original_run(lm, prepared, *args, **kwargs)
        finally:
            prof.task = ""

    lmeval.run = run_task
    prof._patches.append((lmeval, "run", original_run))
    prof.wrap(Task, "build_all_requests", lambda: f"eval: {prof.task}: requests (build_all_requests)")
    # the environment probe under both names it is called by (lm-eval's evaluator, and the module it comes from)
    prof.wrap(lm_eval.evaluator, "add_env_info", lambda: f"eval: {prof.task}: env info (collect_env)")
    prof.wrap(lm_eval.loggers.utils, "add_env_info", lambda: f"eval: {prof.task}: env info (collect_env)")
    prof.wrap(lmeval, "_git_describe_quietly", lambda: f"eval: {prof.task}: git describe")
    prof.wrap(lm_eval.models.huggingface.HFLM, "_model_call", lambda: f"eval: {prof.task}: model forwards")
    # HFLM's own copy of the tokenizer: backends calls copy.deepcopy, so it gets a copy module whose deepcopy is timed
    shim = types.SimpleNamespace(**vars(copy))
    prof.wrap(shim, "deepcopy", "eval: tokenizer copy for lm-eval (deepcopy)")
    prof._patches.append((calibench.evaluation.backends, "copy", copy))
    calibench.evaluation.backends.copy = shim
    prof.wrap(Store, "record_success", "store write")


# -- one process: one method's cells -------------------------------------------------------------


def _import_stage(prof: Profiler) -> None:
    """What a fresh worker imports before its first cell can compute (otherwise paid inside its stages)."""
    with prof.stage("imports (torch, transformers, llm-compressor, lm-eval)"):
        import llmcompressor  # noqa: F401
        import lm_eval.evaluator  # noqa: F401
        import lm_eval.models.huggingface  # noqa: F401
        import torch  # noqa: F401
        import transformers  # noqa: F401

        import calibench.compress  # noqa: F401
        import calibench.study.runner  # noqa: F401


def profile_method(args: argparse.Namespace, method: str) -> dict[str, Any]:
    """Run ``args.cells`` cells of ``method`` in this process; each cell's stages, calls and wall time."""
    prof = Profiler()
    started = time.perf_counter()
    _import_stage(prof)
    imports = time.perf_counter() - started  # paid by the first cell of a worker
    import torch

    from calibench.core import progress as inner_progress
    from calibench.study.cells import expand
    from calibench.study.runner import base_model, quiet_libraries, run_cell, tokenizer_for
    from calibench.study.sets import sets_for
    from calibench.study.spec import load_spec
    from calibench.study.store import Store

    torch.set_num_threads(args.threads)
    inner_progress.set_enabled(False)
    clear = _cache_clearer() if args.clear_caches else None
    cells_out = []
    with tempfile.TemporaryDirectory() as tmp:
        spec_path = Path(tmp) / "spec.yaml"
        spec_path.write_text(
            SPEC.format(
                model=args.model,
                method=METHODS[method],
                source=args.source,
                sets=args.cells,
                n=args.n,
                seq_len=args.seq_len,
                tasks=", ".join(args.tasks.split(",")),
                limit=args.limit,
                batch_size=args.batch_size,
            )  # fmt: skip
        )
        cells = [c for c in expand(load_spec(spec_path)) if not c.is_dense][: args.cells]
        store = Store(Path(tmp) / "study")
        with quiet_libraries():  # the driver builds the sets once, before any worker runs (not timed)
            sets_for(cells[0], store, tokenizer_for(cells[0].model), base_model)
        instrument(prof)
        try:
            for index, cell in enumerate(cells):
                if clear is not None:
                    clear()
                started = time.perf_counter()
                with prof.stage("other (cell bookkeeping)"):
                    with prof.stage("calibration set (load, verify)"), quiet_libraries():
                        calib = sets_for(cell, store, tokenizer_for(cell.model), base_model)[cell.set_index]
                    with quiet_libraries():
                        outcome = run_cell(cell, calib)
                    store.record_success(cell, outcome["rows"], calib.set_id, outcome["record"], outcome["seconds"],
                                         outcome.get("samples"))  # fmt: skip
                wall = time.perf_counter() - started + (imports if index == 0 else 0.0)
                totals, calls = prof.take()
                cells_out.append({
                    "cell": index + 1, "describe": cell.describe(), "wall_s": wall, "stages": totals, "calls": calls,
                    "rows": outcome["rows"],
                })  # fmt: skip
                print(f"[{method}] cell {index + 1}: {wall:.1f} s", file=sys.stderr, flush=True)
        finally:
            prof.unwrap()
            store.close()
    return {"method": method, "threads": torch.get_num_threads(), "cells": cells_out}


def _cache_clearer() -> Callable[[], None] | None:
    """calibench's per-process evaluation caches cleared before every cell (``--clear-caches``)."""
    try:
        from calibench.evaluation.cache import clear_caches
    except ImportError:  # a calibench without them
        return None
    return clear_caches


# -- reporting ----------------------------------------------------------------------------------


def table(result: dict[str, Any]) -> str:
    """One markdown table per method: a row per stage, a column per cell (seconds, share of the cell)."""
    cells = result["cells"]
    names: list[str] = []
    for cell in cells:
        names += [n for n in cell["stages"] if n not in names]
    first_seen = {n: i for i, n in enumerate(names)}
    names.sort(key=lambda n: (-max(c["stages"].get(n, 0.0) for c in cells), first_seen[n]))
    head = "| stage | " + " | ".join(f"cell {c['cell']} s | share" for c in cells) + " |"
    rule = "|---|" + "---:|---:|" * len(cells)
    lines = [head, rule]
    for name in names:
        values = []
        for c in cells:
            s = c["stages"].get(name, 0.0)
            values.append(f"{s:.2f} | {100 * s / c['wall_s']:.1f}%")
        lines.append(f"| {name} | " + " | ".join(values) + " |")
    lines.append("| **cell wall time** | " + " | ".join(f"**{c['wall_s']:.2f}** | 100%" for c in cells) + " |")
    return "\n".join(lines)


def compare(before: dict[str, Any], after: dict[str, Any]) -> str:
    """Two ``--out`` files side by side: per method, a row per stage, seconds of each cell before and after."""
    out = []
    for old, new in zip(before["results"], after["results"]):
        runs = [("before", c) for c in old["cells"]] + [("after", c) for c in new["cells"]]
        names: list[str] = []
        for _, cell in runs:
            names += [n for n in cell["stages"] if n not in names]
        names.sort(key=lambda n: -max(c["stages"].get(n, 0.0) for _, c in runs))
        out.append(f"### {old['method']}\n")
        out.append("| stage | " + " | ".join(f"{when} cell {c['cell']}" for when, c in runs) + " |")
        out.append("|---|" + "---:|" * len(runs))
        for name in names:
            values = [c["stages"].get(name, 0.0) for _, c in runs]
            if max(values) >= 0.005:
                out.append(f"| {name} | " + " | ".join(f"{v:.2f}" for v in values) + " |")
        out.append("| **cell wall time** | " + " | ".join(f"**{c['wall_s']:.1f}**" for _, c in runs) + " |\n")
    return "\n".join(out)


def report(results: list[dict[str, Any]], args: argparse.Namespace) -> str:
    out = []
    for result in results:
        out.append(f"### {result['method']} ({result['threads']} thread, {args.cells} consecutive cells, "
                   f"{result['cells'][0]['describe']} ...)\n")  # fmt: skip
        out.append(table(result) + "\n")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--methods", default="gptq,wanda", help=f"comma-separated, of {', '.join(METHODS)}")
    ap.add_argument("--cells", type=int, default=2, help="consecutive cells per method (sets 0, 1, ...)")
    ap.add_argument("--source", default="wiki")
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--tasks", default="ppl:wiki,arc_easy,piqa")
    ap.add_argument("--limit", type=int, default=12)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (a --jobs worker's share)")
    ap.add_argument(
        "--clear-caches",
        action="store_true",
        help="clear calibench's per-process caches before every cell (each cell pays them again)",
    )
    ap.add_argument("--out", type=Path, help="write every cell's stages as JSON here")
    ap.add_argument("--compare", nargs=2, type=Path, metavar=("BEFORE", "AFTER"),
                    help="print two --out files side by side and exit")  # fmt: skip
    ap.add_argument("--one", help=argparse.SUPPRESS)  # internal: run this method here, print JSON
    args = ap.parse_args()

    if args.compare:
        print(compare(*(json.loads(p.read_text()) for p in args.compare)))
        return

    if args.one:
        print(json.dumps(profile_method(args, args.one)))
        return
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise SystemExit(f"unknown method(s) {unknown}: use {', '.join(METHODS)}")
    results = []
    for method in methods:  # a fresh process per method: its first cell is a new worker's first cell
        argv = [sys.executable, __file__, *sys.argv[1:], "--one", method]  # (--out is the parent's)
        done = subprocess.run(argv, stdout=subprocess.PIPE, text=True, check=True)
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    meta = {
        "command": " ".join(["python", "benchmarks/profile_cell.py", *sys.argv[1:]]),
        "cpus": os.cpu_count(),
        "load_after": os.getloadavg()[0],
        "settings": {k: v for k, v in vars(args).items() if k not in ("out", "one")},
    }
    print(report(results, args))
    if args.out is not None:
        args.out.write_text(json.dumps({"meta": meta, "results": results}, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
