"""Batched self-calibration sampling over the model's forward pass with a KV cache.

Why a hand-written loop rather than ``model.generate`` with a LogitsProcessor:

* a row that ends its generation (samples a stop token) must start a fresh,
  independent generation from the start token *in the same batch row*, while
  the other rows carry on; ``generate`` can only finish a row and pad it;
* sampling must draw from an explicitly seeded ``torch.Generator``;
  ``generate`` samples from torch's global RNG;
* the temperature and the first-token restriction at every step are computed
  by one pure function (:func:`process_logits`) that a test can watch through
  the ``trace`` hook.

How rows restart exactly.  The batch runs in *waves* of ``batch_size`` rows,
one sample (``seq_len`` tokens) per row, with a fresh ``DynamicCache`` per
wave.  Every step feeds one token per row.  When row r restarts at cache
column c, its attention mask is zeroed on every earlier column and its
position ids restart at 0, so the new generation attends to nothing but its
own start token and later tokens, with the positions of a fresh sequence:
mathematically the same as a separate ``generate`` call.  A test checks this
token for token against ``model.generate`` (greedy).  Every step adds at least
one token to every unfinished row, so a wave takes at most ``seq_len - 1``
steps and the cache never holds more than ``seq_len`` positions.

Determinism: which sample a row fills is fixed (wave w, row r -> sample
w * batch_size + r), the only randomness is one uniform per row and step from
the seeded generator (:func:`draw`), and nothing depends on timing.  The same seed, settings,
batch size, hardware and library versions give the same tokens.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from calibench.selfcal.schedule import temperature_at


@dataclass(frozen=True)
class SamplingPlan:
    """Everything that decides which token is drawn at each step."""

    start_id: int
    stop_ids: tuple[int, ...]
    t_init: float
    t_final: float
    schedule_tokens: int
    max_new_tokens: int
    vocab_size: int  # ids >= vocab_size (padding rows of the LM head) are never sampled
    first_token_ids: tuple[int, ...] | None = None  # None: any token may come first
    min_new_tokens: int = 1  # stop tokens are forbidden before this many tokens

    def temperature(self, i: int) -> float:
        return temperature_at(i, self.t_init, self.t_final, self.schedule_tokens)


@dataclass
class GenerationStats:
    """What happened during sampling (deterministic; recorded in the manifest)."""

    generations: int = 0
    ended_by_stop_token: int = 0
    cut_by_max_new_tokens: int = 0
    cut_by_seq_len: int = 0
    stop_tokens: dict[int, int] = field(default_factory=dict)
    lengths: list[int] = field(default_factory=list)  # generated tokens per generation, stop token included
    tokens: int = 0  # tokens written into the samples (start and stop tokens included)
    seconds: float = 0.0  # wall time: reported, never written into the artifact

    def end(self, length: int, how: str, token: int | None = None) -> None:
        self.generations += 1
        self.lengths.append(length)
        if how == "stop":
            self.ended_by_stop_token += 1
            self.stop_tokens[int(token)] = self.stop_tokens.get(int(token), 0) + 1  # type: ignore[arg-type]
        elif how == "max_new_tokens":
            self.cut_by_max_new_tokens += 1
        else:
            self.cut_by_seq_len += 1

    def summary(self) -> dict[str, Any]:
        lengths = np.asarray(self.lengths, dtype=np.float64)
        return {
            "generations": self.generations,
            "ended_by_stop_token": self.ended_by_stop_token,
            "cut_by_max_new_tokens": self.cut_by_max_new_tokens,
            "cut_by_seq_len": self.cut_by_seq_len,
            "stop_tokens_emitted": {str(k): v for k, v in sorted(self.stop_tokens.items())},
            "mean_generation_length": round(float(lengths.mean()), 3) if lengths.size else 0.0,
        }

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else 0.0


def token_mask(ids: Any, size: int, device: Any) -> Any:
    import torch

    mask = torch.zeros(size, dtype=torch.bool, device=device)
    if ids:
        index = torch.as_tensor([i for i in ids if 0 <= i < size], dtype=torch.long, device=device)
        mask[index] = True
    return mask


def process_logits(
    logits: Any, gen_index: list[int], plan: SamplingPlan, masks: dict[str, Any]
) -> tuple[Any, list[float]]:
    """Sampling distribution of each row: (probs [B, V] float32, temperature of each row).

    Row r is at generated-token index ``gen_index[r]`` of its generation:
    index 0 is restricted to ``plan.first_token_ids`` when given; stop tokens
    are forbidden while the index is below ``plan.min_new_tokens``; ids at or
    above ``plan.vocab_size`` are never drawn.  Then
    ``probs = softmax(logits / t_i)`` with ``t_i = plan.temperature(i)``, or a
    one-hot on the argmax where ``t_i == 0``.
    """
    import torch

    logits = logits.float().clone()
    neg_inf = float("-inf")
    if "beyond_vocab" in masks:
        logits.masked_fill_(masks["beyond_vocab"], neg_inf)
    index = torch.as_tensor(gen_index, device=logits.device)
    if plan.first_token_ids is not None:
        first_rows = index == 0
        if bool(first_rows.any()):
            logits[first_rows] = logits[first_rows].masked_fill(~masks["first"], neg_inf)
    early_rows = index < plan.min_new_tokens
    if bool(early_rows.any()):
        logits[early_rows] = logits[early_rows].masked_fill(masks["stop"], neg_inf)
    temps = [plan.temperature(int(i)) for i in gen_index]
    t = torch.tensor(temps, dtype=logits.dtype, device=logits.device)
    greedy = t == 0
    probs = torch.softmax(logits / torch.where(greedy, torch.ones_like(t), t)[:, None], dim=-1)
    if bool(greedy.any()):
        onehot = torch.zeros_like(probs)
        onehot[torch.arange(len(temps), device=logits.device), logits.argmax(dim=-1)] = 1.0
        probs = torch.where(greedy[:, None], onehot, probs)
    return probs, temps


def draw(probs: Any, generator: Any) -> Any:
    """One token per row, drawn from ``probs`` by inverse-CDF sampling on ``generator``.

    Exact: with u ~ U[0, 1) from the seeded generator, the token is the first
    index whose cumulative probability (float64) exceeds u * total, so a token
    is drawn with probability equal to its share and a zero-probability token
    never.  One uniform per row, so the random stream does not depend on the
    vocabulary size, and it is several times faster than ``torch.multinomial``
    on a 50k-token vocabulary on CPU.
    """
    import torch

    cdf = probs.double().cumsum(dim=-1)
    total = cdf[:, -1:]
    u = torch.rand((probs.shape[0], 1), dtype=torch.float64, generator=generator, device=probs.device)
    x = torch.minimum(u * total, torch.nextafter(total, torch.zeros_like(total)))
    return torch.searchsorted(cdf, x, right=True).view(-1)


TraceFn = Callable[[dict[str, Any]], None]


def sample_streams(
    model: Any,
    n: int,
    seq_len: int,
    plan: SamplingPlan,
    seed: int,
    batch_size: int = 16,
    on_tokens: Callable[[int, float], None] | None = None,
    trace: TraceFn | None = None,
) -> tuple[np.ndarray, GenerationStats]:
    """``n`` token streams of ``seq_len``: start token, generation, stop token, start token, ...

    ``on_tokens(added, elapsed_seconds)`` is called after every step (progress);
    ``trace(record)`` receives, at every step, the rows' generated-token
    indices, temperatures, raw logits, sampling probabilities and tokens.
    """
    import torch
    from transformers import DynamicCache

    device = next(model.parameters()).device
    generator = torch.Generator(device=device)
    generator.manual_seed(int(seed))
    vocab_dim = (
        int(model.get_output_embeddings().weight.shape[0])
        if model.get_output_embeddings() is not None
        else plan.vocab_size
    )
    masks = {
        "first": token_mask(plan.first_token_ids or [], vocab_dim, device),
        "stop": token_mask(plan.stop_ids, vocab_dim, device),
    }
    if vocab_dim > plan.vocab_size:
        masks["beyond_vocab"] = torch.arange(vocab_dim, device=device) >= plan.vocab_size
    stop_set = set(plan.stop_ids)
    stats = GenerationStats()
    out = np.empty((n, seq_len), dtype=np.int32)
    began = time.perf_counter()
    with torch.inference_mode():
        for wave_start in range(0, n, batch_size):
            rows = min(batch_size, n - wave_start)
            streams = [[plan.start_id] for _ in range(rows)]
            gen_start = [0] * rows  # cache column of the current generation's start token
            gen_index = [0] * rows  # index of the next generated token within the generation
            done = [False] * rows
            next_input = [plan.start_id] * rows
            mask = torch.zeros(rows, seq_len, dtype=torch.long, device=device)
            cache = DynamicCache(config=model.config)
            stats.tokens += rows  # the start tokens
            if on_tokens is not None:
                on_tokens(rows, time.perf_counter() - began)
            step = 0
            while not all(done):
                mask[:, step] = 1
                input_ids = torch.tensor(next_input, dtype=torch.long, device=device).view(rows, 1)
                positions = torch.tensor([step - g for g in gen_start], dtype=torch.long, device=device).view(rows, 1)
                result = model(
                    input_ids=input_ids,
                    attention_mask=mask[:, : step + 1],
                    position_ids=positions,
                    past_key_values=cache,
                    use_cache=True,
                    logits_to_keep=1,
                )
                logits = result.logits[:, -1, :]
                probs, temps = process_logits(logits, gen_index, plan, masks)
                tokens = draw(probs, generator).tolist()
                if trace is not None:
                    trace(
                        {
                            "step": step,
                            "wave": wave_start // batch_size,
                            "done": list(done),
                            "gen_index": list(gen_index),
                            "temperature": temps,
                            "logits": logits.float().cpu(),
                            "probs": probs.cpu(),
                            "tokens": list(tokens),
                        }
                    )
                added = 0
                for r in range(rows):
                    if done[r]:
                        continue
                    stream, token = streams[r], int(tokens[r])
                    before = len(stream)
                    stream.append(token)
                    gen_index[r] += 1
                    how = (
                        "stop"
                        if token in stop_set
                        else "max_new_tokens"
                        if gen_index[r] >= plan.max_new_tokens
                        else None
                    )
                    if how is not None:
                        stats.end(gen_index[r], how, token)
                        if len(stream) < seq_len and token != plan.start_id:
                            stream.append(plan.start_id)  # the next generation's start token
                    if len(stream) >= seq_len:
                        if how is None:
                            stats.end(gen_index[r], "seq_len")
                        done[r] = True
                        del stream[seq_len:]
                    elif how is not None:  # restart this row: forget its past, positions from 0
                        mask[r, : step + 1] = 0
                        gen_start[r] = step + 1
                        gen_index[r] = 0
                        next_input[r] = plan.start_id
                    else:
                        next_input[r] = token
                    added += len(stream) - before
                stats.tokens += added
                step += 1
                if on_tokens is not None:
                    on_tokens(added, time.perf_counter() - began)
            out[wave_start : wave_start + rows] = np.asarray(streams, dtype=np.int32)
    stats.seconds = time.perf_counter() - began
    return out, stats
