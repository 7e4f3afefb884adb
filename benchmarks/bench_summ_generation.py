"""Summarization generation: calibench's batched greedy KV-cache loop vs one-at-a-time HF ``generate``.

The same documents (the first N of the offline XSum pack, rendered through
the model's chat template exactly as ``summ:xsum`` renders them), the same
stop tokens and cap, greedy on both sides.  Prints documents/s and generated
tokens/s of each, the ratio, and how many generations agree token for token,
all measured in the same run.  Not a test: nothing is asserted.

    python benchmarks/bench_summ_generation.py --model smollm2-135m --docs 16 --max-new-tokens 48 --batch-size 8
"""

from __future__ import annotations

import argparse
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--docs", type=int, default=16)
    ap.add_argument("--max-new-tokens", type=int, default=48)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: leave as is)")
    args = ap.parse_args()

    import torch

    from calibench.models import load_model, load_tokenizer
    from calibench.summarize.data import DATASETS
    from calibench.summarize.generate import greedy_generate
    from calibench.summarize.prompts import render, use_chat
    from calibench.summarize.task import _stop_ids

    if args.threads:
        torch.set_num_threads(args.threads)
    model, tok = load_model(args.model), load_tokenizer(args.model)
    chat = use_chat(tok, "auto", args.model)
    docs = DATASETS["xsum"].load()[: args.docs]
    prompts = [render(tok, d.document, "sentences", chat) for d in docs]
    stops = _stop_ids(tok, model, chat)
    pad = tok.pad_token_id if tok.pad_token_id is not None else stops[0]

    started = time.perf_counter()
    batched = greedy_generate(
        model,
        prompts,
        max_new_tokens=args.max_new_tokens,
        stop_ids=stops,
        pad_id=pad,
        batch_size=args.batch_size,
        vocab_size=len(tok),
    )
    t_batched = time.perf_counter() - started

    started = time.perf_counter()
    naive = []
    with torch.inference_mode():
        for p in prompts:
            ids = torch.tensor([p])
            out = model.generate(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                do_sample=False,
                max_new_tokens=args.max_new_tokens,
                eos_token_id=stops,
                pad_token_id=pad,
            )
            new = out[0, len(p) :].tolist()
            cut = next((i for i, t in enumerate(new) if t in stops), len(new))
            naive.append(new[:cut])
    t_naive = time.perf_counter() - started

    same = sum(g.tokens == n for g, n in zip(batched.generations, naive))
    tokens = sum(len(g.tokens) for g in batched.generations)
    print(
        f"model {args.model}, {len(docs)} XSum documents (mean prompt {sum(map(len, prompts)) / len(prompts):.0f} "
        f"tokens), max_new_tokens {args.max_new_tokens}, torch threads {torch.get_num_threads()}"
    )
    print(
        f"one-at-a-time HF generate : {t_naive:8.1f} s  {len(docs) / t_naive:6.3f} docs/s  "
        f"{tokens / t_naive:6.1f} tok/s"
    )
    print(
        f"batched (batch {args.batch_size:>2})        : {t_batched:8.1f} s  {len(docs) / t_batched:6.3f} docs/s  "
        f"{tokens / t_batched:6.1f} tok/s"
    )
    print(f"speed-up (batched / HF)   : {t_naive / t_batched:.2f}x")
    print(f"identical generations     : {same} of {len(docs)}")


if __name__ == "__main__":
    main()
