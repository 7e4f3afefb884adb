"""calibench's compress() against bare llm-compressor oneshot(): same model, set, recipe, in one run.

For each method (GPTQ W4 g64 and Wanda 50% by default) the two sides run
interleaved, ``--reps`` times each, every run on a freshly loaded model
(loaded before the clock starts):

* **calibench**: ``calibench.compress.compress(model, calib, method, tokenizer=..., seed=...)``,
  everything it does inside the clock: validation, the tokenizer check,
  ``to_hf_dataset()``, oneshot, ``achieved()``, the masks, the record;
* **bare**: ``torch.manual_seed(seed)`` then ``oneshot(model=..., dataset=ds,
  recipe=build_recipe(...), num_calibration_samples=n, max_seq_length=seq_len,
  shuffle_calibration_samples=False, processor=tokenizer)`` with the same HF
  Dataset (``calib.to_hf_dataset()``, built once, outside the clock: a bare
  user has their dataset already) and the recipe built inside the clock.

The order alternates (A B, B A, A B, ...) so slow drift of the machine's load
hits both sides alike, after one untimed warm-up oneshot (Wanda on two short
windows: the first oneshot in a process pays lazy imports and caches).

Printed, for wall time and for process CPU time (with ``--threads 1`` the
CPU clock is far less sensitive to other jobs on a shared machine):

* side by side: median per side, the ratio of the medians, and the min..max
  of the per-pair ratios;
* within each calibench run: its whole ``compress()`` over the ``oneshot``
  call inside it.  Both parts run under the same load, so this is the steady
  estimate of calibench's overhead on a busy machine (it assumes, and the
  identical weights support, that calibench's oneshot call does the same work
  as the bare one);
* whether the compressed state dicts are identical (``torch.equal`` per
  tensor, first run of each side) and whether each side is deterministic
  across its reps;
* where calibench's extra time goes: each helper of
  ``calibench.compress.api`` timed inside the calibench runs by thin
  wrappers (microseconds each).

``--import-time`` (default on) adds the import cost of calibench's compress
path once torch, transformers and llm-compressor are loaded (a subprocess);
``--cli`` adds one ``calibench compress`` subprocess per method (its wall time
includes imports, the model load and the save, so it is reported beside, not
against, the in-process numbers).

    python benchmarks/bench_compress_overhead.py --methods gptq,wanda --reps 3 --n 16 --seq-len 256 [--json OUT]

Numbers depend on the machine and its load; the ratio is what to read.  Not a
test: nothing is asserted.  The target is calibench/bare <= 1.05.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("LLM_COMPRESSOR_LOG_LEVEL", "WARNING")  # it logs every module at INFO otherwise

METHODS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "gptq": ("gptq W4 g64", "gptq", {"bits": 4, "group_size": 64}),
    "wanda": ("wanda 50%", "wanda", {"sparsity": 0.5}),
    "sparsegpt": ("sparsegpt 50%", "sparsegpt", {"sparsity": 0.5}),
    "rtn": ("rtn W4 g64", "rtn", {"bits": 4, "group_size": 64}),
}

# The helpers of calibench.compress.api that run inside compress(), timed by wrappers.
# Names missing from the installed calibench are skipped (and reported as absent).
API_HELPERS = (
    "_load",
    "check_causal_lm",
    "check_scheme_runnable",
    "check_scheme_fits",
    "resolve_group_size",
    "check_structure",
    "_check_set_fits_model",
    "_head_name",
    "_run_stage",
    "_zero_masks",
    "_reapply_masks",
    "achieved",
    "_peak_memory_mb",
    "_library_versions",
)


class Timings:
    """Wraps module attributes with timers; seconds accumulate per name for the current run."""

    def __init__(self) -> None:
        self.current: dict[str, float] = defaultdict(float)
        self._saved: list[tuple[Any, str, Any]] = []

    def wrap(self, owner: Any, name: str, label: str | None = None) -> bool:
        original = getattr(owner, name, None)
        if original is None:
            return False
        key = label or name
        current = self.current

        def timed(*args: Any, **kwargs: Any) -> Any:
            started, cpu = time.perf_counter(), time.process_time()
            try:
                return original(*args, **kwargs)
            finally:
                current[key] += time.perf_counter() - started
                current[key + ":cpu"] += time.process_time() - cpu

        self._saved.append((owner, name, original))
        setattr(owner, name, timed)
        return True

    def take(self) -> dict[str, float]:
        out = dict(self.current)
        self.current.clear()
        return out

    def restore(self) -> None:
        for owner, name, original in reversed(self._saved):
            setattr(owner, name, original)
        self._saved.clear()


def snapshot(model: Any) -> dict[str, Any]:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def compare(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Identical? Otherwise which tensors differ and by how much."""
    import torch

    only_a, only_b = sorted(set(a) - set(b)), sorted(set(b) - set(a))
    differing = []
    worst = 0.0
    for key in sorted(set(a) & set(b)):
        x, y = a[key], b[key]
        if x.shape != y.shape or x.dtype != y.dtype:
            differing.append(key)
            continue
        if not torch.equal(x, y):
            differing.append(key)
            if x.is_floating_point():
                worst = max(worst, float((x.float() - y.float()).abs().max()))
    return {
        "identical": not (only_a or only_b or differing),
        "tensors": len(set(a) & set(b)),
        "only_calibench": only_a[:5],
        "only_bare": only_b[:5],
        "differing": differing[:10],
        "n_differing": len(differing),
        "max_abs_diff": worst,
    }


def import_overhead() -> dict[str, float]:
    """Seconds to import calibench's compress path once torch, transformers and llm-compressor are loaded."""
    code = (
        "import time, json; t0 = time.perf_counter(); "
        "import torch, transformers, datasets; from llmcompressor import oneshot; t1 = time.perf_counter(); "
        "import calibench.compress, calibench.compress.api, calibench.data.calibset, calibench.models; "
        "t2 = time.perf_counter(); print(json.dumps({'libraries_s': t1 - t0, 'calibench_extra_s': t2 - t1}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def cli_run(model: str, calib_dir: Path, method: str, params: dict[str, Any], seed: int) -> dict[str, Any]:
    flags = []
    for key, value in params.items():
        flags += [f"--{key.replace('_', '-')}", str(value)]
    exe = Path(sys.executable).with_name("calibench")
    cmd = [
        str(exe) if exe.exists() else "calibench",
        "compress",
        "--model",
        model,
        "--calib",
        str(calib_dir),
        "--method",
        method,
        "--seed",
        str(seed),
        *flags,
    ]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "ckpt"
        started = time.perf_counter()
        subprocess.run([*cmd, "--out", str(out)], check=True, capture_output=True, text=True)
        wall = time.perf_counter() - started
        record = json.loads((out / "calibench.json").read_text())
    return {"wall_s": wall, "record_wall_time_s": record["wall_time_s"]}


def source_state() -> dict[str, Any]:
    """The commit and whether calibench's compress sources differ from it (others may edit the tree meanwhile)."""
    root = Path(__file__).resolve().parents[1]

    def git(*cmd: str) -> str:
        try:
            return subprocess.run(["git", *cmd], cwd=root, capture_output=True, text=True, check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return ""

    return {
        "commit": git("rev-parse", "HEAD"),
        "compress_dirty": bool(git("status", "--porcelain", "src/calibench/compress")),
    }


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--methods", default="gptq,wanda", help=f"comma-separated, of {', '.join(METHODS)}")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads for both sides (default: torch's own); 1 is often faster on a shared, busy machine",
    )
    ap.add_argument(
        "--warmup",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="one untimed bare Wanda oneshot on 2 short windows first (lazy imports, first-call caches)",
    )
    ap.add_argument(
        "--import-time",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="measure calibench's extra import time in a subprocess (~the cost of importing llm-compressor)",
    )
    ap.add_argument("--cli", action="store_true", help="also time one `calibench compress` subprocess per method")
    ap.add_argument("--json", type=Path, default=None, help="write all numbers here")
    args = ap.parse_args()
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown or args.reps < 1:
        raise SystemExit(
            f"unknown method(s) {unknown} (known: {', '.join(METHODS)})" if unknown else "--reps must be >= 1"
        )

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from llmcompressor import oneshot

    import calibench.compress.api as api
    from calibench.compress import compress
    from calibench.compress.methods import build_recipe, ignore_pattern, make_params, resolve
    from calibench.data.builders import build_sets
    from calibench.data.calibset import CalibrationSet
    from calibench.models import load_model, load_tokenizer

    started_all = time.perf_counter()
    source = source_state()  # what was imported just now
    tokenizer = load_tokenizer(args.model)
    calib = build_sets("wiki", model=args.model, n=args.n, seq_len=args.seq_len, seed=args.seed)[0]
    dataset = calib.to_hf_dataset()  # the bare side's dataset: the same rows calibench hands to oneshot
    print(
        f"calibench at {source['commit'][:10] or '?'}{' (compress/ edited)' if source['compress_dirty'] else ''}; "
        f"{calib!r}, {calib.num_tokens} tokens; {torch.get_num_threads()} torch threads; "
        f"load average {os.getloadavg()[0]:.2f}",
        flush=True,
    )

    timings = Timings()
    absent = [name for name in API_HELPERS if not timings.wrap(api, name)]
    timings.wrap(CalibrationSet, "to_hf_dataset")
    if absent:
        print(f"not in this calibench's compress.api (not timed): {', '.join(absent)}", flush=True)

    def fresh_model() -> Any:
        model = load_model(args.model, dtype="float32", device="cpu")
        ignore = ignore_pattern(api._head_name(model))
        return model, ignore

    def run_calibench(method: str, params: dict[str, Any]) -> tuple[float, float, dict[str, Any], dict[str, float]]:
        model, _ = fresh_model()
        timings.take()
        started, cpu = time.perf_counter(), time.process_time()
        result = compress(model, calib, method, tokenizer=tokenizer, seed=args.seed, **params)
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu
        parts = timings.take()
        return wall, cpu, snapshot(result.model), parts

    def run_bare(method: str, params: dict[str, Any]) -> tuple[float, float, dict[str, Any], dict[str, float]]:
        model, ignore = fresh_model()
        timings.take()
        started, cpu = time.perf_counter(), time.process_time()
        resolved = resolve(method)
        recipe = build_recipe(resolved, make_params(resolved, **params), ignore)
        torch.manual_seed(args.seed)
        oneshot(
            model=model,
            dataset=dataset,
            recipe=recipe,
            num_calibration_samples=calib.n,
            max_seq_length=calib.seq_len,
            shuffle_calibration_samples=False,
            processor=tokenizer,
        )
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu
        timings.take()
        return wall, cpu, snapshot(model), {}

    if args.warmup:  # once: the first oneshot in a process pays lazy imports and first-call caches
        model, ignore = fresh_model()
        resolved = resolve("wanda")
        tiny = dataset.select(range(min(2, calib.n))).map(lambda row: {k: v[:32] for k, v in row.items()})
        started = time.perf_counter()
        oneshot(
            model=model,
            dataset=tiny,
            recipe=build_recipe(resolved, make_params(resolved), ignore),
            num_calibration_samples=len(tiny),
            max_seq_length=32,
            shuffle_calibration_samples=False,
            processor=tokenizer,
        )
        del model
        timings.take()
        print(
            f"  warm-up (untimed bare wanda oneshot, 2 x 32 tokens): {time.perf_counter() - started:.1f} s", flush=True
        )

    results: dict[str, Any] = {}
    for key in methods:
        label, method, params = METHODS[key]
        runs: dict[str, list[dict[str, Any]]] = {"calibench": [], "bare": []}
        first: dict[str, Any] = {}
        determinism = {"calibench": True, "bare": True}
        for rep in range(args.reps):
            order = ("calibench", "bare") if rep % 2 == 0 else ("bare", "calibench")
            for side in order:
                wall, cpu, state, parts = (run_calibench if side == "calibench" else run_bare)(method, params)
                runs[side].append({"wall": wall, "cpu": cpu, "parts": parts})
                if side not in first:
                    first[side] = state
                else:
                    determinism[side] &= compare(first[side], state)["identical"]
                del state
                print(
                    f"  {label} rep {rep + 1}/{args.reps} {side}: {wall:.2f} s wall, {cpu:.2f} s cpu "
                    f"(load {os.getloadavg()[0]:.1f})",
                    flush=True,
                )
        same = compare(first["calibench"], first["bare"])
        first.clear()
        cb, bare = runs["calibench"], runs["bare"]
        out: dict[str, Any] = {
            "label": label,
            "method": method,
            "params": params,
            "weights": same,
            "deterministic_across_reps": determinism,
        }
        for clock in ("wall", "cpu"):
            c = [r[clock] for r in cb]
            b = [r[clock] for r in bare]
            out[clock] = {
                "calibench_s": c,
                "bare_s": b,
                "calibench_median_s": median(c),
                "bare_median_s": median(b),
                "ratio": median(c) / median(b),
                "pair_ratios": [x / y for x, y in zip(c, b)],
            }
            # within each calibench run: its whole compress() over the oneshot call inside it (the stage minus
            # the dataset export done in it).  The same load hits both parts, so this is the steady estimate.
            own = [
                r["parts"].get("_run_stage" + ("" if clock == "wall" else ":cpu"), 0.0)
                - r["parts"].get("to_hf_dataset" + ("" if clock == "wall" else ":cpu"), 0.0)
                for r in cb
            ]
            out[clock]["calibench_oneshot_s"] = own
            out[clock]["within_run_ratios"] = [r[clock] / o for r, o in zip(cb, own)]
        out["calibench_helpers_median_s"] = {
            name: median([r["parts"].get(name, 0.0) for r in cb]) for name in (*API_HELPERS, "to_hf_dataset")
        }
        out["calibench_outside_oneshot_median_s"] = median(
            [r["wall"] - r["parts"].get("_run_stage", 0.0) + r["parts"].get("to_hf_dataset", 0.0) for r in cb]
        )
        results[key] = out

    timings.restore()
    extras: dict[str, Any] = {}
    if args.import_time:
        extras["imports"] = import_overhead()
    if args.cli:
        with tempfile.TemporaryDirectory() as tmp:
            calib_dir = calib.save(Path(tmp) / "set")
            extras["cli"] = {
                key: cli_run(args.model, calib_dir, METHODS[key][1], METHODS[key][2], args.seed) for key in methods
            }
    total = time.perf_counter() - started_all

    print(
        f"\n{args.model}, one {calib.n} x {calib.seq_len} wiki set, {args.reps} interleaved reps per side, "
        f"{torch.get_num_threads()} threads, load average at the end {os.getloadavg()[0]:.2f}\n"
    )
    print(
        "Side by side (each run on a fresh model; ratio = median calibench / median bare; spread = min..max of the "
        "per-pair ratios):\n"
    )
    print("| method | clock | calibench median s | bare oneshot median s | calibench / bare | per-pair min..max |")
    print("|---|---|---|---|---|---|")
    for r in results.values():
        for clock in ("wall", "cpu"):
            c = r[clock]
            print(
                f"| {r['label']} | {clock} | {c['calibench_median_s']:.2f} | {c['bare_median_s']:.2f} | "
                f"{c['ratio']:.3f} | {min(c['pair_ratios']):.3f}..{max(c['pair_ratios']):.3f} |"
            )
    print("\nWithin each calibench run: compress() over the oneshot call inside it (same load on both parts):\n")
    print("| method | clock | median | min..max | weights identical to bare |")
    print("|---|---|---|---|---|")
    for r in results.values():
        w = r["weights"]
        same = "yes" if w["identical"] else f"no ({w['n_differing']} tensors, max |d| {w['max_abs_diff']:.3g})"
        for clock in ("wall", "cpu"):
            ratios = r[clock]["within_run_ratios"]
            print(f"| {r['label']} | {clock} | {median(ratios):.3f} | {min(ratios):.3f}..{max(ratios):.3f} | {same} |")
    print("\nWhere calibench's time goes outside oneshot (median wall s per run, timed inside compress()):\n")
    shown = [
        n
        for n in (
            "_load",
            "check_causal_lm",
            "check_scheme_runnable",
            "check_scheme_fits",
            "resolve_group_size",
            "check_structure",
            "_check_set_fits_model",
            "_head_name",
            "to_hf_dataset",
            "_zero_masks",
            "achieved",
            "_peak_memory_mb",
            "_library_versions",
        )
        if n not in absent
    ]
    print("| method | " + " | ".join(shown) + " | all outside oneshot | its oneshot (median) |")
    print("|---|" + "---|" * (len(shown) + 2))
    for r in results.values():
        h = r["calibench_helpers_median_s"]
        print(
            f"| {r['label']} | "
            + " | ".join(f"{h[n]:.3f}" for n in shown)
            + f" | {r['calibench_outside_oneshot_median_s']:.3f} | {median(r['wall']['calibench_oneshot_s']):.2f} |"
        )
    for r in results.values():
        d = r["deterministic_across_reps"]
        if not all(d.values()):
            print(f"note: {r['label']}: weights differ between reps of the same side: {d}")
        if not r["weights"]["identical"]:
            print(f"note: {r['label']}: differing tensors {r['weights']['differing']}")
    if "imports" in extras:
        i = extras["imports"]
        print(
            f"\nimports (subprocess, once per process): torch+transformers+datasets+llm-compressor "
            f"{i['libraries_s']:.2f} s; calibench's compress path on top {i['calibench_extra_s']:.3f} s"
        )
    if "cli" in extras:
        for key, c in extras["cli"].items():
            print(
                f"cli `calibench compress` {METHODS[key][0]}: {c['wall_s']:.1f} s end to end "
                f"(its record's compress wall {c['record_wall_time_s']:.1f} s; the rest is imports, load, save)"
            )
    print(f"\ntotal benchmark time {total:.0f} s")

    if args.json:
        payload = {
            "calibench_source": source,
            "model": args.model,
            "n": calib.n,
            "seq_len": calib.seq_len,
            "reps": args.reps,
            "threads": torch.get_num_threads(),
            "set_id": calib.set_id,
            "methods": results,
            **extras,
            "total_s": total,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.json.with_name(f".{args.json.name}.tmp")
        tmp.write_text(json.dumps(payload, indent=2) + "\n")
        tmp.replace(args.json)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
