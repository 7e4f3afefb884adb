"""SummaC-ZS premises as single source sentences (the older granularity) against windows of sentences.

Scores the first ``--rows`` rows of a labelled pairs dataset (default ``multilexsum-long``: claims from the second
half of long legal cases) with the aegis NLI both ways and prints, for each, the ROC-AUC with its bootstrap 95%
CI, the NLI calls made and the seconds taken.  Nothing is asserted.

    python benchmarks/bench_summac_premises.py [--data multilexsum-long] [--rows 48]
"""

from __future__ import annotations

import argparse
import time

from calibench.summarize.consistency import summac_zs
from calibench.summarize.judge_stats import auc_with_ci
from calibench.summarize.nli import get_nli
from calibench.summarize.pairsets import build_pairs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default="multilexsum-long")
    parser.add_argument("--rows", type=int, default=48)
    args = parser.parse_args()
    rows = build_pairs(args.data, limit=args.rows)
    nli = get_nli("aegis")
    calls = [0]

    class Counted:  # the aegis NLI, counting the pairs it scores (its token budget kept: windows need it)
        name, max_tokens, token_count = nli.name, nli.max_tokens, nli.token_count  # type: ignore[attr-defined]

        def __call__(self, premises, hypotheses):  # type: ignore[no-untyped-def]
            calls[0] += len(premises)
            return nli(premises, hypotheses)

    counted = Counted()

    labels = [r["label"] for r in rows]
    for how in ("sentences", "windows"):
        calls[0] = 0
        started = time.perf_counter()
        scores = []
        for r in rows:
            scores.extend(summac_zs(counted, [r["document"]], [r["summary"]], premises=how))  # type: ignore[arg-type]
        seconds = time.perf_counter() - started
        auc = auc_with_ci(scores, labels)
        print(f"{args.data} first {len(rows)} rows, premises={how}: AUC {auc.value:.3f} [{auc.low:.3f}, "
              f"{auc.high:.3f}], {calls[0]} NLI pairs, {seconds:.0f} s", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
