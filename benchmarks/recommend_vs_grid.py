"""Does `calibench recommend`, on a fraction of a grid's compute, pick a set the full grid ranks near the top?

Usage::

    python benchmarks/recommend_vs_grid.py STUDY_DIR RECOMMEND_OUT [RECOMMEND_OUT ...] [--objective ppl:wiki]

``STUDY_DIR`` is a finished study whose cells cover the recommend run's
candidates (same model, method, parameters, n, seq_len and seed: the sets are
deterministic, so the chosen set's id finds its grid cell).  For each
recommend output this prints the grid's ranking by the objective, where the
chosen set lands, the share of the grid's compute (for that method) the
recommendation spent, and the paired difference between the chosen set and
the grid's best on the objective's items (bootstrap CI), so that "not in the
top two" can be told apart from "indistinguishable from the best".

The baseline a reader should hold it against: a set drawn at random from k
candidates lands in the top two with probability 2/k.
"""

from __future__ import annotations

import argparse
import json
import math
import sqlite3
import sys
from pathlib import Path

import numpy as np


def grid_cells(study: Path, method: str, params: dict, objective: str) -> list[dict]:
    from calibench.report.frame import load_samples
    from calibench.report.tables import item_score

    with sqlite3.connect(study / "study.sqlite") as conn:
        rows = conn.execute("SELECT key, config, set_id, seconds FROM cells WHERE status = 'done'").fetchall()
    samples = load_samples(study, [objective]) if objective.startswith("ppl:") else load_samples(study)
    cells = []
    for key, config, set_id, seconds in rows:
        cfg = json.loads(config)
        if cfg.get("method_name") != method or cfg.get("perturbation"):
            continue
        if any(cfg.get("params", {}).get(k) != v for k, v in params.items()):
            continue
        scores: dict[str, float] = {}
        for (cell_key, task), items in samples.items():
            wanted = task == objective if objective.startswith("ppl:") else not task.startswith(("ppl:", "summ:"))
            if cell_key == key and wanted:
                scores.update(
                    {f"{task}/{i}": s for i, item in items.items() if (s := item_score(task, item)) is not None}
                )
        if not scores:
            continue
        values = np.array(list(scores.values()))
        value = -float(values.mean()) if objective.startswith("ppl:") else float(values.mean())
        cells.append(
            {
                "key": key,
                "label": f"{cfg['source']}#{cfg['set_index']}",
                "set_id": set_id,
                "seconds": float(seconds or 0.0),
                "objective": value,
                "scores": scores,
            }
        )
    return sorted(cells, key=lambda c: -c["objective"])


def paired(chosen: dict, best: dict, objective: str) -> tuple[float, float, float]:
    from calibench.core.stats import paired_bootstrap_ci

    common = sorted(set(chosen["scores"]) & set(best["scores"]))
    a = np.array([chosen["scores"][i] for i in common])
    b = np.array([best["scores"][i] for i in common])
    if objective.startswith("ppl:"):
        a, b = -a, -b  # window NLL: lower is better, so negate to keep "higher is better"
    ci = paired_bootstrap_ci(a, b)
    return ci.estimate, ci.low, ci.high


def report(study: Path, out: Path, objective: str) -> bool:
    card = json.loads((out / "card.json").read_text())
    settings = card["settings"]
    cells = grid_cells(study, settings["method"], settings.get("params") or {}, objective)
    if not cells:
        sys.exit(f"{study} has no finished {settings['method']} cells with parameters {settings.get('params')}")
    chosen_id = card["chosen"]["set_id"]
    grid_seconds = sum(c["seconds"] for c in cells)
    spent = float(card["cost"]["total_s"])
    print(f"\n## {out}: {settings['method']} {settings.get('params')}, objective {objective}")
    print(
        f"recommend spent {spent:.0f} s = {100 * spent / grid_seconds:.1f}% of the grid's {grid_seconds:.0f} s "
        f"({len(cells)} cells); signal {card['signal']['name']}; "
        f"{len(card['cost']['full_runs'])} full run(s)"
    )
    evaluated = {row["set_id"] for row in card["ranking"] if row["evaluated"]}
    quantity = "ppl" if objective.startswith("ppl:") else "acc"
    print(f"| grid rank | set | {quantity} | signal rank | evaluated by recommend |")
    print("|---|---|---|---|---|")
    signal_rank = {row["set_id"]: row["rank"] for row in card["ranking"]}
    for rank, cell in enumerate(cells, 1):
        shown = math.exp(-cell["objective"]) if quantity == "ppl" else cell["objective"]
        mark = " **chosen**" if cell["set_id"] == chosen_id else ""
        print(
            f"| {rank} | {cell['label']}{mark} | {shown:.4g} | {signal_rank.get(cell['set_id'], '-')} | "
            f"{'yes' if cell['set_id'] in evaluated else 'no'} |"
        )
    rank = next((r for r, c in enumerate(cells, 1) if c["set_id"] == chosen_id), None)
    if rank is None:
        print(f"the chosen set {chosen_id} is not a cell of the grid: the candidates and the grid differ")
        return False
    best = cells[0]
    difference, low, high = paired(cells[rank - 1], best, objective)
    unit = "log-ppl gain" if quantity == "ppl" else "accuracy"
    print(
        f"chosen {cells[rank - 1]['label']} ranks {rank} of {len(cells)} in the grid "
        f"({'within' if rank <= 2 else 'outside'} the top two; a random pick is within it with p = "
        f"{2 / len(cells):.2f}); chosen minus grid best ({best['label']}) in {unit}: {difference:+.4f} "
        f"(paired bootstrap 95% CI {low:+.4f} to {high:+.4f})"
    )
    return rank <= 2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("study", type=Path)
    parser.add_argument("outs", type=Path, nargs="+")
    parser.add_argument("--objective", default="ppl:wiki", help="a ppl: task, or 'average acc'")
    args = parser.parse_args()
    hits = [report(args.study, out, args.objective) for out in args.outs]
    print(f"\nwithin the grid's top two: {sum(hits)} of {len(hits)}")


if __name__ == "__main__":
    main()
