"""Batched self-calibration sampling over the model's forward pass with a KV cache: one loop for every strategy.

A sample is a stream of *turns*: an opening (the start token alone for
BOS-only generation, a rendered chat prompt for chat prompting), then a reply
sampled with the temperature schedule until a stop token or
``max_new_tokens``, then the next turn's opening, ... cut at ``seq_len``.
:func:`sample_turns` is the loop; a strategy supplies only a
:class:`TurnSource` (how each turn opens).  :func:`sample_streams` is the
BOS-only case (:class:`StartTokenTurns`).

Why a hand-written loop rather than ``model.generate`` with a LogitsProcessor:

* a row that ends its reply (samples a stop token) must start a fresh,
  independent turn *in the same batch row*, while the other rows carry on;
  ``generate`` can only finish a row and pad it;
* sampling must draw from an explicitly seeded ``torch.Generator``;
  ``generate`` samples from torch's global RNG;
* the temperature and the first-token restriction at every step are computed
  by one pure function (:func:`process_logits`) that a test can watch through
  the ``trace`` hook.

How rows restart exactly.  The batch runs in *waves* of ``batch_size`` rows,
one sample (``seq_len`` tokens) per row, with a fresh ``DynamicCache`` per
wave.  A wave begins with one batched prefill of every row's first opening
(left-padded under the attention mask); then every step feeds one token per
row.  When row r's next turn starts at cache column c, its attention mask is
zeroed on every earlier column and its position ids restart at 0, so the new
turn attends to nothing but its own opening and later tokens, with the
positions of a fresh sequence: mathematically the same as a separate
``generate`` call.  Tests check this token for token against
``model.generate`` (greedy), for both strategies.  Every step adds at least
one token to every unfinished row, so the cache never holds more than the
prefill plus ``seq_len`` columns.

Determinism: which sample a row fills is fixed (wave w, row r -> sample
w * batch_size + r), the only randomness is one uniform per drawn row and
step from the seeded generator (:func:`draw`), and nothing depends on timing.
The same seed, settings, batch size, hardware and library versions give the
same tokens.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

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
            assert token is not None, "a generation ended by a stop token names it"
            self.stop_tokens[int(token)] = self.stop_tokens.get(int(token), 0) + 1
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

    def begin_turn(self, written: int, fills: bool) -> None:
        """A turn's opening (``written`` tokens: a start token, a rendered prompt) was written into a sample;
        ``fills``: it filled the sample.  Nothing to count here; a strategy's stats may."""

    def add_spans(self, spans: list[list[tuple[int, int, int, int]]]) -> None:
        """Each sample's (opening key, start, opening tokens, reply tokens) of every turn, after its wave."""


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


@dataclass(frozen=True)
class Turn:
    """The opening of one turn of a sample: what is written into the sample, and what is fed to the model.

    ``fed`` is None when it is ``written`` (a rendered prompt); it differs for
    the start token after a stop token that is the start token itself (written
    once, as the stop token, yet fed again to open the next generation).
    """

    key: int  # which opening (the prompt's index; 0 for the start token)
    written: tuple[int, ...]
    fed: tuple[int, ...] | None = None

    @property
    def feed(self) -> tuple[int, ...]:
        return self.written if self.fed is None else self.fed


class TurnSource(Protocol):
    """What a self-calibration strategy supplies to the sampling loop: how each sample's turns open."""

    @property
    def draw_every_row(self) -> bool:
        """True: one uniform per row and step, finished rows included (the BOS-only stream, as recorded);
        False: one uniform per row that samples at that step."""
        ...

    def opener(self, sample: int) -> Callable[[int | None], Turn]:
        """Sample ``sample``'s turn openings: called with None for its first turn, then with the token that
        ended each reply (a stop token, or the token that reached ``max_new_tokens``)."""
        ...


@dataclass(frozen=True)
class StartTokenTurns:
    """BOS-only turns: every generation opens with the start token alone.

    The token that ended a generation stays in the sample; the start token
    follows unless that token is the start token itself (then it is written
    once but still fed, so the next generation sees a fresh start token).
    """

    start_id: int
    draw_every_row: bool = True

    def opener(self, sample: int) -> Callable[[int | None], Turn]:
        start = (self.start_id,)

        def turn(ended_by: int | None) -> Turn:
            return Turn(0, () if ended_by == self.start_id else start, start)

        return turn


TraceFn = Callable[[dict[str, Any]], None]


def sample_turns(
    model: Any,
    n: int,
    seq_len: int,
    plan: SamplingPlan,
    seed: int,
    turns: TurnSource,
    batch_size: int = 16,
    on_tokens: Callable[[int, float], None] | None = None,
    trace: TraceFn | None = None,
    stats: GenerationStats | None = None,
) -> tuple[np.ndarray, GenerationStats]:
    """``n`` streams of ``seq_len`` tokens: opening, sampled reply, opening, sampled reply, ... (cut at seq_len).

    ``turns`` says how every turn opens (the start token alone, a rendered
    prompt); the opening of a sample's first turn must be shorter than
    ``seq_len``.  A wave of ``batch_size`` rows (one sample each) begins with
    one batched prefill of every row's first opening, left-padded under the
    attention mask; then every step feeds one token per row: the next token of
    an opening being read (forced, no sampling) or the token the row just
    sampled.  A row whose reply ended starts its next turn in the same row,
    every earlier cache column masked and positions from 0.  ``plan`` supplies
    the schedule, stop ids, first-token restriction, ``max_new_tokens`` and
    vocabulary size (not ``start_id``: ``turns`` opens the turns).

    ``on_tokens(added, elapsed_seconds)`` reports progress; ``trace(record)``
    receives, at every sampling step, the rows drawn, every row's
    generated-token index, and the drawn rows' temperatures, raw logits (every
    row), sampling probabilities and tokens.  ``stats`` collects what happened
    (a :class:`GenerationStats` by default).
    """
    import torch
    from transformers import DynamicCache

    device = next(model.parameters()).device
    generator = torch.Generator(device=device)
    generator.manual_seed(int(seed))
    head = model.get_output_embeddings()
    vocab_dim = int(head.weight.shape[0]) if head is not None else plan.vocab_size
    masks = {
        "first": token_mask(plan.first_token_ids or [], vocab_dim, device),
        "stop": token_mask(plan.stop_ids, vocab_dim, device),
    }
    if vocab_dim > plan.vocab_size:
        masks["beyond_vocab"] = torch.arange(vocab_dim, device=device) >= plan.vocab_size
    stop_set = set(plan.stop_ids)
    stats = GenerationStats() if stats is None else stats
    out = np.empty((n, seq_len), dtype=np.int32)
    began = time.perf_counter()
    with torch.inference_mode():
        for wave_start in range(0, n, batch_size):
            rows = min(batch_size, n - wave_start)
            openers = [turns.opener(wave_start + r) for r in range(rows)]
            firsts = [opener(None) for opener in openers]
            if any(not 0 < len(t.written) < seq_len or t.feed != t.written for t in firsts):
                raise ValueError("a sample's first opening must hold between 1 and seq_len - 1 tokens, all fed")
            streams = [list(t.written) for t in firsts]
            spans: list[list[list[int]]] = [[[t.key, 0, len(t.written), 0]] for t in firsts]
            for t in firsts:
                stats.begin_turn(len(t.written), False)
            width = max(len(s) for s in streams)
            pad = [width - len(s) for s in streams]
            # The cache holds the left-padded prefill, then at most one column per further token of a sample.
            mask = torch.zeros(rows, width + seq_len, dtype=torch.long, device=device)
            prefill = torch.zeros(rows, width, dtype=torch.long, device=device)
            for r, s in enumerate(streams):
                prefill[r, pad[r] :] = torch.tensor(s, dtype=torch.long, device=device)
                mask[r, pad[r] : width] = 1
            columns = torch.arange(width, device=device).view(1, width)
            positions = (columns - torch.tensor(pad, device=device).view(rows, 1)).clamp(min=0)
            turn_start = list(pad)  # cache column of each row's current turn's first token
            gen_index = [0] * rows  # index of the next sampled token within the row's reply
            pending: list[deque[int]] = [deque() for _ in range(rows)]  # opening tokens still to feed
            done = [False] * rows
            next_input = [0] * rows
            written = sum(len(s) for s in streams)
            stats.tokens += written
            if on_tokens is not None:
                on_tokens(written, time.perf_counter() - began)
            cache = DynamicCache(config=model.config)
            result = model(
                input_ids=prefill,
                attention_mask=mask[:, :width],
                position_ids=positions,
                past_key_values=cache,
                use_cache=True,
                logits_to_keep=1,
            )
            column = width - 1  # the cache column the logits just computed belong to
            while True:
                logits = result.logits[:, -1, :]
                sampling = [r for r in range(rows) if not done[r] and not pending[r]]
                drawn = list(range(rows)) if turns.draw_every_row else sampling
                added = 0
                if drawn:
                    row_logits = logits if turns.draw_every_row else logits[drawn]
                    probs, temps = process_logits(row_logits, [gen_index[r] for r in drawn], plan, masks)
                    tokens = draw(probs, generator).tolist()
                    if trace is not None:
                        trace(
                            {
                                "step": column,
                                "wave": wave_start // batch_size,
                                "rows": list(drawn),
                                "done": list(done),
                                "gen_index": list(gen_index),
                                "temperature": temps,
                                "logits": logits.float().cpu(),
                                "probs": probs.cpu(),
                                "tokens": list(tokens),
                            }
                        )
                    sampling_rows = set(sampling)
                    for r, token in zip(drawn, tokens):
                        if r not in sampling_rows:  # drawn for the random stream's sake only
                            continue
                        token = int(token)
                        streams[r].append(token)
                        spans[r][-1][3] += 1
                        added += 1
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
                        if len(streams[r]) >= seq_len:
                            if how is None:
                                stats.end(gen_index[r], "seq_len")
                            done[r] = True
                        elif how is not None:  # the next turn, in the same row
                            turn = openers[r](token)
                            opening = list(turn.written[: seq_len - len(streams[r])])
                            spans[r].append([turn.key, len(streams[r]), len(opening), 0])
                            streams[r].extend(opening)
                            added += len(opening)
                            fills = len(streams[r]) >= seq_len
                            stats.begin_turn(len(opening), fills)
                            if fills:
                                done[r] = True
                            else:
                                pending[r].extend(turn.feed)
                                turn_start[r] = column + 1  # where the opening's first token goes
                                gen_index[r] = 0
                        else:
                            next_input[r] = token
                stats.tokens += added
                if on_tokens is not None and added:
                    on_tokens(added, time.perf_counter() - began)
                if all(done):
                    break
                column += 1
                for r in range(rows):
                    if pending[r]:
                        if turn_start[r] == column:  # a new turn: forget the row's past
                            mask[r, :column] = 0
                        next_input[r] = pending[r].popleft()
                mask[:, column] = 1
                input_ids = torch.tensor(next_input, dtype=torch.long, device=device).view(rows, 1)
                # a finished row's input is ignored; position 0 keeps it inside any position table
                positions = torch.tensor(
                    [0 if done[r] else column - turn_start[r] for r in range(rows)], dtype=torch.long, device=device
                ).view(rows, 1)
                result = model(
                    input_ids=input_ids,
                    attention_mask=mask[:, : column + 1],
                    position_ids=positions,
                    past_key_values=cache,
                    use_cache=True,
                    logits_to_keep=1,
                )
            out[wave_start : wave_start + rows] = np.asarray([s[:seq_len] for s in streams], dtype=np.int32)
            stats.add_spans([[(a, b, c, d) for a, b, c, d in row] for row in spans])
    stats.seconds = time.perf_counter() - began
    return out, stats


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

    :func:`sample_turns` with every turn opened by ``plan.start_id`` alone
    (:class:`StartTokenTurns`); ``on_tokens`` and ``trace`` as there.
    """
    return sample_turns(model, n, seq_len, plan, seed, StartTokenTurns(plan.start_id), batch_size, on_tokens, trace)
