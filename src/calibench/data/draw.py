"""Draw calibration sets from one source: validate the request, sample windows, wrap them as artifacts.

``build_calibration_sets`` draws all windows of all k sets in one pass so that
the sets are disjoint by construction, then deals them into sets at random.
BOS handling is explicit: with ``bos=True`` each window is the BOS token
followed by ``seq_len - 1`` corpus tokens; ``"auto"`` follows the tokenizer
(BOS when it adds one to plain text, as Gemma's does).  The resolved choice is
recorded in the manifest.  Sizes are checked here, once, for every builder.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from calibench.core.errors import ParameterError
from calibench.core.settings import DEFAULTS
from calibench.data.calibset import CalibrationSet, SamplingRecord
from calibench.data.sampling import deal_into_sets
from calibench.data.sources import Source, get_source
from calibench.data.tokenizer import BosPolicy, resolve_bos, tokenizer_adds_bos  # noqa: F401 - re-exported

# A set is held as n x seq_len int32 ids and uint8 masks (5 bytes a token: 8192 x 2048 is 84 MB) and is
# handed to llm-compressor as Arrow arrays, never as Python lists, so this cap bounds memory, not a loop.
MAX_N = 8192


def validate_sizes(n: int, seq_len: int, sets: int, max_seq_len: int | None) -> None:
    """Refuse impossible sizes before any work; errors name the API parameter (the CLI shows its flag)."""
    if not 1 <= n <= MAX_N:
        raise ParameterError("n", f"must be between 1 and {MAX_N}, got {n}")
    if sets < 1:
        raise ParameterError("sets", f"must be at least 1, got {sets}")
    if seq_len < 2:
        raise ParameterError("seq_len", f"must be at least 2, got {seq_len}")
    if max_seq_len is not None and seq_len > max_seq_len:
        raise ParameterError("seq_len", f"{seq_len} is above the model's maximum of {max_seq_len} tokens")


def build_calibration_sets(
    source: str | Source | Any,
    tokenizer: Any,
    n: int = 128,
    seq_len: int = 2048,
    seed: int = DEFAULTS.seed,
    sets: int = 1,
    mode: str | None = None,
    split: str | None = None,
    bos: BosPolicy = "auto",
    max_seq_len: int | None = None,
    text_field: str = "text",
    builder: dict[str, Any] | None = None,
) -> list[CalibrationSet]:
    """``sets`` pairwise-disjoint calibration sets of ``n`` x ``seq_len`` tokens from one source.

    ``source`` is a name, a file, a :class:`Source`, or in-memory content: a
    ``datasets.Dataset`` or ``IterableDataset`` (its ``text_field`` column, or
    a ``messages`` column of conversations), a list of texts or of
    conversations (see :mod:`calibench.data.sources.memory`).

    ``builder`` is an optional record of how the text was prepared before
    sampling (a chat template, a hub revision, ...); it lands in each
    manifest's ``generator`` field and so in the set's identity.
    """
    validate_sizes(n, seq_len, sets, max_seq_len)
    src = get_source(source, text_field=text_field)
    split = src.check_split(split)
    mode = src.check_mode(mode)
    add_bos = resolve_bos(tokenizer, bos)
    body = seq_len - 1 if add_bos else seq_len
    rng = np.random.default_rng(seed)

    sampled, record = src.sample(tokenizer, split, n * sets, body, mode, rng)
    tokens = sampled.tokens
    mask = sampled.mask if sampled.mask is not None else np.ones_like(tokens, dtype=np.uint8)
    if add_bos:
        bos_column = np.full((tokens.shape[0], 1), tokenizer.bos_token_id, dtype=np.int32)
        tokens = np.concatenate([bos_column, tokens], axis=1)
        mask = np.concatenate([np.ones_like(bos_column, dtype=np.uint8), mask], axis=1)

    groups = deal_into_sets(n * sets, n, rng)
    result = []
    for index, rows in enumerate(groups):
        windows = [sampled.windows[r] for r in rows] if sampled.windows else []
        sampling = SamplingRecord(mode=mode, bos=add_bos, set_index=index, num_sets=sets, windows=windows)
        result.append(
            CalibrationSet.create(
                tokens[rows],
                tokenizer,
                source=record,
                sampling=sampling,
                seed=seed,
                attention_mask=mask[rows],
                generator=builder,
            )
        )
    return result


def build_calibration_set(
    source: str | Source | Any,
    tokenizer: Any,
    n: int = 128,
    seq_len: int = 2048,
    seed: int = DEFAULTS.seed,
    **kwargs: Any,
) -> CalibrationSet:
    """One calibration set; see :func:`build_calibration_sets`."""
    return build_calibration_sets(source, tokenizer, n=n, seq_len=seq_len, seed=seed, sets=1, **kwargs)[0]
