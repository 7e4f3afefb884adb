"""Adaptive against fixed-n evaluation: items scored for the same decisions, replayed on a finished study.

A fixed-n study stores every cell's per-item results (lm-eval documents in
task order, perplexity windows in text order).  Adaptive evaluation scores
the same items in the same order, block by block, so feeding the stored
items to the adaptive rule block by block (:func:`calibench.study.adaptive.replay`)
reproduces exactly what a live adaptive run of the same grid would have
decided and when, without re-running any cell (evaluation is deterministic
per item; the study's own adaptive test checks blocks against a fixed run).

Printed per comparison: the fixed-n decision (the report's set-aware test
on every item, Holm per family) next to the adaptive one (anytime-valid,
Holm per family at every look) and the items it used; then the items each
approach scores in total (a cell scores a block while any of its comparisons
runs) and their ratio.  Nothing is asserted.

    python benchmarks/bench_adaptive_items.py STUDY_DIR [--block 25] [--alpha 0.05] [--out result.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def with_positions(samples: dict[tuple[str, str], dict[str, dict[str, Any]]], seed: int) -> dict:
    """Each stored item with a position: its index (window number, lm-eval document index) placed by the same
    seeded shuffle a live adaptive run uses (:class:`calibench.evaluation.samples.ItemBlock`), of the N items the
    fixed run scored, so the replay is a live run on a task of those N items."""
    import numpy as np

    from calibench.evaluation.samples import POSITION, ItemBlock

    out: dict = {}
    for (key, task), items in samples.items():
        indices = {item_id: item.get("window", item.get("doc_id")) for item_id, item in items.items()}
        if any(i is None for i in indices.values()):
            raise SystemExit(f"{task}: an item without a window or doc_id; cannot replay")
        n = len(items)
        if sorted(int(i) for i in indices.values()) != list(range(n)):
            raise SystemExit(f"{task}: the fixed run's items are not the first {n} of the task; cannot replay")
        position = np.empty(n, dtype=np.int64)
        position[ItemBlock(0, n, seed=seed).order(n)] = np.arange(n)
        out[(key, task)] = {i: {**item, POSITION: int(position[int(indices[i])])} for i, item in items.items()}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("study", type=Path)
    parser.add_argument("--block", type=int, default=25, help="items per look")
    parser.add_argument("--alpha", type=float, default=0.05)
    parser.add_argument("--nll-range", type=float, default=1.0)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    import pandas as pd

    from calibench.report import tables
    from calibench.report.frame import load_frame, load_samples
    from calibench.study.adaptive import replay
    from calibench.study.cells import expand
    from calibench.study.spec import AdaptiveSpec, StudySpec
    from calibench.study.store import Store

    store = Store(args.study)
    spec = StudySpec.model_validate(store.meta()["spec"])
    cells = [c for c in expand(spec) if not c.perturbation]
    samples = store.samples()
    done = store.done_keys()
    store.close()
    tasks = sorted({task for _, task in samples})
    counts: dict[tuple[str, str], int] = {}
    by_key = {c.key: c for c in cells}
    for (key, task), items in samples.items():
        if key in by_key and not by_key[key].is_dense:
            model_task = (by_key[key].model, task)
            counts[model_task] = min(counts.get(model_task, len(items)), len(items))
    cap = max(counts.values())
    settings = AdaptiveSpec(block=args.block, cap=cap, alpha=args.alpha, nll_range=args.nll_range)
    state = replay(cells, spec.eval.tasks, settings, with_positions(samples, spec.seed), done, counts)

    # fixed n: the report's decision on every item
    frame = load_frame(args.study)[0]
    frame = frame[frame.perturbation == ""]
    pairs, _ = tables.paired_tables(tables.source_matrices(frame, load_samples(args.study, tasks)))
    fixed = {(r.method, r.task, r["source A"], r["source B"]): r for _, r in pairs.iterrows()}
    rows = []
    used: dict[tuple[str, str], int] = {}  # (cell key, task) -> items the adaptive run scores
    for pair in state.pairs:
        status = pair.status
        items = pair.test.items
        for cell in pair.cells():
            used[(cell.key, pair.task)] = max(used.get((cell.key, pair.task), 0), items)
        row = fixed.get((pair.family[1], pair.task, pair.source_a, pair.source_b))
        fixed_decided = bool(row is not None and row["significant"])
        adaptive_decided = status is not None and status.state == "decided"
        same_sign = row is None or status is None or (row["difference (A-B)"] > 0) == (status.estimate > 0)
        rows.append(
            {
                "method": pair.family[1],
                "task": pair.task,
                "pair": f"{pair.source_a} vs {pair.source_b}",
                "scope": pair.test.scope,
                "fixed items": counts.get((pair.family[0], pair.task)),
                "fixed p (Holm)": None if row is None else round(float(row["p (Holm)"]), 4),
                "fixed decided": fixed_decided,
                "adaptive items": items,
                "adaptive state": None if status is None else status.state,
                "adaptive p (Holm)": None if status is None else round(status.p_adjusted, 4),
                "same decision": fixed_decided == adaptive_decided and same_sign,
                "reason": "" if status is None else (pair.exhausted or status.reason),
            }
        )
    table = pd.DataFrame(rows)
    compressed = [c for c in cells if not c.is_dense and c.key in done]
    fixed_total = sum(counts.get((c.model, t), 0) for c in compressed for t in tasks if (c.key, t) in samples)
    adaptive_total = sum(used.get((c.key, t), min(args.block, counts.get((c.model, t), 0))) for c in compressed
                         for t in tasks if (c.key, t) in samples)  # fmt: skip
    print(table.to_markdown(index=False))
    agree = int(table["same decision"].sum())
    print(
        f"\ncompressed cells {len(compressed)}, block {args.block}, alpha {args.alpha}: items scored fixed-n "
        f"{fixed_total}, adaptive {adaptive_total}, ratio {fixed_total / max(1, adaptive_total):.2f}x; "
        f"decided fixed {int(table['fixed decided'].sum())}, adaptive "
        f"{int((table['adaptive state'] == 'decided').sum())} of {len(table)}; same decision {agree}/{len(table)}"
    )
    if args.out:
        args.out.write_text(
            json.dumps(
                {
                    "study": str(args.study),
                    "block": args.block,
                    "alpha": args.alpha,
                    "items_fixed": fixed_total,
                    "items_adaptive": adaptive_total,
                    "comparisons": rows,
                },
                indent=1,
                default=str,
            )
        )


if __name__ == "__main__":
    main()
