"""Peak host memory of a command and all its descendants (workers included), sampled every 50 ms.

``ru_maxrss`` (what ``/usr/bin/time`` prints) is the largest *single*
process, which hides a model copy per worker; this sums the resident memory
of the whole process tree at each sample and reports the largest sum, plus
the largest single process.

    python benchmarks/peak_memory.py -- calibench study run spec.yaml --out DIR --jobs 2
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import psutil


def tree_rss(root: psutil.Process) -> tuple[int, int]:
    """Sum and max of resident set sizes over ``root`` and its descendants, in bytes."""
    procs = [root]
    try:
        procs += root.children(recursive=True)
    except psutil.NoSuchProcess:
        return 0, 0
    sizes = []
    for proc in procs:
        try:
            sizes.append(proc.memory_info().rss)
        except psutil.NoSuchProcess:
            continue
    return sum(sizes), max(sizes, default=0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--interval", type=float, default=0.05)
    parser.add_argument("--json", help="write {peak_tree_mb, peak_single_mb, seconds, rc} here")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    started = time.perf_counter()
    child = subprocess.Popen(command)
    root = psutil.Process(child.pid)
    peak_tree = peak_single = 0
    while child.poll() is None:
        total, largest = tree_rss(root)
        peak_tree, peak_single = max(peak_tree, total), max(peak_single, largest)
        time.sleep(args.interval)
    result = {
        "peak_tree_mb": round(peak_tree / 2**20),
        "peak_single_mb": round(peak_single / 2**20),
        "seconds": round(time.perf_counter() - started, 1),
        "rc": child.returncode,
    }
    print(json.dumps(result), file=sys.stderr)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh)
    return child.returncode


if __name__ == "__main__":
    sys.exit(main())
