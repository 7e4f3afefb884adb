"""Study throughput: one process using every core vs ``--jobs N`` single-threaded workers.

Runs the same small grid (dense + GPTQ W4 g64 and Wanda 50% on k wiki sets,
perplexity plus two limited zero-shot tasks) twice into fresh directories, in
this script, and prints the wall time of each and the ratio.  The first run is
``jobs=1`` with torch's default thread count (all cores); the second is
``jobs=N`` with cores shared equally.  Not a test: nothing is asserted.

    python benchmarks/bench_study_jobs.py --jobs 2 --sets 2
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

SPEC = """name: bench-jobs
models: [{model}]
methods:
  - name: gptq
    params: {{bits: 4, group_size: 64}}
  - name: wanda
    params: {{sparsity: 0.5}}
sources:
  - name: wiki
    sets: {sets}
n: [8]
seq_len: [128]
eval:
  tasks: [ppl:wiki, arc_easy, piqa]
  limit: 20
  batch_size: 16
  ppl_seq_len: 256
  ppl_max_windows: 4
  offline: true
"""


def timed_run(spec: Path, out: Path, jobs: int) -> float:
    from calibench.study import run_study

    started = time.perf_counter()
    summary = run_study(spec, out, progress=False, jobs=jobs)
    seconds = time.perf_counter() - started
    if summary.failed:
        raise SystemExit(f"{summary.failed} cells failed in {out}")
    return seconds


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--sets", type=int, default=2)
    ap.add_argument("--jobs", type=int, default=2)
    args = ap.parse_args()

    import torch

    from calibench.study.executors import threads_per_worker, usable_cores

    with tempfile.TemporaryDirectory() as tmp:
        spec = Path(tmp) / "spec.yaml"
        spec.write_text(SPEC.format(model=args.model, sets=args.sets))
        cells = 1 + 2 * args.sets
        threads = torch.get_num_threads()
        one = timed_run(spec, Path(tmp) / "one", jobs=1)
        many = timed_run(spec, Path(tmp) / "many", jobs=args.jobs)
    print(f"{cells} cells on {usable_cores()} cores ({os.getloadavg()[0]:.1f} load at the end)")
    print(f"  jobs=1 ({threads} threads): {one:7.1f} s  ({one / cells:.1f} s/cell)")
    print(
        f"  jobs={args.jobs} ({threads_per_worker(args.jobs)} thread(s) each): "
        f"{many:7.1f} s  ({many / cells:.1f} s/cell)"
    )
    print(f"  speed-up: {one / many:.2f}x")


if __name__ == "__main__":
    main()
