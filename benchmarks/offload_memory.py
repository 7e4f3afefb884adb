"""Peak memory and time of ``calibench compress`` and ``eval`` with ``--offload none|cpu|disk``, on the CPU.

Each run is a child process that imports the libraries first and then runs the command; its peak RSS is
its ``VmHWM`` at exit, next to the RSS the imports alone took.  With ``--bound-mb N`` the child also caps
its data segment (RLIMIT_DATA) at what the imports took plus N MB, and a run refused by the bound is rerun
without it.  That bound is not a memory bound for a checkpoint loader: transformers and torch map the whole
safetensors file privately (copy-on-write), and Linux counts a private writable mapping in full against
RLIMIT_DATA though its pages are only read, so a bound below the file size refuses every mode, disk
offload included (measured: "unable to mmap 538090408 bytes").  A cgroup memory limit is the real bound:
``--cgroup-mb N`` runs each child in a fresh memory cgroup (v1 or v2, under this process's own) limited to N MB
for the whole process, imports included; the kernel reclaims file pages (the memory-mapped checkpoint) before it
kills, and kills the child when what it cannot reclaim passes N.  The cgroup's own peak is reported beside VmHWM.

    python benchmarks/offload_memory.py --model smollm2-135m
    python benchmarks/offload_memory.py --model smollm2-135m --cgroup-mb 900   # where a memory cgroup can be made

Prints a markdown table (docs/scale.md, "Models larger than memory") and writes JSON with ``--json``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MODES = ("none", "cpu", "disk")


def _status(field: str) -> int:
    """A /proc/self/status field in kB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def child(bound_mb: int, report: str, argv: list[str]) -> None:
    """Import everything a command can need, cap the data segment, run the command in this process."""
    import atexit

    import datasets  # noqa: F401
    import llmcompressor  # noqa: F401
    import lm_eval  # noqa: F401
    import torch  # noqa: F401
    import transformers  # noqa: F401
    from compressed_tensors.offload import load_offloaded_model  # noqa: F401

    import calibench.cli.compress_cmd  # noqa: F401
    import calibench.cli.eval_cmd  # noqa: F401
    from calibench.cli import app

    base = {"rss_after_imports_mb": _status("VmRSS") / 1024, "data_after_imports_mb": _status("VmData") / 1024}
    if bound_mb > 0:
        limit = (_status("VmData") + bound_mb * 1024) * 1024
        resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
    atexit.register(lambda: Path(report).write_text(json.dumps({**base, "peak_rss_mb": _status("VmHWM") / 1024})))
    app(args=argv, prog_name="calibench")


def _memory_cgroup() -> tuple[Path, int] | None:
    """This process's memory cgroup directory and its version (1 or 2), where it can be written."""
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            base = Path("/sys/fs/cgroup/memory") / path.lstrip("/")
            if (base / "memory.limit_in_bytes").exists() and os.access(base, os.W_OK):
                return base, 1
        if controllers == "":
            for root in (Path("/sys/fs/cgroup"), Path("/sys/fs/cgroup/unified")):
                base = root / path.lstrip("/")
                if (base / "memory.max").exists() and os.access(base, os.W_OK):
                    return base, 2
    return None


class MemoryCgroup:
    """A child memory cgroup limited to ``limit_mb`` for one run: its peak use and whether it killed."""

    def __init__(self, limit_mb: int, name: str) -> None:
        found = _memory_cgroup()
        if found is None:
            raise SystemExit("--cgroup-mb: no writable memory cgroup here (v1 memory controller or cgroup v2)")
        parent, self.version = found
        self.path = parent / name
        self.path.mkdir()
        limit = str(limit_mb * 2**20)
        (self.path / ("memory.limit_in_bytes" if self.version == 1 else "memory.max")).write_text(limit)
        if self.version == 2 and (self.path / "memory.swap.max").exists():
            (self.path / "memory.swap.max").write_text("0")

    def enter(self) -> None:  # in the child, before exec
        (self.path / "cgroup.procs").write_text(str(os.getpid()))

    def close(self) -> dict:
        peak_file = "memory.max_usage_in_bytes" if self.version == 1 else "memory.peak"
        peak = int((self.path / peak_file).read_text()) / 2**20 if (self.path / peak_file).exists() else float("nan")
        events = (self.path / ("memory.oom_control" if self.version == 1 else "memory.events")).read_text()
        kills = next((int(ln.split()[1]) for ln in events.splitlines() if ln.startswith("oom_kill ")), 0)
        self.path.rmdir()
        return {"cgroup_peak_mb": peak, "oom_kills": kills}


def run(argv: list[str], bound_mb: int, cgroup_mb: int = 0) -> dict:
    """One command in a child under the bound: exit code, wall time, peak RSS, the imports' RSS, the last line."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as handle:
        report = handle.name
    cmd = [sys.executable, __file__, "--child", str(bound_mb), report, "--", *argv]
    group = MemoryCgroup(cgroup_mb, f"calibench-bench-{os.getpid()}-{time.monotonic_ns()}") if cgroup_mb else None
    started = time.perf_counter()
    proc = subprocess.run(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False,
        preexec_fn=group.enter if group else None,
    )  # fmt: skip
    wall = time.perf_counter() - started
    measured = group.close() if group else {}
    # the child's VmHWM, written at its exit (a refused run exits too)
    base = json.loads(Path(report).read_text()) if Path(report).stat().st_size else {"peak_rss_mb": float("nan")}
    os.unlink(report)
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip() and "WARNING" not in ln]
    return {
        "rc": proc.returncode,
        "wall_s": wall,
        **measured,
        **base,
        "tail": lines[-1][:200] if lines else "",
    }


def _sha(checkpoint: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(checkpoint.glob("*.safetensors")):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--methods", default="rtn", help="comma-separated compress methods")
    parser.add_argument("--n", type=int, default=8)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--max-windows", type=int, default=2)
    parser.add_argument("--bound-mb", type=int, default=0, help="RLIMIT_DATA beyond the imports (MB); 0: none")
    parser.add_argument("--cgroup-mb", type=int, default=0, help="memory cgroup limit of each run, whole process (MB)")
    parser.add_argument("--modes", default=",".join(MODES), help="comma-separated offload modes")
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="offload-bench-"))
    calib = work / "set"
    if not calib.exists():
        exe = str(Path(sys.executable).with_name("calibench"))
        build = ["data", "build", "wiki", "-m", args.model, "-o", str(calib), "--n", str(args.n)]
        subprocess.run([exe, *build, "--seq-len", str(args.seq_len)], check=True, stdout=subprocess.DEVNULL)
    from calibench.models import resolve_model_path

    weights = sum(p.stat().st_size for p in Path(resolve_model_path(args.model)).glob("*.safetensors"))
    rows = []
    common = ["-m", args.model, "--device", "cpu", "--dtype", args.dtype]
    for method in args.methods.split(","):
        for mode in args.modes.split(","):
            out = work / f"{method}-{mode}"
            place = ["--offload", mode] + (["--offload-dir", str(work / "offload")] if mode == "disk" else [])
            compress = ["compress", *common, "-c", str(calib), "--method", method, "-o", str(out), "--force", *place]
            ev = ["eval", "-m", str(work / f"{method}-none"), "--device", "cpu", "--dtype", args.dtype, "--tasks",
                  "ppl:wiki", "--ppl-seq-len", str(args.seq_len), "--max-windows", str(args.max_windows), "--out",
                  str(work / f"eval-{method}-{mode}.json"), "--force", *place]  # fmt: skip
            for step, argv in (("compress", compress), ("eval ppl", ev)):
                result = run(argv, args.bound_mb, args.cgroup_mb)
                bound = f"cgroup {args.cgroup_mb} MB" if args.cgroup_mb else f"{args.bound_mb} MB"
                if result["rc"] != 0:  # refused under the bound: record that, and measure without it
                    rows.append({"method": method, "step": step, "offload": mode, "bound": bound, **result})
                    result, bound = run(argv, 0), "none"
                row = {"method": method, "step": step, "offload": mode, "bound": bound, **result}
                if step == "compress" and result["rc"] == 0:
                    row["checkpoint_sha"] = _sha(out)
                if step == "eval ppl" and result["rc"] == 0:
                    row["ppl"] = json.loads((work / f"eval-{method}-{mode}.json").read_text())["rows"][0]["value"]
                rows.append(row)
                print(json.dumps(row), flush=True)
    bound = f"a memory cgroup of {args.cgroup_mb} MB" if args.cgroup_mb else f"RLIMIT_DATA + {args.bound_mb} MB"
    print(f"\nmodel {args.model}: {weights / 2**20:.0f} MB of safetensors ({args.dtype}); bound: {bound}\n")
    print("| step | offload | bound | exit | peak RSS MB | cgroup peak MB | OOM kills | RSS after imports MB | wall s "
          "| result |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        result = r.get("checkpoint_sha") or (f"ppl {r['ppl']:.4f}" if "ppl" in r else r["tail"][:60])
        print(f"| {r['method']} {r['step']} | {r['offload']} | {r['bound']} | {r['rc']} | {r['peak_rss_mb']:.0f} | "
              f"{r.get('cgroup_peak_mb', float('nan')):.0f} | {r.get('oom_kills', '')} | "
              f"{r.get('rss_after_imports_mb', 0):.0f} | {r['wall_s']:.1f} | {result} |")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps({"model": args.model, "weights_bytes": weights, "rows": rows}, indent=1))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(int(sys.argv[2]), sys.argv[3], sys.argv[5:])
    else:
        main()
