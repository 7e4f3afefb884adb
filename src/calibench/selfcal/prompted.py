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

The loop is the shared one (:func:`calibench.selfcal.sampler.sample_turns`),
as is the rest of the pipeline (:mod:`calibench.selfcal.pipeline`); this
module supplies only what differs: the settings, the prompts, how a turn
opens (:class:`PromptTurns`: the next prompt of the sample's own order), the
stop tokens and the record.  A wave of ``batch_size`` rows (one sample each)
begins with one batched prefill of every row's first prompt, left-padded
under the attention mask; then every step feeds one token per row: the next
token of a prompt being read (forced, no sampling) or the token the row just
sampled.  Feeding later prompts token by token costs one step per prompt
token, the same as generating it, and keeps every row independent of the
others.

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
import os
from collections import deque
from collections.abc import Callable, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from calibench.core.errors import CalibenchError, ParameterError
from calibench.core.settings import DEFAULTS
from calibench.data.calibset import CalibrationSet
from calibench.data.chat import model_label, render_conversations, require_chat_template, template_record
from calibench.selfcal.pipeline import TORCH_SAMPLING, Job, SamplerSettings, Strategy, generate
from calibench.selfcal.sampler import GenerationStats, SamplingPlan, Turn, sample_turns
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


class PromptedSettings(SamplerSettings):
    """The knobs of chat self-calibration, validated.

    The schedule (and its defaults) is the BOS-only setting's, so that the two
    settings differ only in what the model is asked to write.
    """

    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS
    batch_size: int = 16
    enable_thinking: bool | None = None  # None: the template's default
    system: str | None = None  # a system message before every prompt; None: the template's default

    def check(self) -> None:
        super().check()
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

    def begin_turn(self, written: int, fills: bool) -> None:
        self.conversations += 1
        self.prompt_tokens += written
        self.samples_ending_in_prompt += fills

    def add_spans(self, spans: list[list[tuple[int, int, int, int]]]) -> None:
        self.spans.extend(spans)

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


class PromptTurns:
    """Chat turns: each opens with the next prompt of the sample's own seeded order, rendered."""

    draw_every_row = False  # one uniform per row that samples at a step

    def __init__(self, rendered: Sequence[Sequence[int]], seed: int):
        self.rendered = [tuple(int(t) for t in prompt) for prompt in rendered]
        self.seed = seed

    def opener(self, sample: int) -> Callable[[int | None], Turn]:
        order = PromptOrder(self.seed, sample, len(self.rendered))

        def turn(ended_by: int | None) -> Turn:
            k = order.next()
            return Turn(k, self.rendered[k])

        return turn


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
    ``first_token_ids`` are not used).  The shared loop
    (:func:`~calibench.selfcal.sampler.sample_turns`) with :class:`PromptTurns`.
    """
    if not rendered or any(not 0 < len(p) < seq_len for p in rendered):
        raise ValueError("every rendered prompt must hold between 1 and seq_len - 1 tokens")
    plan = dataclasses.replace(plan, first_token_ids=None)
    stats = PromptedStats()
    tokens, _ = sample_turns(
        model, n, seq_len, plan, seed, PromptTurns(rendered, seed), batch_size, on_tokens=on_tokens, stats=stats
    )
    return tokens, stats


# ----------------------------------------------------------------------------- the strategy


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


@dataclasses.dataclass
class _ChatState:
    template: str
    template_record: dict[str, Any]
    prompts: PromptList
    rendered: list[list[int]]
    end_of_turn: int | None = None  # found with the stop ids, once the model is loaded


class ChatPrompting(Strategy):
    """``prompting chat``: every turn is a generic prompt through the chat template, then the model's reply."""

    name = PROMPTING
    settings_model = PromptedSettings
    api = "generate_prompted_set"
    inputs = ("prompts", "chat_template")
    builder_inputs = ("prompts",)
    progress = "generating replies"
    temperature_formula = PROMPTED_TEMPERATURE_FORMULA
    separator = PROMPTED_SEPARATOR_POLICY

    def precheck(self, tokenizer: Any, model_name: str) -> None:
        require_chat_template(tokenizer, model_name)

    def prepare(self, job: Job) -> _ChatState:
        settings, chat_template = job.settings, job.inputs["chat_template"]
        template = require_chat_template(job.tokenizer, model_label(job.tokenizer, job.name), chat_template)
        record = template_record(job.tokenizer, chat_template, settings.enable_thinking, model_name=job.name)
        prompt_list = load_prompts(job.inputs["prompts"])
        rendered = render_prompts(
            job.tokenizer,
            prompt_list,
            system=settings.system,
            template=template,
            enable_thinking=settings.enable_thinking,
            seq_len=job.seq_len,
            model_name=job.name,
        )
        return _ChatState(template, record, prompt_list, rendered)

    def plan(self, job: Job, state: _ChatState, loaded: Any) -> SamplingPlan:
        stops, state.end_of_turn = chat_stop_ids(job.tokenizer, state.template, loaded, job.settings.enable_thinking)
        return SamplingPlan(
            start_id=int(state.rendered[0][0]),
            stop_ids=tuple(stops),
            t_init=float(job.settings.t_init),
            t_final=float(job.settings.t_final),
            schedule_tokens=int(job.settings.schedule_tokens),
            max_new_tokens=int(job.settings.max_new_tokens),
            vocab_size=len(job.tokenizer),
        )

    def turns(self, job: Job, state: _ChatState, plan: SamplingPlan) -> PromptTurns:
        return PromptTurns(state.rendered, job.seed)

    def new_stats(self) -> PromptedStats:
        return PromptedStats()

    def sampling_description(self, backend: str) -> str:
        return (
            TORCH_SAMPLING + "; the first prompt of every row of a wave is prefilled left-padded, later "
            "prompts are fed one token per step"
        )

    def record(self, job: Job, state: _ChatState, plan: SamplingPlan) -> dict[str, Any]:
        eot = state.end_of_turn
        return {
            "prompting": PROMPTING,
            "prompts": state.prompts.record(),
            "system": job.settings.system,
            "chat_template": state.template_record,
            "end_of_turn": None if eot is None else {"id": eot, "text": str(job.tokenizer.convert_ids_to_tokens(eot))},
        }

    def source_spec(self, job: Job) -> dict[str, Any]:
        return {"prompting": PROMPTING}

    def starts_with_bos(self, job: Job, state: _ChatState, tokens: np.ndarray) -> bool:
        bos_id = job.tokenizer.bos_token_id
        return bos_id is not None and bool((tokens[:, 0] == bos_id).all())


CHAT = ChatPrompting()


def generate_prompted_set(
    model: Any,
    tokenizer: Any | None = None,
    *,
    n: int = 128,
    seq_len: int = 2048,
    seed: int = DEFAULTS.seed,
    settings: PromptedSettings | None = None,
    prompts: str | os.PathLike[str] | Sequence[str] | None = None,
    chat_template: str | None = None,
    max_seq_len: int | None = None,
    dtype: str = DEFAULTS.dtype,
    device: str = DEFAULTS.device,
    **overrides: Any,
) -> tuple[CalibrationSet, PromptedStats]:
    """``n`` x ``seq_len`` tokens of the model's own replies to chat prompts, and what happened.

    ``model`` is a loaded causal LM (then pass ``tokenizer``) or a model spec
    (bundled name, directory, hub id) loaded here with ``dtype`` and
    ``device``.  Knobs come from ``settings`` and/or keyword overrides
    (``t_init=``, ``t_final=``, ``schedule_tokens=``, ``max_new_tokens=``,
    ``batch_size=``, ``enable_thinking=``, ``system=``); an unknown one is a
    :class:`ParameterError`.  ``prompts``: a prompt file, a list of strings,
    or ``None`` for the generic list shipped with calibench.
    ``chat_template``: template *text* overriding the tokenizer's (read a file
    with :func:`calibench.data.chat.read_chat_template`).

    ``dtype`` and ``device`` default to ``auto`` (:data:`calibench.core.settings.DEFAULTS`): the first CUDA
    GPU if there is one, else the CPU; float32 on the CPU, the checkpoint's own dtype on a GPU.
    """
    calib, stats = generate(
        CHAT,
        model,
        tokenizer,
        n=n,
        seq_len=seq_len,
        seed=seed,
        settings=settings,
        max_seq_len=max_seq_len,
        dtype=dtype,
        device=device,
        prompts=prompts,
        chat_template=chat_template,
        **overrides,
    )
    assert isinstance(stats, PromptedStats)  # the chat strategy's stats
    return calib, stats
