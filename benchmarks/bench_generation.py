"""Batched self-calibration sampling vs naive one-sample-at-a-time HF ``generate``.

Both sides produce the same token budget (n samples x seq_len tokens, short
generations concatenated until each sample is full) with the same settings:
start token, temperature schedule, first-token restriction, stop tokens and
min_new_tokens.  The baseline runs ``model.generate`` once per generation,
batch size 1, with a LogitsProcessor that applies calibench's own
``process_logits`` (so the per-step math is identical) and sampling at
temperature 1 with top-k/top-p off.  Prints tokens/s of each and the ratio,
measured in the same run.  Not a test: nothing is asserted.

    python benchmarks/bench_generation.py --model smollm2-135m --n 16 --seq-len 256 --batch-size 16
"""

from __future__ import annotations

import argparse
import time


def naive_hf_generate(model, tokenizer, plan, n: int, seq_len: int, seed: int):
    import torch
    from transformers import LogitsProcessor, LogitsProcessorList

    from calibench.selfcal.sampler import process_logits, token_mask

    vocab_dim = model.get_output_embeddings().weight.shape[0]
    masks = {
        "first": token_mask(plan.first_token_ids or [], vocab_dim, "cpu"),
        "stop": token_mask(plan.stop_ids, vocab_dim, "cpu"),
    }
    if vocab_dim > plan.vocab_size:
        masks["beyond_vocab"] = torch.arange(vocab_dim) >= plan.vocab_size

    class Schedule(LogitsProcessor):
        def __call__(self, input_ids, scores):
            i = input_ids.shape[1] - 1  # the prompt is the start token alone
            probs, _ = process_logits(scores, [i] * scores.shape[0], plan, masks)
            return torch.log(probs)

    torch.manual_seed(seed)  # HF generate samples from the global RNG: the baseline's way
    processors = LogitsProcessorList([Schedule()])
    prompt = torch.tensor([[plan.start_id]])
    rows = []
    generations = 0
    began = time.perf_counter()
    with torch.inference_mode():
        for _ in range(n):
            stream = [plan.start_id]
            while len(stream) < seq_len:
                budget = min(plan.max_new_tokens, seq_len - len(stream))
                out = model.generate(
                    prompt,
                    attention_mask=torch.ones_like(prompt),
                    do_sample=True,
                    temperature=1.0,
                    top_k=0,
                    top_p=1.0,
                    max_new_tokens=budget,
                    logits_processor=processors,
                    eos_token_id=list(plan.stop_ids),
                    pad_token_id=plan.stop_ids[0],
                )
                ids = out[0, 1:].tolist()
                stream.extend(ids)
                generations += 1
                if ids and ids[-1] in plan.stop_ids and ids[-1] != plan.start_id and len(stream) < seq_len:
                    stream.append(plan.start_id)
            rows.append(stream[:seq_len])
    return rows, time.perf_counter() - began, generations


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--n", type=int, default=16)
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--first-token", default="stopwords", choices=["any", "stopwords"])
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--naive-n", type=int, default=0, help="samples for the baseline (0: same as --n)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    import dataclasses

    from calibench.models import load_model, load_tokenizer
    from calibench.selfcal.api import GenerationSettings, build_plan
    from calibench.selfcal.sampler import sample_streams
    from calibench.selfcal.tokens import stop_token_ids

    tokenizer = load_tokenizer(args.model)
    model = load_model(args.model, device=args.device)
    settings = GenerationSettings(first_token=args.first_token, batch_size=args.batch_size)
    plan, start, _ = build_plan(tokenizer, settings, args.seq_len)
    plan = dataclasses.replace(plan, stop_ids=tuple(stop_token_ids(tokenizer, start, model)))
    print(
        f"model {args.model}, {args.n} x {args.seq_len} tokens, start {start.text!r}, "
        f"t {plan.t_init}->{plan.t_final} over {plan.schedule_tokens}, first token {args.first_token}, "
        f"torch threads {torch.get_num_threads()}, device {args.device}"
    )

    # warm-up (first forward passes allocate)
    sample_streams(model, 2, 8, plan, seed=args.seed, batch_size=2)

    cpu0 = time.process_time()
    tokens, stats = sample_streams(model, args.n, args.seq_len, plan, seed=args.seed, batch_size=args.batch_size)
    batched_cpu = time.process_time() - cpu0
    batched_tps = tokens.size / stats.seconds
    print(
        f"calibench batched (batch {args.batch_size}): {tokens.size} tokens in {stats.seconds:.1f} s wall "
        f"({batched_cpu:.1f} s CPU) = {batched_tps:,.1f} tokens/s ({stats.generations} generations)"
    )

    naive_n = args.naive_n or args.n
    cpu0 = time.process_time()
    rows, seconds, generations = naive_hf_generate(model, tokenizer, plan, naive_n, args.seq_len, args.seed)
    naive_cpu = time.process_time() - cpu0
    naive_tokens = naive_n * args.seq_len
    naive_tps = naive_tokens / seconds
    print(
        f"HF generate, one sample at a time: {naive_tokens} tokens in {seconds:.1f} s wall ({naive_cpu:.1f} s CPU) "
        f"= {naive_tps:,.1f} tokens/s ({generations} generations)"
    )
    print(f"speed-up (tokens/s ratio, wall clock): {batched_tps / naive_tps:.2f}x")
    # On a shared machine the wall clock includes time the process waited for a core; CPU time does not.
    print(f"speed-up (tokens per CPU-second): {(tokens.size / batched_cpu) / (naive_tokens / naive_cpu):.2f}x")


if __name__ == "__main__":
    main()
