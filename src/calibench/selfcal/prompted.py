"""Chat self-calibration: an instruct model answers generic prompts through its chat template.

The paper's self-calibration generates from the BOS token alone
(:mod:`calibench.selfcal.api`): the model writes *documents*.  An
instruct or reasoning model is deployed on *conversations*, so this is a
distinct, comparable setting in which it calibrates on its own conversational
output.  Each of the ``n`` samples is a stream of ``seq_len`` tokens made of
whole conversations::

    [prompt 1 rendered, generation prompt] reply 1 <end of turn> [prompt 2 ...] reply 2 <eot> ...  (cut at seq_len)

A prompt is one user message (after an optional ``system`` message) rendered
by :func:`calibench.data.chat.render_conversations` with
``add_generation_prompt=True``; the reply is sampled until a stop token (the
template's end-of-turn token, found by probing the template, and the
tokenizer's / model's EOS ids) or ``max_new_tokens``.  Nothing is inserted
between a reply and the next prompt: the stream holds only rendered prompts
and sampled tokens.

What stays the same as the BOS-only setting, so the two are comparable: the
temperature schedule (:func:`~calibench.selfcal.schedule.temperature_at`,
indexed by the token's position *within its reply*), the pure sampling pieces
(:func:`~calibench.selfcal.sampler.process_logits` and
:func:`~calibench.selfcal.sampler.draw` on a seeded
``torch.Generator``), and the row-restart mechanics: a row whose reply ended
starts its next conversation in the same batch row, with every earlier cache
column masked and positions restarting at 0, exactly like a fresh sequence.

The loop.  A wave of ``batch_size`` rows (one sample each) begins with one
batched prefill of every row's first prompt, left-padded under the attention
mask; then every step feeds one token per row: the next token of a prompt
being read (forced, no sampling) or the token the row just sampled.  Feeding
later prompts token by token costs one step per prompt token, the same as
generating it, and keeps every row independent of the others.

Determinism.  Sample ``i`` reads prompts in the order of its own numpy
generator seeded with ``(seed, i)`` (a permutation of the list, renewed when
used up), so which prompts a sample holds does not depend on the batch size;
the sampled tokens come from one ``torch.Generator`` seeded with ``seed``
(one uniform per sampling row and step), as in the BOS-only sampler.  The
same inputs, seed, batch size, hardware and library versions give
byte-identical sets.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from collections import deque
from collections.abc import Callable, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict

from calibench.core.errors import CalibenchError, ParameterError
from calibench.core.provenance import library_versions
from calibench.data.calibset import CalibrationSet, SamplingRecord, SourceRecord
from calibench.data.chat import model_label, render_conversations, require_chat_template, template_record
from calibench.selfcal.api import MAX_BATCH, TORCH_SAMPLING, _model_name, _model_record
from calibench.selfcal.sampler import GenerationStats, SamplingPlan, draw, process_logits, token_mask
from calibench.selfcal.schedule import check_schedule
from calibench.selfcal.stopwords import _special_ids
from calibench.selfcal.tokens import _ids

BUNDLED_PROMPTS = "prompts_generic.txt"
DEFAULT_MAX_NEW_TOKENS = 1024
PROMPTING = "chat"
PROMPTED_TEMPERATURE_FORMULA = (
    "t_i = t_init + (i / schedule_tokens) * (t_final - t_init) for i < schedule_tokens, t_final after; "
    "i = index of the sampled token within its reply (0 = first token after the generation prompt); t = 0 is greedy; "
    "prompt tokens are never sampled"
)
PROMPTED_SEPARATOR_POLICY = (
    "each conversation is the prompt rendered by the chat template with add_generation_prompt=True, then the "
    "sampled reply, ending with the stop token the model sampled (kept); the next conversation's rendered prompt "
    "follows directly; a reply cut by max_new_tokens is followed by the next prompt only; the last conversation "
    "is cut at seq_len, inside its prompt or its reply"
)
PROMPT_ORDER = (
    "sample i reads the prompt list in the order of numpy.random.default_rng(SeedSequence([seed mod 2**64, i])): "
    "a permutation of the list, a fresh permutation from the same generator when it is used up"
)
# A reply text the probe puts in an assistant turn, to find what the template writes after it.
_PROBE_MARKER = "calibench-probe-reply"


# ----------------------------------------------------------------------------- settings


class PromptedSettings(BaseModel):
    """The knobs of chat self-calibration, validated.

    The schedule defaults are the BOS-only setting's, so that the two settings
    differ only in what the model is asked to write.
    """

    model_config = ConfigDict(extra="forbid")
    t_init: float = 0.5
    t_final: float = 1.0
    schedule_tokens: int = 64
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS
    batch_size: int = 16
    enable_thinking: bool | None = None  # None: the template's default
    system: str | None = None  # a system message before every prompt; None: the template's default

    def check(self) -> None:
        check_schedule(self.t_init, self.t_final, self.schedule_tokens)
        if not 1 <= self.batch_size <= MAX_BATCH:
            raise ParameterError("batch_size", f"must be between 1 and {MAX_BATCH}, got {self.batch_size}")
        if self.max_new_tokens < 1:
            raise ParameterError("max_new_tokens", f"must be at least 1, got {self.max_new_tokens}")
        if self.system is not None and not self.system.strip():
            raise ParameterError("system", "is empty: leave it unset for the template's default")


# ----------------------------------------------------------------------------- prompts


@dataclasses.dataclass(frozen=True)
class PromptList:
    """The user prompts, where they came from, and their hashes (for the manifest)."""

    prompts: tuple[str, ...]
    origin: str
    sha256: str  # of the parsed prompts, one a line: what decides the tokens
    file_sha256: str | None = None  # of the file's bytes, when read from a file

    def record(self) -> dict[str, Any]:
        record: dict[str, Any] = {
            "origin": self.origin,
            "count": len(self.prompts),
            "sha256": self.sha256,
            "order": PROMPT_ORDER,
        }
        if self.file_sha256 is not None:
            record["file_sha256"] = self.file_sha256
        return record


def parse_prompts(text: str) -> list[str]:
    """Prompts of a prompt file: one a line, surrounding whitespace removed, blank and '#' lines skipped.

    Only whole-line comments: a prompt may well contain '#' (code, issue numbers).
    """
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def _prompts_sha256(prompts: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(prompts).encode("utf-8")).hexdigest()


def load_prompts(source: str | os.PathLike[str] | Sequence[str] | None = None) -> PromptList:
    """The shipped generic prompts (``None``), a prompt file, or a list of prompt strings."""
    file_sha: str | None = None
    if source is None:
        raw = resources.files("calibench.selfcal").joinpath(BUNDLED_PROMPTS).read_bytes()
        origin = f"calibench:{BUNDLED_PROMPTS}"
    elif isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise ParameterError("prompts", f"file {path} does not exist: give a text file with one prompt a line")
        raw = path.read_bytes()
        origin = path.name  # not the absolute path: the manifest must not depend on the machine
    else:
        prompts = [p for p in source]
        for i, p in enumerate(prompts):
            if not isinstance(p, str) or not p.strip():
                raise ParameterError(
                    "prompts",
                    f"prompt {i} is {'empty' if isinstance(p, str) else type(p).__name__}: give non-empty strings",
                )
        if not prompts:
            raise ParameterError("prompts", "is an empty list")
        return PromptList(tuple(prompts), "given list", _prompts_sha256(prompts))
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ParameterError("prompts", f"file {origin} is not UTF-8 text") from None
    file_sha = hashlib.sha256(raw).hexdigest()
    prompts = parse_prompts(text)
    if not prompts:
        raise ParameterError("prompts", f"file {origin} holds no prompts (one a line, '#' lines are comments)")
    return PromptList(tuple(prompts), origin, _prompts_sha256(prompts), file_sha)


def prompt_conversations(prompts: Sequence[str], system: str | None = None) -> list[list[dict[str, str]]]:
    """Each prompt as a one-turn conversation, after the system message when one is given."""
    head = [{"role": "system", "content": system}] if system is not None else []
    return [[*head, {"role": "user", "content": p}] for p in prompts]


class PromptOrder:
    """Which prompt sample ``sample`` reads next: its own seeded permutations of the list."""

    def __init__(self, seed: int, sample: int, count: int):
        self._rng = np.random.default_rng(np.random.SeedSequence([int(seed) % 2**64, int(sample)]))
        self._count = count
        self._queue: deque[int] = deque()

    def next(self) -> int:
        if not self._queue:
            self._queue.extend(int(i) for i in self._rng.permutation(self._count))
        return self._queue.popleft()


# ----------------------------------------------------------------------------- stop tokens


def end_of_turn_token(tokenizer: Any, template: str, enable_thinking: bool | None = None) -> int | None:
    """The special token the template writes right after an assistant reply (``<|im_end|>``, ``<|eot_id|>``...).

    Found by rendering a probe conversation and tokenizing what follows the
    reply, because the tokenizer's ``eos_token`` is not always the token that
    ends a turn (Llama 3: ``<|end_of_text|>`` against ``<|eot_id|>``).  None
    when the template writes no special token there, or refuses the probe.
    """
    probe = [{"role": "user", "content": "Hello."}, {"role": "assistant", "content": _PROBE_MARKER}]
    kwargs = {"enable_thinking": enable_thinking} if enable_thinking is not None else {}
    try:
        text = tokenizer.apply_chat_template(probe, chat_template=template, tokenize=False, **kwargs)
    except Exception:  # a template that raises on this probe: rely on the EOS ids
        return None
    at = text.rfind(_PROBE_MARKER) if isinstance(text, str) else -1
    if at < 0:
        return None
    ids = tokenizer(text[at + len(_PROBE_MARKER) :], add_special_tokens=False)["input_ids"]
    if ids and int(ids[0]) in _special_ids(tokenizer):
        return int(ids[0])
    return None


def chat_stop_ids(
    tokenizer: Any, template: str, model: Any | None = None, enable_thinking: bool | None = None
) -> tuple[list[int], int | None]:
    """(sorted ids that end a reply, the template's end-of-turn id or None).

    The end-of-turn token, the tokenizer's EOS, and the EOS ids of the model's
    config and generation config (which list every id an instruct model stops at).
    """
    eot = end_of_turn_token(tokenizer, template, enable_thinking)
    ids = set(_ids(tokenizer.eos_token_id)) | set(_ids(eot))
    if model is not None:
        ids |= set(_ids(getattr(getattr(model, "config", None), "eos_token_id", None)))
        ids |= set(_ids(getattr(getattr(model, "generation_config", None), "eos_token_id", None)))
    stops = sorted(i for i in ids if 0 <= i < len(tokenizer))
    if not stops:
        raise CalibenchError(
            "the model has no token that ends a reply (no EOS, and its chat template writes no "
            "special token after a reply): replies could never end"
        )
    return stops, eot


# ----------------------------------------------------------------------------- sampling


@dataclasses.dataclass
class PromptedStats(GenerationStats):
    """GenerationStats (one "generation" per reply) plus the prompts' share of the stream."""

    conversations: int = 0  # prompts placed in samples, the cut last one included
    prompt_tokens: int = 0  # tokens of rendered prompts written into the samples
    samples_ending_in_prompt: int = 0  # samples whose last conversation was cut before its reply began
    # Per sample: (prompt index, start in the sample, prompt tokens, reply tokens) of every conversation, in order.
    # Not written into the manifest (it follows from the seed); for analysis and tests.
    spans: list[list[tuple[int, int, int, int]]] = dataclasses.field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        out = super().summary()
        out.update(
            {
                "conversations": self.conversations,
                "prompt_tokens": self.prompt_tokens,
                "reply_tokens": self.tokens - self.prompt_tokens,
                "samples_ending_in_prompt": self.samples_ending_in_prompt,
            }
        )
        return out


def sample_prompted_streams(
    model: Any,
    n: int,
    seq_len: int,
    rendered: Sequence[Sequence[int]],
    plan: SamplingPlan,
    seed: int,
    batch_size: int = 16,
    on_tokens: Callable[[int, float], None] | None = None,
) -> tuple[np.ndarray, PromptedStats]:
    """``n`` streams of ``seq_len`` tokens: rendered prompt, sampled reply, rendered prompt, ...

    ``rendered[k]`` is prompt ``k``'s token ids (generation prompt included),
    each shorter than ``seq_len``.  ``plan`` supplies the schedule, stop ids,
    ``max_new_tokens`` and vocabulary size (its ``start_id`` and
    ``first_token_ids`` are not used).  See the module docstring.
    """
    import torch
    from transformers import DynamicCache

    if not rendered or any(not 0 < len(p) < seq_len for p in rendered):
        raise ValueError("every rendered prompt must hold between 1 and seq_len - 1 tokens")
    device = next(model.parameters()).device
    generator = torch.Generator(device=device)
    generator.manual_seed(int(seed))
    head = model.get_output_embeddings()
    vocab_dim = int(head.weight.shape[0]) if head is not None else plan.vocab_size
    masks = {"stop": token_mask(plan.stop_ids, vocab_dim, device)}
    if vocab_dim > plan.vocab_size:
        masks["beyond_vocab"] = torch.arange(vocab_dim, device=device) >= plan.vocab_size
    stop_set = set(plan.stop_ids)
    stats = PromptedStats()
    out = np.empty((n, seq_len), dtype=np.int32)
    began = time.perf_counter()
    with torch.inference_mode():
        for wave_start in range(0, n, batch_size):
            rows = min(batch_size, n - wave_start)
            orders = [PromptOrder(seed, wave_start + r, len(rendered)) for r in range(rows)]
            spans: list[list[list[int]]] = [[] for _ in range(rows)]  # [prompt, start, prompt len, reply len]
            first = [orders[r].next() for r in range(rows)]
            streams = [list(rendered[k]) for k in first]
            for r, k in enumerate(first):
                spans[r].append([k, 0, len(streams[r]), 0])
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
            conv_start = list(pad)  # cache column of each row's current conversation's first token
            gen_index = [0] * rows  # index of the next sampled token within the row's reply
            pending: list[deque[int]] = [deque() for _ in range(rows)]  # prompt tokens still to feed
            done = [False] * rows
            next_input = [0] * rows
            stats.conversations += rows
            stats.prompt_tokens += sum(len(s) for s in streams)
            stats.tokens += sum(len(s) for s in streams)
            if on_tokens is not None:
                on_tokens(sum(len(s) for s in streams), time.perf_counter() - began)
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
                added = 0
                if sampling:
                    probs, _ = process_logits(logits[sampling], [gen_index[r] for r in sampling], plan, masks)
                    tokens = draw(probs, generator).tolist()
                    for r, token in zip(sampling, tokens):
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
                        elif how is not None:  # the next conversation, in the same row
                            k = orders[r].next()
                            prompt = list(rendered[k])[: seq_len - len(streams[r])]
                            spans[r].append([k, len(streams[r]), len(prompt), 0])
                            streams[r].extend(prompt)
                            added += len(prompt)
                            stats.conversations += 1
                            stats.prompt_tokens += len(prompt)
                            if len(streams[r]) >= seq_len:
                                done[r] = True
                                stats.samples_ending_in_prompt += 1
                            else:
                                pending[r].extend(prompt)
                                conv_start[r] = column + 1  # where the prompt's first token goes
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
                        if conv_start[r] == column:  # a new conversation: forget the row's past
                            mask[r, :column] = 0
                        next_input[r] = pending[r].popleft()
                mask[:, column] = 1
                input_ids = torch.tensor(next_input, dtype=torch.long, device=device).view(rows, 1)
                # a finished row's input is ignored; position 0 keeps it inside any position table
                positions = torch.tensor(
                    [0 if done[r] else column - conv_start[r] for r in range(rows)], dtype=torch.long, device=device
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
            stats.spans.extend([[tuple(span) for span in row] for row in spans])  # type: ignore[misc]
    stats.seconds = time.perf_counter() - began
    return out, stats


# ----------------------------------------------------------------------------- the set


def render_prompts(
    tokenizer: Any,
    prompts: PromptList,
    *,
    system: str | None,
    template: str,
    enable_thinking: bool | None,
    seq_len: int,
    model_name: str,
) -> list[list[int]]:
    """Every prompt rendered with the generation prompt; each must leave room for a reply in ``seq_len``."""
    rendered = render_conversations(
        prompt_conversations(prompts.prompts, system),
        tokenizer,
        enable_thinking=enable_thinking,
        template=template,
        add_generation_prompt=True,
        model_name=model_name,
    )
    longest = max(range(len(rendered)), key=lambda i: len(rendered[i]))
    if len(rendered[longest]) >= seq_len:
        raise ParameterError(
            "seq_len",
            f"{seq_len} leaves no room for a reply: prompt {longest} of {prompts.origin} "
            f"renders to {len(rendered[longest])} tokens (template and system message "
            "included); use a longer seq_len or shorter prompts",
        )
    return rendered


def generate_prompted_set(
    model: Any,
    tokenizer: Any | None = None,
    *,
    n: int = 128,
    seq_len: int = 2048,
    seed: int = 0,
    settings: PromptedSettings | None = None,
    prompts: str | os.PathLike[str] | Sequence[str] | None = None,
    chat_template: str | None = None,
    max_seq_len: int | None = None,
    dtype: str = "float32",
    device: str = "cpu",
    **overrides: Any,
) -> tuple[CalibrationSet, PromptedStats]:
    """``n`` x ``seq_len`` tokens of the model's own replies to chat prompts, and what happened.

    ``model`` is a loaded causal LM (then pass ``tokenizer``) or a model spec
    (bundled name, directory, hub id) loaded here with ``dtype`` and
    ``device``.  Knobs come from ``settings`` and/or keyword overrides
    (``t_init=``, ``t_final=``, ``schedule_tokens=``, ``max_new_tokens=``,
    ``batch_size=``, ``enable_thinking=``, ``system=``).  ``prompts``: a
    prompt file, a list of strings, or ``None`` for the generic list shipped
    with calibench.  ``chat_template``: template *text* overriding the
    tokenizer's (read a file with :func:`calibench.data.chat.read_chat_template`).
    """
    from calibench.core.progress import task
    from calibench.data.draw import validate_sizes
    from calibench.models import load_model, load_tokenizer, model_max_length

    settings = (settings or PromptedSettings()).model_copy(update=overrides)
    settings = PromptedSettings.model_validate(settings.model_dump())
    settings.check()
    spec = model if isinstance(model, (str, os.PathLike)) else None
    validate_sizes(n, seq_len, 1, None)
    if spec is not None:
        validate_sizes(n, seq_len, 1, max_seq_len or model_max_length(spec))
        tokenizer = tokenizer or load_tokenizer(spec)
    elif tokenizer is None:
        raise TypeError("generate_prompted_set(model, tokenizer): a loaded model needs its tokenizer")
    else:
        validate_sizes(n, seq_len, 1, max_seq_len or model_max_length(model))
    name = _model_name(model, spec)
    # Everything that can be refused is checked before the model is loaded.
    template = require_chat_template(tokenizer, model_label(tokenizer, name), chat_template)
    template_rec = template_record(tokenizer, chat_template, settings.enable_thinking, model_name=name)
    prompt_list = load_prompts(prompts)
    rendered = render_prompts(
        tokenizer,
        prompt_list,
        system=settings.system,
        template=template,
        enable_thinking=settings.enable_thinking,
        seq_len=seq_len,
        model_name=name,
    )

    loaded = load_model(spec, dtype=dtype, device=device) if spec is not None else model
    stops, eot = chat_stop_ids(tokenizer, template, loaded, settings.enable_thinking)
    plan = SamplingPlan(
        start_id=int(rendered[0][0]),
        stop_ids=tuple(stops),
        t_init=float(settings.t_init),
        t_final=float(settings.t_final),
        schedule_tokens=int(settings.schedule_tokens),
        max_new_tokens=int(settings.max_new_tokens),
        vocab_size=len(tokenizer),
    )

    with task("generating replies", total=n * seq_len, unit="tokens") as bar:
        produced = 0

        def on_tokens(added: int, elapsed: float) -> None:
            nonlocal produced
            produced += added
            bar.advance(added)
            if elapsed > 0:
                bar.update(description=f"generating replies {produced / elapsed:,.0f} tokens/s")

        tokens, stats = sample_prompted_streams(
            loaded, n, seq_len, rendered, plan, seed, settings.batch_size, on_tokens=on_tokens
        )

    generator = {
        "method": "self-calibration",
        "prompting": PROMPTING,
        "model": _model_record(loaded, name, dtype, device),
        "backend": "torch",
        "seed": seed,
        "n": n,
        "seq_len": seq_len,
        "t_init": plan.t_init,
        "t_final": plan.t_final,
        "schedule_tokens": plan.schedule_tokens,
        "temperature_formula": PROMPTED_TEMPERATURE_FORMULA,
        "prompts": prompt_list.record(),
        "system": settings.system,
        "chat_template": template_rec,
        "stop_token_ids": list(plan.stop_ids),
        "end_of_turn": None if eot is None else {"id": eot, "text": str(tokenizer.convert_ids_to_tokens(eot))},
        "separator": PROMPTED_SEPARATOR_POLICY,
        "min_new_tokens": plan.min_new_tokens,
        "max_new_tokens": plan.max_new_tokens,
        "batch_size": settings.batch_size,
        "sampling": TORCH_SAMPLING + "; the first prompt of every row of a wave is prefilled left-padded, later "
        "prompts are fed one token per step",
        "libraries": library_versions(["torch", "transformers"]),
        "result": stats.summary(),
    }
    fingerprint = hashlib.sha256(
        json.dumps({k: v for k, v in generator.items() if k != "result"}, sort_keys=True).encode()
    ).hexdigest()[:16]
    source = SourceRecord(
        name="self",
        kind="generated",
        split="none",
        spec={"model": name, "prompting": PROMPTING},
        fingerprint=fingerprint,
    )
    bos_id = tokenizer.bos_token_id
    sampling = SamplingRecord(mode="generated", bos=bos_id is not None and bool((tokens[:, 0] == bos_id).all()))
    calib = CalibrationSet.create(tokens, tokenizer, source=source, sampling=sampling, seed=seed, generator=generator)
    return calib, stats
