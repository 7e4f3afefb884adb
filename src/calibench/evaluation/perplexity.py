"""Perplexity by the protocol of the GPTQ, SparseGPT and Wanda papers.

1. join the held-out documents (``"\\n\\n"`` for WikiText-2 and the offline
   domains, ``" "`` for C4) and tokenize the result once, without special tokens;
2. cut it into consecutive non-overlapping windows and drop the tail that
   does not fill a window;
3. report ``exp(total NLL / predicted tokens)``.

BOS is explicit.  With ``bos`` each window is BOS followed by ``seq_len - 1``
text tokens, so every text token in it is predicted; without, a window is
``seq_len`` text tokens and its first token is context only.  Either way a
window predicts ``seq_len - 1`` tokens.  ``"auto"`` does what the tokenizer
does to plain text: Gemma's adds BOS (and its perplexity explodes without
it); SmolLM2's does not, and its ``bos_token`` is a chat token
(``<|im_start|>``) that makes perplexity worse when forced in front.

The NLL itself is :func:`calibench.core.nll.window_nll`, shared with the set
statistics so the two agree to the last digit.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from calibench.core.errors import CalibenchError
from calibench.core.nll import window_nll
from calibench.core.settings import DEFAULTS
from calibench.data.tokenizer import resolve_bos

BosOption = Literal["auto", "always", "never"] | bool
BOS_CHOICES = ("auto", "always", "never")


def resolve_bos_option(tokenizer: Any, bos: BosOption) -> bool:
    """Whether windows start with BOS: ``auto`` follows the tokenizer's own behaviour."""

    if isinstance(bos, str):
        if bos not in BOS_CHOICES:
            raise CalibenchError(f"unknown --bos '{bos}': use one of {', '.join(BOS_CHOICES)}")
        policy: Any = "auto" if bos == "auto" else bos == "always"
    else:
        policy = bool(bos)
    return resolve_bos(tokenizer, policy)


def tokenize_joined(texts: Sequence[str], tokenizer: Any, joiner: str = "\n\n") -> np.ndarray:
    """The token ids of the joined text, tokenized once and without special tokens."""
    import transformers

    text = joiner.join(texts)
    if not text:
        return np.zeros(0, dtype=np.int64)
    # The joined split is far longer than model_max_length on purpose: silence that warning.
    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()
    try:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    finally:
        transformers.logging.set_verbosity(verbosity)
    return np.asarray(ids, dtype=np.int64)


def cut_windows(
    ids: np.ndarray, seq_len: int, bos_id: int | None = None, max_windows: int | None = DEFAULTS.max_windows
) -> np.ndarray:
    """Consecutive non-overlapping windows of ``seq_len`` tokens, the tail dropped.

    With ``bos_id`` each window holds ``seq_len - 1`` text tokens after BOS.
    ``max_windows`` keeps the first windows (the papers' C4 protocol keeps 256).
    """
    if seq_len < 2:
        raise CalibenchError(f"--seq-len must be at least 2, got {seq_len}")
    body = seq_len - 1 if bos_id is not None else seq_len
    count = len(ids) // body
    if max_windows is not None:
        count = min(count, max_windows)
    windows = np.asarray(ids[: count * body], dtype=np.int64).reshape(count, body)
    if bos_id is not None:
        windows = np.concatenate([np.full((count, 1), bos_id, dtype=np.int64), windows], axis=1)
    return windows


@dataclass(frozen=True)
class PerplexityResult:
    perplexity: float
    mean_nll: float
    stderr: float | None  # delta-method standard error of the perplexity over windows
    windows: int
    windows_available: int
    tokens: int  # predicted tokens
    seq_len: int
    bos: bool


@dataclass(frozen=True)
class WindowScores:
    """Perplexity of ready-made windows, with each window's NLL (the per-item results)."""

    perplexity: float
    mean_nll: float
    stderr: float | None
    nll_per_window: np.ndarray  # summed NLL of each window's predicted tokens
    tokens_per_window: np.ndarray


def score_windows(
    model: Any, windows: np.ndarray, batch_size: int = DEFAULTS.batch_size, label: str | None = None
) -> WindowScores:
    """Perplexity, mean NLL, its delta-method stderr, and the per-window NLLs of ready-made windows."""

    result = window_nll(model, windows, batch_size=batch_size, progress_label=label)
    ppl = result.perplexity
    stderr = None
    if len(result.nll_per_window) > 1:
        # Every window predicts the same number of tokens, so the mean NLL is the mean
        # of the per-window means; exp() carries its standard error by the delta method.
        per_window = result.nll_per_window / np.maximum(result.tokens_per_window, 1)
        se_nll = float(np.std(per_window, ddof=1) / math.sqrt(len(per_window)))
        stderr = ppl * se_nll
    return WindowScores(ppl, result.mean_nll, stderr, np.asarray(result.nll_per_window),
                        np.asarray(result.tokens_per_window))  # fmt: skip


def perplexity_of_windows(
    model: Any, windows: np.ndarray, batch_size: int = DEFAULTS.batch_size, label: str | None = None
) -> tuple[float, float, float | None]:
    """(perplexity, mean NLL, stderr) of ready-made windows."""
    scores = score_windows(model, windows, batch_size=batch_size, label=label)
    return scores.perplexity, scores.mean_nll, scores.stderr


def perplexity(
    model: Any,
    tokenizer: Any,
    texts: Sequence[str],
    seq_len: int,
    bos: BosOption = "auto",
    batch_size: int = DEFAULTS.batch_size,
    max_windows: int | None = DEFAULTS.max_windows,
    joiner: str = "\n\n",
    label: str | None = None,
) -> PerplexityResult:
    """Perplexity of ``model`` on ``texts`` by the papers' protocol (see the module docstring)."""
    add_bos = resolve_bos_option(tokenizer, bos)
    ids = tokenize_joined(texts, tokenizer, joiner)
    body = seq_len - 1 if add_bos else seq_len
    available = len(ids) // body if seq_len >= 2 else 0
    windows = cut_windows(ids, seq_len, tokenizer.bos_token_id if add_bos else None, max_windows)
    if len(windows) == 0:
        raise CalibenchError(
            f"the held-out text has {len(ids):,} tokens, fewer than one window of {seq_len}: lower --seq-len"
        )
    ppl, mean_nll, stderr = perplexity_of_windows(model, windows, batch_size=batch_size, label=label)
    return PerplexityResult(
        perplexity=ppl,
        mean_nll=mean_nll,
        stderr=stderr,
        windows=len(windows),
        windows_available=available,
        tokens=len(windows) * (seq_len - 1),
        seq_len=seq_len,
        bos=add_bos,
    )
