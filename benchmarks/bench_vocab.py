"""Vocabulary pruning: evaluation time and peak memory of pruned models against the full one, same task.

For one model: build a ``wiki`` calibration set, collect the vocabulary of
that set plus the evaluation tasks (as lm-eval renders them, same --limit),
prune in both modes, and evaluate every variant on the same tasks, each in a
fresh process whose peak resident memory (whole process tree, sampled as in
``peak_memory.py``) is recorded.  Ratios are against the full model measured
in the same run; nothing is asserted about time.  ``--gptq`` adds GPTQ W4
(then vocabulary pruning, restricted) with on-disk sizes.

    python benchmarks/bench_vocab.py --model smollm2-135m --tasks arc_easy,piqa --limit 100 --gptq
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MB = 2**20


def _dir_bytes(path: Path, skip: tuple[str, ...] = ()) -> int:
    return sum(
        p.stat().st_size
        for p in path.rglob("*")
        if p.is_file() and p.name not in skip and p.suffix in (".safetensors", ".json")
    )


def prepare(args: argparse.Namespace, work: Path) -> dict:
    """Set, vocabulary, pruned directories (and GPTQ ones): everything the evaluations need."""
    from calibench.data.builders import build_sets
    from calibench.models import load_model, load_tokenizer
    from calibench.vocab import Inputs, collect, prune, save
    from calibench.vocab.memory import measure

    tok = load_tokenizer(args.model)
    calib = build_sets("wiki", tokenizer=tok, n=args.n, seq_len=args.seq_len, seed=0)[0]
    calib.save(work / "set")
    started = time.perf_counter()
    vocab = collect(tok, Inputs(calib=[str(work / "set")], tasks=[args.tasks]), model=args.model, limit=args.limit,
                    heldout=["wiki"])  # fmt: skip
    collect_s = time.perf_counter() - started
    vocab.save(work / "vocab.json")
    out = {"model": args.model, "vocab_size": vocab.vocab_size, "kept": len(vocab.kept), "share": vocab.share,
           "coverage_wiki": vocab.coverage[0].share, "collect_s": collect_s,
           "inputs": [{k: v for k, v in i.items() if k != "tasks"} for i in vocab.inputs], "modes": {}}  # fmt: skip
    for mode in ("restricted", "exact-input"):
        model = load_model(args.model, dtype="float32", device="cpu")
        state = prune(model, vocab, mode, tokenizer=tok, source=args.model)
        save(model, work / mode, tok)
        out["modes"][mode] = {
            **state.report.summary(),
            "disk_bytes": _dir_bytes(work / mode, ("vocab-dropped.safetensors",)),
        }  # type: ignore[union-attr]
        del model
    full = load_model(args.model, dtype="float32", device="cpu")
    out["full"] = measure(full).model_dump()
    if args.gptq:
        from calibench.compress import compress

        result = compress(full, calib, "gptq", tokenizer=tok, bits=4, group_size=args.group_size)
        result.save(work / "gptq", tok)
        gptq_dense_bytes = measure(full).model_dump()
        state = prune(full, vocab, "restricted", tokenizer=tok, source=str(work / "gptq"))
        save(full, work / "gptq-vocab", tok, dropped="reference")
        out["gptq"] = {"disk_bytes": _dir_bytes(work / "gptq"), "in_memory_fake_quant": gptq_dense_bytes,
                       "vocab_disk_bytes": _dir_bytes(work / "gptq-vocab"), "vocab_memory": state.report.summary()}  # type: ignore[union-attr]  # fmt: skip
    from calibench.models import resolve_model_path

    out["dense_disk_bytes"] = _dir_bytes(Path(resolve_model_path(args.model)))
    return out


def worker(args: argparse.Namespace) -> None:
    """One evaluation in this process: prints a JSON line with the rows, seconds and tensor bytes."""
    import torch

    from calibench.evaluation import evaluate
    from calibench.models import load_model, load_tokenizer
    from calibench.vocab.memory import measure

    torch.set_num_threads(args.threads)
    tok = load_tokenizer(args.worker)
    model = load_model(args.worker, dtype="float32", device="cpu")
    started = time.perf_counter()
    result = evaluate(model, args.tasks, tokenizer=tok, limit=args.limit, offline=True, batch_size=8)
    seconds = time.perf_counter() - started
    rows = {f"{r.task}:{r.metric}": r.value for r in result.rows}
    samples = {t: [i.get("loglikelihoods") for i in items] for t, items in result.samples.items()}
    print(
        "RESULT "
        + json.dumps({"rows": rows, "eval_s": seconds, "bytes": measure(model).model_dump(), "samples": samples})
    )


def run_variant(spec: str, args: argparse.Namespace) -> dict:
    import psutil

    sys.path.insert(0, str(Path(__file__).parent))
    from peak_memory import tree_rss

    command = [sys.executable, __file__, "--worker", spec, "--tasks", args.tasks, "--limit", str(args.limit),
               "--threads", str(args.threads)]  # fmt: skip
    child = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env={**os.environ, "TQDM_DISABLE": "1"})
    root, peak = psutil.Process(child.pid), 0
    while child.poll() is None:
        peak = max(peak, tree_rss(root)[0])
        time.sleep(0.05)
    out = child.stdout.read() if child.stdout else ""
    line = next(x for x in out.splitlines() if x.startswith("RESULT "))
    return {**json.loads(line[7:]), "peak_rss_mb": peak / MB}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--tasks", default="arc_easy,piqa")
    parser.add_argument("--limit", type=int, default=100)
    parser.add_argument("--n", type=int, default=16)
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--gptq", action="store_true", help="also GPTQ W4, then vocabulary pruning (restricted)")
    parser.add_argument("--group-size", type=int, default=64)
    parser.add_argument("--json", help="write everything here")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return 0
    os.environ.setdefault("LLM_COMPRESSOR_LOG_LEVEL", "WARNING")
    with tempfile.TemporaryDirectory(prefix="bench-vocab-") as tmp:
        work = Path(tmp)
        prep = prepare(args, work)
        variants = {
            "full": args.model,
            "restricted": str(work / "restricted"),
            "exact-input": str(work / "exact-input"),
        }
        if args.gptq:
            variants.update({"gptq": str(work / "gptq"), "gptq+vocab": str(work / "gptq-vocab")})
        runs = {name: run_variant(spec, args) for name, spec in variants.items()}
    base = runs["full"]
    print(
        f"\n{args.model}: kept {prep['kept']:,} of {prep['vocab_size']:,} ids ({100 * prep['share']:.2f}%), "
        f"wiki held-out coverage {100 * prep['coverage_wiki']:.2f}%, collect {prep['collect_s']:.1f} s"
    )
    print(
        "| variant | "
        + " | ".join(base["rows"])
        + " | eval s | x full | peak RSS MB | x full | tensor MB | embed+head MB |"
    )
    print("|---" * (len(base["rows"]) + 7) + "|")
    for name, r in runs.items():
        accs = " | ".join(f"{r['rows'].get(k, float('nan')):.4f}" for k in base["rows"])
        print(
            f"| {name} | {accs} | {r['eval_s']:.1f} | {r['eval_s'] / base['eval_s']:.2f} | {r['peak_rss_mb']:.0f} | "
            f"{r['peak_rss_mb'] / base['peak_rss_mb']:.2f} | {r['bytes']['model_bytes'] / MB:.1f} | "
            f"{r['bytes']['vocab_bytes'] / MB:.1f} |"
        )
    same = runs["exact-input"]["samples"] == base["samples"] and runs["exact-input"]["rows"] == base["rows"]
    print(f"exact-input per-item loglikelihoods identical to full: {same}")
    for mode, rep in prep["modes"].items():
        print(
            f"{mode}: embed+head {rep['before']['vocab_bytes'] / MB:.1f} -> {rep['after']['vocab_bytes'] / MB:.1f} MB "
            f"({rep['saved_vocab_pct']:.1f}% saved), model {rep['before']['model_bytes'] / MB:.1f} -> "
            f"{rep['after']['model_bytes'] / MB:.1f} MB ({rep['saved_model_pct']:.1f}% saved), "
            f"on disk {rep['disk_bytes'] / MB:.1f} MB"
        )
    if args.gptq:
        g = prep["gptq"]
        print(
            f"on disk: dense {prep['dense_disk_bytes'] / MB:.1f} MB, "
            f"gptq W4 g{args.group_size} {g['disk_bytes'] / MB:.1f} MB, "
            f"gptq + vocab (restricted) {g['vocab_disk_bytes'] / MB:.1f} MB"
        )
    if args.json:
        Path(args.json).write_text(json.dumps({"prepare": prep, "runs": runs}, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
