"""The aegis NLI scored one pair per session run (batch-independent) against 32-pair batches (the old way).

The int8 ONNX model quantizes activations with one scale per tensor, so in a batch a pair's score depends on
its batch mates.  :class:`calibench.summarize.nli.AegisNli` now runs every pair alone; this script scores the
same Factual-Summary-Pairs (source sentence, faithful rewrite) both ways and prints pairs per second of each,
their ratio, and how far the batched scores drift from the one-pair scores.  Nothing is asserted.

    python benchmarks/bench_aegis_batch.py [--pairs 96] [--batch 32]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from calibench.summarize.data import factual_pairs
from calibench.summarize.nli import AEGIS_MAX_TOKENS, AegisNli, _softmax, encode_pairs


def batched(nli: AegisNli, premises: list[str], hypotheses: list[str], batch: int) -> np.ndarray:
    """The old scoring: ``batch`` pairs per session run."""
    out = []
    for i in range(0, len(premises), batch):
        enc, _ = encode_pairs(nli.tokenizer, premises[i : i + batch], hypotheses[i : i + batch], AEGIS_MAX_TOKENS,
                              padding="max_length", return_tensors="np")  # fmt: skip
        feed = {k: enc[k].astype(np.int64) for k in ("input_ids", "attention_mask")}
        out.append(_softmax(nli.session.run(None, feed)[0].astype(np.float64))[:, 0])
    return np.concatenate(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=int, default=96)
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args()
    pairs = factual_pairs(args.pairs)
    prem, hyp = [p.source for p in pairs], [p.faithful for p in pairs]
    nli = AegisNli()
    nli(prem[:2], hyp[:2])  # warm-up
    t = time.perf_counter()
    old = batched(nli, prem, hyp, args.batch)
    t_old = time.perf_counter() - t
    t = time.perf_counter()
    new = nli(prem, hyp)
    t_new = time.perf_counter() - t
    print(f"{len(prem)} pairs: {args.batch}-pair batches {len(prem) / t_old:.2f} pairs/s, one pair per run "
          f"{len(prem) / t_new:.2f} pairs/s (ratio {t_old / t_new:.2f}); batched scores differ from one-pair "
          f"scores by up to {np.abs(old - new).max():.3f} (mean {np.abs(old - new).mean():.3f})")  # fmt: skip


if __name__ == "__main__":
    main()
