"""Build calibration sets: validate the request, sample windows, wrap them as artifacts.

``build_calibration_sets`` draws all windows of all k sets in one pass so that
the sets are disjoint by construction, then deals them into sets at random.
BOS handling is explicit: with ``bos=True`` each window is the BOS token
followed by ``seq_len - 1`` corpus tokens; ``"auto"`` follows the tokenizer
(BOS when it adds one to plain text, as Gemma's does).  The resolved choice is
recorded in the manifest.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from calibench.calibset import CalibrationSet, SamplingRecord
from calibench.errors import CalibenchError
from calibench.sampling import deal_into_sets
from calibench.sources import Source, get_source

MAX_N = 1024
BosPolicy = bool | Literal["auto"]


def tokenizer_adds_bos(tokenizer: Any) -> bool:
    """Whether the tokenizer puts BOS in front of plain text by itself."""
    bos = tokenizer.bos_token_id
    if bos is None:
        return False
    ids = tokenizer("a")["input_ids"]
    return bool(ids) and ids[0] == bos


def resolve_bos(tokenizer: Any, bos: BosPolicy) -> bool:
    if bos == "auto":
        return tokenizer_adds_bos(tokenizer)
    if bos and tokenizer.bos_token_id is None:
        raise CalibenchError("this tokenizer has no BOS token: use --bos never (or auto)")
    return bool(bos)


def validate_sizes(n: int, seq_len: int, sets: int, max_seq_len: int | None) -> None:
    if not 1 <= n <= MAX_N:
        raise CalibenchError(f"--n must be between 1 and {MAX_N}, got {n}")
    if sets < 1:
        raise CalibenchError(f"--sets must be at least 1, got {sets}")
    if seq_len < 2:
        raise CalibenchError(f"--seq-len must be at least 2, got {seq_len}")
    if max_seq_len is not None and seq_len > max_seq_len:
        raise CalibenchError(f"--seq-len {seq_len} is above the model's maximum of {max_seq_len} tokens")


def build_calibration_sets(
    source: str | Source,
    tokenizer: Any,
    n: int = 128,
    seq_len: int = 2048,
    seed: int = 0,
    sets: int = 1,
    mode: str | None = None,
    split: str | None = None,
    bos: BosPolicy = "auto",
    max_seq_len: int | None = None,
    text_field: str = "text",
) -> list[CalibrationSet]:
    """``sets`` pairwise-disjoint calibration sets of ``n`` x ``seq_len`` tokens from one source."""
    validate_sizes(n, seq_len, sets, max_seq_len)
    src = get_source(source, text_field=text_field)
    split = src.check_split(split)
    mode = src.check_mode(mode)
    add_bos = resolve_bos(tokenizer, bos)
    body = seq_len - 1 if add_bos else seq_len
    rng = np.random.default_rng(seed)

    sampled, record = src.sample(tokenizer, split, n * sets, body, mode, rng)
    tokens = sampled.tokens
    if add_bos:
        bos_column = np.full((tokens.shape[0], 1), tokenizer.bos_token_id, dtype=np.int32)
        tokens = np.concatenate([bos_column, tokens], axis=1)

    groups = deal_into_sets(n * sets, n, rng)
    result = []
    for index, rows in enumerate(groups):
        windows = [sampled.windows[r] for r in rows] if sampled.windows else []
        sampling = SamplingRecord(mode=mode, bos=add_bos, set_index=index, num_sets=sets, windows=windows)
        result.append(CalibrationSet.create(tokens[rows], tokenizer, source=record, sampling=sampling, seed=seed))
    return result


def build_calibration_set(source: str | Source, tokenizer: Any, n: int = 128, seq_len: int = 2048, seed: int = 0, **kwargs: Any) -> CalibrationSet:
    """One calibration set; see :func:`build_calibration_sets`."""
    return build_calibration_sets(source, tokenizer, n=n, seq_len=seq_len, seed=seed, sets=1, **kwargs)[0]
