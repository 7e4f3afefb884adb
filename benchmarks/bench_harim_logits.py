"""HaRiM+'s target log-probs with logits only where a summary token is predicted, against full logits (the old way).

:func:`calibench.summarize.harim.token_logprobs` asks the model for logits at the positions that predict a
summary token (``logits_to_keep``) and normalises each row on its own; before, every position of the prompt got a
full-vocabulary log-softmax.  This script scores the same XSum articles with the bundled judge's reference
summaries both ways, in one process, and prints seconds of each, their ratio, the largest log-prob difference, and
the size of the biggest logits tensor each way (batch x positions x vocabulary floats).  Nothing is asserted.

    python benchmarks/bench_harim_logits.py [--model smollm2-135m] [--docs 24] [--batch 8]
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np
import torch

from calibench.models import load_model, load_tokenizer
from calibench.summarize.data import DATASETS
from calibench.summarize.harim import token_logprobs
from calibench.summarize.prompts import render


def full_logits(model: Any, contexts: list[list[int]], targets: list[list[int]], batch: int) -> tuple[list, int]:
    """The old scoring: right-padded batches, a log-softmax over every position's whole vocabulary."""
    out: list[np.ndarray] = [np.zeros(0)] * len(contexts)
    biggest = 0
    order = sorted(range(len(contexts)), key=lambda i: len(contexts[i]) + len(targets[i]))
    with torch.inference_mode():
        for start in range(0, len(order), batch):
            rows = order[start : start + batch]
            seqs = [contexts[i] + targets[i] for i in rows]
            width = max(len(s) for s in seqs)
            ids = torch.zeros((len(rows), width), dtype=torch.long)
            mask = torch.zeros_like(ids)
            for r, s in enumerate(seqs):
                ids[r, : len(s)] = torch.as_tensor(s)
                mask[r, : len(s)] = 1
            logp = model(input_ids=ids, attention_mask=mask).logits.float().log_softmax(-1)
            biggest = max(biggest, logp.numel())
            for r, i in enumerate(rows):
                c, t = len(contexts[i]), len(targets[i])
                out[i] = logp[r, torch.arange(c - 1, c + t - 1), ids[r, c : c + t]].numpy().astype(np.float64)
    return out, biggest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--docs", type=int, default=24)
    parser.add_argument("--batch", type=int, default=8)
    args = parser.parse_args()
    tok = load_tokenizer(args.model)
    model = load_model(args.model).eval()
    docs = DATASETS["xsum"].load()[: args.docs]
    contexts = [render(tok, d.document, "sentences", False) for d in docs]
    targets = [tok(d.reference, add_special_tokens=False)["input_ids"] for d in docs]
    widths = []
    hook = model.get_output_embeddings().register_forward_hook(lambda m, a, o: widths.append(o.numel()))
    token_logprobs(model, contexts[:2], targets[:2], args.batch)  # warm-up
    t = time.perf_counter()
    old, old_floats = full_logits(model, contexts, targets, args.batch)
    t_old = time.perf_counter() - t
    widths.clear()
    t = time.perf_counter()
    new = token_logprobs(model, contexts, targets, args.batch)
    t_new = time.perf_counter() - t
    hook.remove()
    drift = max(float(np.abs(a - b).max()) for a, b in zip(old, new))
    print(f"{args.model}, {len(docs)} XSum articles (prompt {np.mean([len(c) for c in contexts]):.0f} tokens, "
          f"summary {np.mean([len(t) for t in targets]):.0f}), batch {args.batch}: full logits {t_old:.1f}s, "
          f"kept logits {t_new:.1f}s (ratio {t_old / t_new:.2f}); largest logits tensor {old_floats / 1e6:.0f}M "
          f"floats against {max(widths) / 1e6:.1f}M; log-probs differ by up to {drift:.2e}")  # fmt: skip


if __name__ == "__main__":
    main()
