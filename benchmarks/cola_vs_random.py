"""COLA-curated sets against random sets from the same pool, on a real model.

One pool, one activation capture (one projection per seed), then for each seed
a COLA set (k-means in that seed's projection) and a random set (uniform draw
with that seed), all n x seq_len from the same pool.  Reports coverage and
diversity (in an independent projection, seed 1000, so that no set is measured
in the space it was selected in) and, after each compression method, the
perplexity on each capability's held-out reference text.

    python benchmarks/cola_vs_random.py --out /tmp/cola-exp [--n 16 --seq-len 256 --pool-size 192]

Results go to OUT/results.json (rewritten after every cell) and a table on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")

METHODS = {"wanda": {"sparsity": 0.5}, "gptq": {"bits": 4, "group_size": 64}}
METRIC_SEED = 1000


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--sources", default="wiki,science,math,code")
    ap.add_argument("--capabilities", default="commonsense,math,code,language_modelling")
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--pool-size", type=int, default=192)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--methods", default="wanda,gptq")
    ap.add_argument("--eval-windows", type=int, default=8)
    ap.add_argument("--top-k", type=int, default=None)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument(
        "--resume",
        action="store_true",
        help="Reuse OUT/sets and OUT/results.json of an interrupted run; run the missing cells, seed by seed.",
    )
    args = ap.parse_args()
    if args.resume:
        resume(args)
        return

    from calibench.curate.capabilities import load_reference, parse_capabilities
    from calibench.curate.metrics import activation_metrics
    from calibench.curate.pipeline import (
        CurationConfig,
        pool_features,
        random_from_pool,
        run_stage1,
        select_from_features,
    )
    from calibench.curate.pool import build_pool
    from calibench.curate.processing import ProcessingSettings
    from calibench.curate.proxy import proxy_evaluate, reference_perplexity
    from calibench.data.draw import resolve_bos
    from calibench.models import load_model, load_tokenizer

    args.out.mkdir(parents=True, exist_ok=True)
    seeds = [int(s) for s in args.seeds.split(",")]
    cfg = CurationConfig(
        sources=args.sources.split(","),
        capabilities=args.capabilities.split(","),
        n=args.n,
        seq_len=args.seq_len,
        pool_size=args.pool_size,
        top_k=args.top_k,
    )
    tok = load_tokenizer(args.model)
    results: dict = {
        "config": cfg.model_dump(mode="json"),
        "methods": METHODS,
        "eval_windows": args.eval_windows,
        "load_average_start": os.getloadavg(),
        "seconds": {},
    }

    def save() -> None:
        (args.out / "results.json").write_text(json.dumps(results, indent=2))

    t = time.perf_counter()
    matrix, weights, kept = run_stage1(cfg, tok)
    results["stage1"] = {**matrix.record(weights), "selected_sources": kept}
    results["seconds"]["stage1"] = time.perf_counter() - t
    print("stage 1 selected", kept, flush=True)
    t = time.perf_counter()
    pool = build_pool(
        kept,
        tok,
        cfg.resolved_pool_size,
        cfg.seq_len,
        seed=0,
        add_bos=resolve_bos(tok, "auto"),
        settings=ProcessingSettings(),
    )
    pool.save(args.out / "pool", overwrite=True)
    results["pool"] = {"set_id": pool.set_id, "size": pool.n, "per_source": pool.manifest.generator["per_source"]}
    results["seconds"]["stage2"] = time.perf_counter() - t

    t = time.perf_counter()
    lm = load_model(args.model)
    feats, _, layer_info = pool_features(lm, pool, [*seeds, METRIC_SEED], cfg.projection_dim, cfg.batch_size)
    results["seconds"]["capture"] = time.perf_counter() - t
    results["layers"] = layer_info
    metric_space = feats[-1]
    np.save(args.out / "features_metric_space.npy", metric_space)
    print(f"captured {pool.n} windows in {results['seconds']['capture']:.0f}s", flush=True)

    sets = {}
    for i, seed in enumerate(seeds):
        calib, sel, own = select_from_features(feats[i], pool, tok, cfg.n, seed, cfg.n_init, {"method": "cola"})
        sets[f"cola-s{seed}"] = (calib, sel.indices, own)
        rnd = random_from_pool(pool, cfg.n, seed, tok)
        idx = rnd.manifest.generator["chosen_pool_indices"]
        sets[f"random-s{seed}"] = (rnd, idx, activation_metrics(feats[i], feats[i][idx]))
    results["sets"] = {}
    for name, (calib, idx, own) in sets.items():
        calib.save(args.out / "sets" / name, overwrite=True)
        results["sets"][name] = {
            "set_id": calib.set_id,
            "indices": list(map(int, idx)),
            "metrics_independent_space": activation_metrics(metric_space, metric_space[idx]),
            "metrics_selection_space": own,
            "sources": sorted({pool.manifest.generator["rows"][j][0] for j in idx}),
            "per_source": {s: sum(pool.manifest.generator["rows"][j][0] == s for j in idx) for s in kept},
        }
    save()
    del lm

    caps = parse_capabilities(cfg.capabilities)
    texts = {c.name: load_reference(c) for c in caps}
    t = time.perf_counter()
    base_ppl, windows = reference_perplexity(
        load_model(args.model), tok, caps, cfg.seq_len, args.eval_windows, texts=texts
    )
    results["uncompressed"] = {"perplexity": base_ppl, "windows": windows, "seconds": time.perf_counter() - t}
    save()
    print("uncompressed", base_ppl, flush=True)
    results["proxy"] = {}
    for method in args.methods.split(","):
        for name, (calib, _, _) in sets.items():
            r = proxy_evaluate(
                args.model,
                calib,
                method,
                [c.name for c in caps],
                tokenizer=tok,
                seq_len=cfg.seq_len,
                max_windows=args.eval_windows,
                texts=texts,
                **METHODS[method],
            )
            results["proxy"][f"{method}/{name}"] = r.record()
            save()
            print(method, name, {k: round(v, 3) for k, v in r.perplexity.items()}, f"{r.seconds:.0f}s", flush=True)
    results["load_average_end"] = os.getloadavg()
    save()
    print_table(results)


def resume(args: argparse.Namespace) -> None:
    """Finish an interrupted run: cells in seed order (each seed: every method on COLA, then random)."""
    from calibench.curate.capabilities import load_reference, parse_capabilities
    from calibench.curate.proxy import proxy_evaluate
    from calibench.data.calibset import CalibrationSet
    from calibench.models import load_tokenizer

    results = json.loads((args.out / "results.json").read_text())
    results.setdefault("proxy", {})
    cfg = results["config"]
    tok = load_tokenizer(args.model)
    caps = parse_capabilities(cfg["capabilities"])
    texts = {c.name: load_reference(c) for c in caps}
    for seed in [int(s) for s in args.seeds.split(",")]:
        for method in args.methods.split(","):
            for kind in ("cola", "random"):
                name, key = f"{kind}-s{seed}", f"{method}/{kind}-s{seed}"
                if key in results["proxy"]:
                    continue
                calib = CalibrationSet.load(args.out / "sets" / name, tokenizer=tok)
                r = proxy_evaluate(
                    args.model,
                    calib,
                    method,
                    [c.name for c in caps],
                    tokenizer=tok,
                    seq_len=cfg["seq_len"],
                    max_windows=results["eval_windows"],
                    texts=texts,
                    **METHODS[method],
                )
                results["proxy"][key] = r.record()
                results["load_average_end"] = os.getloadavg()
                (args.out / "results.json").write_text(json.dumps(results, indent=2))
                print(method, name, {k: round(v, 3) for k, v in r.perplexity.items()}, f"{r.seconds:.0f}s", flush=True)
    print_table(results)


def print_table(results: dict) -> None:
    caps = list(results["uncompressed"]["perplexity"])
    print("\nset | coverage | diversity | " + " | ".join(f"{m}:{c}" for m in METHODS for c in caps))
    for kind in ("cola", "random"):
        names = [n for n in results["sets"] if n.startswith(kind)]
        for name in names:
            m = results["sets"][name]["metrics_independent_space"]
            cells = [
                f"{results['proxy'].get(f'{meth}/{name}', {}).get('perplexity', {}).get(c, float('nan')):.3f}"
                for meth in METHODS
                for c in caps
            ]
            print(f"{name} | {m['coverage']:.4f} | {m['diversity']:.4f} | " + " | ".join(cells))


if __name__ == "__main__":
    main()
