"""Benchmark: COLA stage-3 selection (streamed projection + k-means on 64-d) vs a straightforward implementation.

The activations are *simulated*: random per-layer sequence means of a
realistic width (default 30 layers x 576, SmolLM2-135M), drawn batch by batch
from a seeded mixture of clusters, so both implementations see identical data
and the model's forward pass (the same for both) is left out.

* ``ours``: each batch of per-layer means is L2-normalised and randomly
  projected as it arrives (``RandomProjection.reduce``), only the (pool x dim)
  features are kept, then ``kmeans_select`` (sklearn k-means, n_init 10, on
  dim=64) picks the members nearest the centroids;
* ``baseline``: all full-width normalised concatenated features in memory,
  sklearn ``KMeans(n_clusters=k, n_init=10)`` on them, nearest member per
  centroid.

Each runs in its own process so its peak RSS (``ru_maxrss``) is its own; the
baseline process also measures the coverage (mean distance from pool points to
the nearest selected sample) of both selections in the *full-width* space.
Timings are wall clock on a shared machine: the load average is printed with
them.  Never a timed assert.

    python benchmarks/bench_curation_selection.py [--pool 2000 --k 128 --layers 30 --width 576]
    python benchmarks/bench_curation_selection.py --pool 10000 --only ours   # bounded memory at 10k
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np

BATCH = 16


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def batches(pool: int, layers: int, width: int, clusters: int, seed: int):
    """Yield (start, [layer means (B, width) float32 tensors]) for the whole pool, deterministically."""
    import torch

    centers_rng = np.random.default_rng(seed)
    centers = centers_rng.standard_normal((layers, clusters, width)).astype(np.float32)
    for start in range(0, pool, BATCH):
        rng = np.random.default_rng([seed, start])
        b = min(BATCH, pool - start)
        which = rng.integers(0, clusters, b)
        means = []
        for layer in range(layers):
            x = centers[layer][which] + 0.8 * rng.standard_normal((b, width)).astype(np.float32)
            means.append(torch.nn.functional.normalize(torch.from_numpy(x), dim=1))
        yield start, means


def run_ours(args) -> dict:
    from calibench.curate.projection import RandomProjection
    from calibench.curate.selection import kmeans_select

    base = rss_mb()
    t0 = time.perf_counter()
    proj = RandomProjection([args.width] * args.layers, args.dim, args.seed)
    feats = np.zeros((args.pool, args.dim), dtype=np.float32)
    for start, means in batches(args.pool, args.layers, args.width, args.clusters, args.seed):
        feats[start : start + len(means[0])] = proj.reduce(means).numpy()
    t1 = time.perf_counter()
    sel = kmeans_select(feats, args.k, seed=args.seed, n_init=10)
    t2 = time.perf_counter()
    return {
        "impl": "ours",
        "capture_project_s": t1 - t0,
        "select_s": t2 - t1,
        "total_s": t2 - t0,
        "peak_rss_mb": rss_mb(),
        "rss_before_mb": base,
        "features_mb": feats.nbytes / 2**20,
        "indices": sel.indices,
        "iterations": sel.iterations,
    }


def run_baseline(args) -> dict:
    import torch
    from sklearn.cluster import KMeans

    from calibench.curate.metrics import coverage

    base = rss_mb()
    t0 = time.perf_counter()
    full = np.zeros((args.pool, args.layers * args.width), dtype=np.float32)
    for start, means in batches(args.pool, args.layers, args.width, args.clusters, args.seed):
        full[start : start + len(means[0])] = (torch.cat(means, dim=1) / np.sqrt(args.layers)).numpy()
    t1 = time.perf_counter()
    km = KMeans(n_clusters=args.k, n_init=10, random_state=args.seed).fit(full)
    # nearest member per centroid the way a scikit-learn user would: distances to the centres (pool x k)
    nearest = km.transform(full).argmin(0).tolist()
    t2 = time.perf_counter()
    out = {
        "impl": "baseline",
        "capture_project_s": t1 - t0,
        "select_s": t2 - t1,
        "total_s": t2 - t0,
        "peak_rss_mb": rss_mb(),
        "rss_before_mb": base,
        "features_mb": full.nbytes / 2**20,
        "indices": sorted(set(nearest)),
        "iterations": int(km.n_iter_),
    }
    if args.ours_indices:
        ours = json.loads(args.ours_indices)
        out["coverage_full_space"] = {
            "baseline": coverage(full, full[out["indices"]]),
            "ours": coverage(full, full[ours]),
        }
        rng = np.random.default_rng(0)
        out["coverage_full_space"]["random (mean of 5)"] = float(
            np.mean([coverage(full, full[rng.choice(args.pool, args.k, replace=False)]) for _ in range(5)])
        )
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pool", type=int, default=2000)
    ap.add_argument("--k", type=int, default=128)
    ap.add_argument("--layers", type=int, default=30)
    ap.add_argument("--width", type=int, default=576)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--clusters", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", choices=["ours", "baseline"], default=None)
    ap.add_argument("--child", choices=["ours", "baseline"], default=None)
    ap.add_argument("--ours-indices", default=None)
    args = ap.parse_args()
    if args.child:
        import torch  # noqa: F401  (imports are not part of either measurement)
        from sklearn.cluster import KMeans  # noqa: F401

        import calibench.curate.metrics
        import calibench.curate.selection  # noqa: F401

        result = run_ours(args) if args.child == "ours" else run_baseline(args)
        print(json.dumps(result))
        return

    def child(impl: str, extra: list[str] | None = None) -> dict:
        cmd = [
            sys.executable,
            __file__,
            "--child",
            impl,
            "--pool",
            str(args.pool),
            "--k",
            str(args.k),
            "--layers",
            str(args.layers),
            "--width",
            str(args.width),
            "--dim",
            str(args.dim),
            "--clusters",
            str(args.clusters),
            "--seed",
            str(args.seed),
            *(extra or []),
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
        return json.loads(proc.stdout.strip().splitlines()[-1])

    print(
        f"pool {args.pool}, k {args.k}, {args.layers} layers x {args.width} (simulated activations), dim {args.dim}; "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs",
        flush=True,
    )
    results = {}
    if args.only != "baseline":
        results["ours"] = child("ours")
    if args.only != "ours":
        extra = ["--ours-indices", json.dumps(results["ours"]["indices"])] if "ours" in results else []
        results["baseline"] = child("baseline", extra)
    for name, r in results.items():
        print(
            f"{name:9s} capture+project {r['capture_project_s']:7.2f}s  select {r['select_s']:7.2f}s  total "
            f"{r['total_s']:7.2f}s  features {r['features_mb']:8.1f} MB  peak RSS {r['peak_rss_mb']:7.0f} MB "
            f"(before {r['rss_before_mb']:.0f} MB)  k-means iterations {r['iterations']}"
        )
    if len(results) == 2:
        o, b = results["ours"], results["baseline"]
        b_rss, o_rss = b["peak_rss_mb"] - b["rss_before_mb"], o["peak_rss_mb"] - o["rss_before_mb"]
        print(
            f"ratio baseline/ours: time {b['total_s'] / o['total_s']:.1f}x, "
            f"selection step {b['select_s'] / o['select_s']:.1f}x, "
            f"peak RSS above start {b_rss / max(o_rss, 1):.1f}x, "
            f"feature memory {b['features_mb'] / o['features_mb']:.0f}x"
        )
        print(
            "coverage in the full-width space (lower is better):",
            ", ".join(f"{k} {v:.4f}" for k, v in b.get("coverage_full_space", {}).items()),
        )
        print(f"selections overlap: {len(set(o['indices']) & set(b['indices']))} of {args.k}")
    print(f"load average at end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
