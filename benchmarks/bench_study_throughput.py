"""Study throughput: calibench's study against a naive script, one fresh process per cell, at equal results.

Runs the same small grid twice in this script and prints how many cells each
side finishes per CPU-hour and per wall-hour, the ratio, and whether the
numbers agree.  The grid: one model x {GPTQ W4 g64, Wanda 50%} x {wiki,
code} x k sets (plus the dense baseline the study always adds, which the
naive side runs too), each cell compressed on n windows of seq_len tokens,
then evaluated on held-out perplexity (``ppl:wiki``) and one lm-eval task
with a small limit.

(a) calibench: ``calibench.study.run_study(spec, tmp, jobs=J)``: J spawned
    single-threaded workers take cells in turn.

(b) naive: ``benchmarks/naive_cell.py`` (torch, transformers, datasets,
    llm-compressor and lm-eval only, no calibench) as a fresh Python process per
    cell, J at a time, each single-threaded (``OMP_NUM_THREADS=1`` and
    ``torch.set_num_threads(1)``), so both sides use the same cores.  Each
    process loads the model, calibrates on the *same token ids* the study used
    (exported from the study's stored sets), runs ``oneshot`` with the recipe
    calibench builds (same scheme, targets, ignore, dampening, activation
    order, no shuffling, same seed), then the same perplexity windows and
    ``simple_evaluate`` on the same task data, limit and batch size.

Both are timed around the run only: wall clock, and CPU time of this process
plus its reaped children (``getrusage``).  What is *not* in either side's time:
exporting the sets, the held-out texts and the lm-eval data for the naive side
(the study builds its sets inside its own time, so this favours the naive
side).  The study runs first, so it also pays the cold page cache.

Agreement is checked per cell: the relative difference of the perplexities,
and the difference of each lm-eval metric (acc, acc_norm), with the largest of
each printed.  Not a test: nothing is asserted; a disagreement is reported.

    python benchmarks/bench_study_throughput.py --sets 2 --limit 20 --out throughput.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

NAIVE_CELL = Path(__file__).with_name("naive_cell.py")
PPL_TOLERANCE = 1e-3  # relative; see docs/throughput.md for why not 0
ACC_TOLERANCE_ITEMS = 1  # an lm-eval metric may differ by at most this many items

SPEC = """name: bench-throughput
models: [{model}]
methods:
  - name: gptq
    params: {{bits: 4, group_size: 64}}
  - name: wanda
    params: {{sparsity: 0.5}}
sources:
{sources}
n: [{n}]
seq_len: [{seq_len}]
seed: {seed}
eval:
  tasks: [ppl:{ppl}, {task}]
  limit: {limit}
  batch_size: {batch_size}
  ppl_seq_len: {ppl_seq_len}
  ppl_max_windows: {ppl_windows}
  offline: true
"""


# ----------------------------------------------------------------------------------------- measuring


class Meter:
    """Wall clock and CPU seconds (this process and its reaped children) between start and stop."""

    def __enter__(self) -> Meter:
        self.load_before = os.getloadavg()[0]
        self.cpu0 = self._cpu()
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.wall = time.perf_counter() - self.t0
        self.cpu = self._cpu() - self.cpu0
        self.load_after = os.getloadavg()[0]

    @staticmethod
    def _cpu() -> float:
        own = resource.getrusage(resource.RUSAGE_SELF)
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)
        return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


# ----------------------------------------------------------------------------------------- (a) calibench


def run_calibench(spec: Path, out: Path, jobs: int) -> tuple[Meter, Any]:
    with Meter() as meter:
        from calibench.study import run_study  # its import is part of its cost, as the naive side's imports are

        summary = run_study(spec, out, progress=False, jobs=jobs)
    if summary.failed:
        raise SystemExit(f"{summary.failed} study cells failed in {out}")
    return meter, summary


# ----------------------------------------------------------------------------------------- exporting for (b)


def study_cells(study: Path) -> list[dict[str, Any]]:
    """Every finished cell of the study: its configuration, set id and metrics ``{task: {metric: value}}``."""
    from calibench.study.store import Store

    store = Store(study)
    try:
        query = "SELECT key, config, set_id, record, seconds FROM cells WHERE status = 'done'"
        cells = {
            key: {
                "key": key,
                "config": json.loads(config),
                "set_id": set_id,
                "seconds": seconds,
                "compress_s": json.loads(record).get("compression", {}).get("wall_time_s", 0.0),
                "metrics": {},
            }
            for key, config, set_id, record, seconds in store.conn.execute(query)
        }
        for row in store.rows():
            cells[row["key"]]["metrics"].setdefault(row["task"], {})[row["metric"]] = row["value"]
    finally:
        store.close()
    return sorted(cells.values(), key=lambda c: label(c["config"]))


def label(config: dict[str, Any]) -> str:
    if config["method"] == "dense":
        return "dense"
    return f"{config['method']} {config['source']}#{config['set_index']}"


def export_lm_eval_data(task: str, folder: Path) -> dict[str, Any]:
    """The task's offline data as parquet files (calibench's mirror of the hub dataset), and the splits of
    lm-eval's YAML that the local copy lacks (switched off, as calibench does offline)."""
    from lm_eval.tasks._yaml_loader import load_yaml

    from calibench.evaluation.lmeval import SPLIT_KEYS
    from calibench.evaluation.mirrors import build_mirror
    from calibench.evaluation.tasks import LM_EVAL_TASKS

    spec = LM_EVAL_TASKS[task]
    mirror = build_mirror(spec.mirror)
    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    for split, dataset in mirror.splits.items():
        files[split] = str(folder / f"{split}.parquet")
        dataset.to_parquet(files[split])
    import lm_eval.tasks

    shipped = Path(lm_eval.tasks.__file__).parent / spec.lm_eval_dir / f"{spec.lm_eval_task}.yaml"
    declared = load_yaml(shipped, resolve_func=False, recursive=True)
    missing = [
        key.removesuffix("_split")
        for key in SPLIT_KEYS
        if key != "fewshot_split" and declared.get(key) is not None and declared[key] not in files
    ]
    return {"name": spec.lm_eval_task, "yaml": str(shipped), "data_files": files, "missing_splits": missing}


def naive_jobs(study: Path, cells: list[dict[str, Any]], args: argparse.Namespace, folder: Path) -> list[Path]:
    """One JSON job per cell for naive_cell.py: the same model directory, calibration token ids, texts, data."""
    from calibench.data.calibset import CalibrationSet
    from calibench.evaluation.heldout import HELDOUT_TEXTS, load_heldout_texts
    from calibench.models import resolve_model_path
    from calibench.study.sets import SETS_DIR

    folder.mkdir(parents=True, exist_ok=True)
    heldout = HELDOUT_TEXTS[args.ppl]
    texts, _ = load_heldout_texts(heldout)
    texts_file = folder / "heldout.json"
    texts_file.write_text(json.dumps(texts))
    task = export_lm_eval_data(args.task, folder / "lm_eval_data")
    task.update({"limit": args.limit, "batch_size": args.batch_size, "num_fewshot": 0})
    paths = []
    for i, cell in enumerate(cells):
        config = cell["config"]
        job: dict[str, Any] = {
            "cell": {"key": cell["key"], "label": label(config)},
            "model_path": resolve_model_path(config["model"]),
            "method": "dense" if config["method"] == "dense" else config["method_name"],
            "params": config["params"],
            "seed": config["seed"],
            "threads": 1,
            "ppl": {
                "texts": str(texts_file),
                "joiner": heldout.joiner,
                "seq_len": args.ppl_seq_len,
                "max_windows": args.ppl_windows,
                "batch_size": args.batch_size,
            },
            "lm_eval": task,
        }
        if cell["set_id"]:
            calib = CalibrationSet.load(study / SETS_DIR / cell["set_id"])
            keep = calib.attention_mask.astype(bool)
            job["calibration"] = {
                "set_id": cell["set_id"],
                "seq_len": calib.seq_len,
                "input_ids": [row[mask].tolist() for row, mask in zip(calib.input_ids, keep)],
            }
        path = folder / f"job{i:02d}.json"
        path.write_text(json.dumps(job))
        paths.append(path)
    return paths


# ----------------------------------------------------------------------------------------- (b) naive


def run_naive(jobs: list[Path], parallel: int, folder: Path) -> tuple[Meter, list[dict[str, Any]]]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # the naive side never sees calibench's source
    env.update({"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"})

    def one(job: Path) -> dict[str, Any]:
        result = folder / f"{job.stem}.result.json"
        with open(folder / f"{job.stem}.log", "w") as log:
            done = subprocess.run(
                [sys.executable, str(NAIVE_CELL), str(job), str(result)],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                check=False,
            )
        if done.returncode != 0:
            raise SystemExit(f"naive cell {job} failed (rc {done.returncode}): see {folder / (job.stem + '.log')}")
        outcome = json.loads(result.read_text())
        if outcome["calibench_imported"]:
            raise SystemExit(f"naive cell {job} imported calibench: it must not")
        return outcome

    with Meter() as meter, ThreadPoolExecutor(max_workers=parallel) as pool:
        results = list(pool.map(one, jobs))
    return meter, results


# ----------------------------------------------------------------------------------------- comparing


def compare(cells: list[dict[str, Any]], naive: list[dict[str, Any]], args: argparse.Namespace) -> list[dict]:
    by_key = {r["cell"]["key"]: r for r in naive}
    rows = []
    for cell in cells:
        theirs = by_key[cell["key"]]
        ours_ppl = cell["metrics"][f"ppl:{args.ppl}"]["perplexity"]
        row = {
            "cell": label(cell["config"]),
            "ppl_calibench": ours_ppl,
            "ppl_naive": theirs["ppl"]["perplexity"],
            "ppl_rel_diff": abs(ours_ppl - theirs["ppl"]["perplexity"]) / ours_ppl,
            "calibench_seconds": {"compress": cell["compress_s"], "total": cell["seconds"]},
            "naive_seconds": theirs["seconds"],
        }
        for metric, value in sorted(cell["metrics"][args.task].items()):
            row[f"{metric}_calibench"] = value
            row[f"{metric}_naive"] = theirs["task"].get(metric)
            row[f"{metric}_diff"] = abs(value - theirs["task"].get(metric, float("nan")))
        rows.append(row)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--sources", default="wiki,code", help="calibration sources, comma-separated")
    ap.add_argument("--sets", type=int, default=2, help="sets per source")
    ap.add_argument("--n", type=int, default=8, help="calibration windows per set")
    ap.add_argument("--seq-len", type=int, default=128, help="calibration window length")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--ppl", default="wiki", help="held-out text for perplexity (ppl:NAME)")
    ap.add_argument("--ppl-seq-len", type=int, default=256)
    ap.add_argument("--ppl-windows", type=int, default=4)
    ap.add_argument("--task", default="arc_easy", help="one lm-eval task with an offline mirror")
    ap.add_argument("--limit", type=int, default=20, help="lm-eval items")
    ap.add_argument("--batch-size", type=int, default=16, help="evaluation batch size (both sides)")
    ap.add_argument("--jobs", type=int, default=2, help="cells in parallel on each side (single-threaded each)")
    ap.add_argument("--keep", type=Path, help="work here and keep everything (default: a temporary directory)")
    ap.add_argument("--out", type=Path, help="also write the numbers as JSON")
    args = ap.parse_args()

    sources = "\n".join(f"  - name: {s}\n    sets: {args.sets}" for s in args.sources.split(","))
    with tempfile.TemporaryDirectory(prefix="bench-throughput-") as tmp:
        root = args.keep or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        spec = root / "spec.yaml"
        spec.write_text(
            SPEC.format(
                model=args.model,
                sources=sources,
                n=args.n,
                seq_len=args.seq_len,
                seed=args.seed,
                ppl=args.ppl,
                task=args.task,
                limit=args.limit,
                batch_size=args.batch_size,
                ppl_seq_len=args.ppl_seq_len,
                ppl_windows=args.ppl_windows,
            )
        )
        print(f"(a) calibench study, jobs={args.jobs} ...", file=sys.stderr, flush=True)
        study_meter, _ = run_calibench(spec, root / "study", args.jobs)
        cells = study_cells(root / "study")
        print(
            f"    {len(cells)} cells, {study_meter.wall:.0f} s; exporting for the naive side ...",
            file=sys.stderr,
            flush=True,
        )
        jobs = naive_jobs(root / "study", cells, args, root / "naive")
        print(f"(b) naive script, {len(jobs)} processes, {args.jobs} at a time ...", file=sys.stderr, flush=True)
        naive_meter, naive = run_naive(jobs, args.jobs, root / "naive")
        rows = compare(cells, naive, args)
    report(args, len(cells), study_meter, naive_meter, rows)


NAIVE_PHASES = ("imports", "load", "compress", "perplexity", "lm_eval", "total")


def breakdown(seconds: dict[str, float]) -> str:
    evaluation = seconds["perplexity"] + seconds["lm_eval"]
    return (
        f"{seconds['imports']:.0f} / {seconds['load']:.0f} / {seconds.get('compress', 0.0):.0f} / "
        f"{evaluation:.0f} / {seconds['total']:.0f}"
    )


def report(args: argparse.Namespace, cells: int, study: Meter, naive: Meter, rows: list[dict[str, Any]]) -> None:
    def per_hour(seconds: float) -> float:
        return cells * 3600 / seconds

    sides = {"calibench study": study, "naive script": naive}
    print(
        f"\n{cells} cells ({cells - 1} compressed + dense): {args.model}, n={args.n}, seq_len={args.seq_len}, "
        f"ppl:{args.ppl} {args.ppl_windows}x{args.ppl_seq_len}, {args.task} limit {args.limit}, "
        f"{args.jobs} single-threaded at a time\n"
    )
    print("| side | wall s | CPU s | cells / wall-hour | cells / CPU-hour | load avg start -> end |")
    print("|---|---:|---:|---:|---:|---|")
    for name, m in sides.items():
        print(
            f"| {name} | {m.wall:.0f} | {m.cpu:.0f} | {per_hour(m.wall):.1f} | {per_hour(m.cpu):.1f} | "
            f"{m.load_before:.1f} -> {m.load_after:.1f} |"
        )
    wall_ratio, cpu_ratio = naive.wall / study.wall, naive.cpu / study.cpu
    print(f"| ratio calibench / naive | | | {wall_ratio:.2f}x | {cpu_ratio:.2f}x | |")

    metrics = sorted({k.removesuffix("_diff") for r in rows for k in r if k.endswith("_diff") and k != "ppl_rel_diff"})
    print(
        "\n| cell | ppl calibench | ppl naive | rel. diff | "
        + " | ".join(f"{m} calibench | {m} naive" for m in metrics)
        + " | calibench s: compress / cell | "
        "naive s: imports / load / compress / eval / process |"
    )
    print("|---|---:|---:|---:|" + "---:|---:|" * len(metrics) + "---|---|")
    for r in rows:
        ours, theirs = r["calibench_seconds"], r["naive_seconds"]
        accs = " | ".join(f"{r[f'{m}_calibench']:.4f} | {r[f'{m}_naive']:.4f}" for m in metrics)
        print(
            f"| {r['cell']} | {r['ppl_calibench']:.4f} | {r['ppl_naive']:.4f} | {r['ppl_rel_diff']:.1e} | "
            f"{accs} | {ours['compress']:.0f} / {ours['total']:.0f} | {breakdown(theirs)} |"
        )
    total = {k: sum(r["naive_seconds"].get(k, 0.0) for r in rows) for k in NAIVE_PHASES}
    print(
        f"| sum | | | |{' | |' * len(metrics)} {sum(r['calibench_seconds']['compress'] for r in rows):.0f} / "
        f"{sum(r['calibench_seconds']['total'] for r in rows):.0f} | {breakdown(total)} |"
    )
    worst_ppl = max(r["ppl_rel_diff"] for r in rows)
    worst_acc = {m: max(r[f"{m}_diff"] for r in rows) for m in metrics}
    acc_tol = ACC_TOLERANCE_ITEMS / args.limit
    agree = worst_ppl <= PPL_TOLERANCE and all(v <= acc_tol + 1e-12 for v in worst_acc.values())
    print(f"\nmax perplexity relative difference: {worst_ppl:.2e} (tolerance {PPL_TOLERANCE:g})")
    for m, v in worst_acc.items():
        print(f"max {m} difference: {v:.4f} (tolerance {acc_tol:.4f}: {ACC_TOLERANCE_ITEMS} item of {args.limit})")
    print(f"results agree: {'yes' if agree else 'NO'}")
    print(f"calibench / naive: {wall_ratio:.2f}x cells per wall-hour, {cpu_ratio:.2f}x cells per CPU-hour (goal >= 3x)")

    if args.out:
        payload = {
            "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "cells": cells,
            "cores": len(os.sched_getaffinity(0)),
            "sides": {
                name: {
                    "wall_s": m.wall,
                    "cpu_s": m.cpu,
                    "cells_per_wall_hour": per_hour(m.wall),
                    "cells_per_cpu_hour": per_hour(m.cpu),
                    "load_before": m.load_before,
                    "load_after": m.load_after,
                }
                for name, m in sides.items()
            },
            "ratio_wall": wall_ratio,
            "ratio_cpu": cpu_ratio,
            "max_ppl_rel_diff": worst_ppl,
            "max_metric_diff": worst_acc,
            "agree": agree,
            "per_cell": rows,
        }
        args.out.write_text(json.dumps(payload, indent=2) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
