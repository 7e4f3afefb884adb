"""Greedy batched generation with a KV cache, for many prompts of different lengths.

Why not ``model.generate``: it is what the tests compare against, token for
token, but a hand-written loop, like the self-calibration sampler
(:mod:`calibench.selfcal.sampler`, whose cache and mask mechanics it
follows), makes every step visible and cheap to check: one prefill of the
left-padded batch, then one token per row per step on the ``DynamicCache``,
positions counted from each row's first real token, padded columns masked.
Rows stop at a stop token (for chat prompts the sampler's own
:func:`~calibench.selfcal.prompted.chat_stop_ids`) or at
``max_new_tokens``; the batch stops when every row has.  The sampler itself
does not fit: it fills fixed-length streams and restarts rows, where
summarization needs one bounded answer per prompt.

Prompts are sorted by length (stable) before batching, so batches waste
little on padding; the output keeps the input order.  Nothing depends on
timing, so the same model, prompts and batch size give the same tokens.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from calibench.core.settings import DEFAULTS


@dataclass
class Generation:
    tokens: list[int]  # generated ids, the stop token excluded
    stopped: bool  # ended by a stop token (False: cut at max_new_tokens)


@dataclass
class GenerationRun:
    generations: list[Generation]
    seconds: float = 0.0
    new_tokens: int = 0
    batches: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def tokens_per_second(self) -> float:
        return self.new_tokens / self.seconds if self.seconds > 0 else 0.0


def greedy_generate(
    model: Any,
    prompts: Sequence[Sequence[int]],
    *,
    max_new_tokens: int,
    stop_ids: Sequence[int],
    pad_id: int = 0,
    batch_size: int = DEFAULTS.batch_size,
    vocab_size: int | None = None,
    on_done: Callable[[int], None] | None = None,
) -> GenerationRun:
    """Greedy continuations of every prompt (see the module docstring); ``on_done(k)`` after each batch of k."""
    import torch

    if max_new_tokens < 1:
        raise ValueError("max_new_tokens must be at least 1")
    device = next(model.parameters()).device
    head = model.get_output_embeddings()
    vocab_dim = int(head.weight.shape[0]) if head is not None else int(model.config.vocab_size)
    beyond = None
    if vocab_size is not None and vocab_dim > vocab_size:  # padding rows of the LM head are never chosen
        beyond = torch.arange(vocab_dim, device=device) >= vocab_size
    stops = torch.as_tensor(sorted(set(int(s) for s in stop_ids)) or [-1], device=device)
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    results: list[Generation | None] = [None] * len(prompts)
    run = GenerationRun([])
    began = time.perf_counter()
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            for i, gen in zip(
                rows, _batch(model, [prompts[i] for i in rows], max_new_tokens, stops, pad_id, beyond, device)
            ):
                results[i] = gen
                run.new_tokens += len(gen.tokens) + int(gen.stopped)
            run.batches += 1
            if on_done is not None:
                on_done(len(rows))
    run.seconds = time.perf_counter() - began
    run.generations = [g for g in results if g is not None]
    return run


def _batch(
    model: Any, prompts: list[Sequence[int]], max_new: int, stops: Any, pad_id: int, beyond: Any, device: Any
) -> list[Generation]:
    import torch
    from transformers import DynamicCache

    rows, width = len(prompts), max(len(p) for p in prompts)
    ids = torch.full((rows, width), pad_id, dtype=torch.long, device=device)
    mask = torch.zeros((rows, width + max_new), dtype=torch.long, device=device)
    for r, p in enumerate(prompts):
        ids[r, width - len(p) :] = torch.as_tensor(list(p), dtype=torch.long, device=device)
        mask[r, width - len(p) : width] = 1
    positions = (mask[:, :width].cumsum(-1) - 1).clamp(min=0)
    cache = DynamicCache(config=model.config)
    out = model(
        input_ids=ids,
        attention_mask=mask[:, :width],
        position_ids=positions,
        past_key_values=cache,
        use_cache=True,
        logits_to_keep=1,
    )
    last = positions[:, -1:]
    done = torch.zeros(rows, dtype=torch.bool, device=device)
    stopped = torch.zeros(rows, dtype=torch.bool, device=device)
    lengths = torch.zeros(rows, dtype=torch.long, device=device)
    generated = torch.full((rows, max_new), pad_id, dtype=torch.long, device=device)
    for step in range(max_new):
        logits = out.logits[:, -1, :]
        if beyond is not None:
            logits = logits.masked_fill(beyond, float("-inf"))
        token = logits.argmax(dim=-1)
        is_stop = torch.isin(token, stops) & ~done
        stopped |= is_stop
        live = ~done & ~is_stop
        generated[live, step] = token[live]
        lengths += live.long()
        done |= is_stop
        if bool(done.all()) or step == max_new - 1:
            break
        mask[:, width + step] = 1
        last = last + 1
        out = model(
            input_ids=token.view(rows, 1),
            attention_mask=mask[:, : width + step + 1],
            position_ids=last,
            past_key_values=cache,
            use_cache=True,
            logits_to_keep=1,
        )
    return [Generation(generated[r, : int(lengths[r])].tolist(), bool(stopped[r])) for r in range(rows)]
