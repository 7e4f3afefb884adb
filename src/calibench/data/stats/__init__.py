"""Statistics of calibration sets, as in the self-calibration paper.

:func:`set_statistics` describes one set: perplexity under a model (through
:mod:`calibench.data.stats.perplexity`) and the pure token statistics of
:mod:`calibench.data.stats.text` (vocabulary coverage, n-gram diversity, Zipf
coefficient, repetition rate, mean document length), whose exact definitions
are in that module's docstring.
"""

from __future__ import annotations

from typing import Any

from calibench.core.settings import DEFAULTS
from calibench.data.calibset import CalibrationSet
from calibench.data.sources.random_vocab import special_token_ids
from calibench.data.stats.text import (
    document_lengths,
    mean_document_length,
    ngram_diversity,
    ngram_ratios,
    repetition_rate,
    text_statistics,
    vocabulary_coverage,
    windows_of,
    zipf_coefficient,
    zipf_fit,
)

#: Token strings that join documents in concat-sampled sets (see calibench.data.token_stream).
CONCAT_JOINER = "\n\n"


def separator_ids(calib: CalibrationSet, tokenizer: Any) -> list[int]:
    """Tokens that delimit documents inside the set's windows.

    The tokenizer's special tokens (BOS, EOS, PAD, UNK and added special
    tokens), the start and stop tokens recorded by a generator, and, for
    concat-sampled sets, the token that joins documents (``"\\n\\n"``) when it
    is a single token; paragraph breaks inside a document then count as
    boundaries too.
    """

    ids = set(special_token_ids(tokenizer))
    generator = calib.manifest.generator or {}
    start = generator.get("start_token", {})
    if isinstance(start, dict) and "id" in start:
        ids.add(int(start["id"]))
    ids.update(int(i) for i in generator.get("stop_token_ids", []) or [])
    if calib.manifest.sampling.mode == "concat":
        joiner = tokenizer(CONCAT_JOINER, add_special_tokens=False)["input_ids"]
        if len(joiner) == 1:
            ids.add(int(joiner[0]))
    return sorted(ids)


def set_statistics(
    calib: CalibrationSet, tokenizer: Any, model: Any | None = None, batch_size: int = DEFAULTS.batch_size
) -> dict[str, Any]:
    """Every statistic of one set (perplexity only when ``model`` is given), as a JSON-ready dict."""
    calib.check_tokenizer(tokenizer)
    windows = windows_of(calib.input_ids, calib.attention_mask)
    separators = separator_ids(calib, tokenizer)
    m = calib.manifest
    stats: dict[str, Any] = {
        "set_id": m.set_id,
        "source": m.source.name,
        "kind": m.source.kind,
        "shape": [m.n, m.seq_len],
    }
    if model is not None:
        from calibench.data.stats.perplexity import set_nll

        nll = set_nll(calib, model, batch_size)
        stats["perplexity"] = nll.perplexity
        stats["mean_nll"] = nll.mean_nll
    else:
        stats["perplexity"] = None
    stats.update(text_statistics(windows, len(tokenizer), separators))
    stats["separator_ids"] = separators
    return stats


__all__ = [
    "document_lengths",
    "mean_document_length",
    "ngram_diversity",
    "ngram_ratios",
    "repetition_rate",
    "separator_ids",
    "set_statistics",
    "text_statistics",
    "vocabulary_coverage",
    "windows_of",
    "zipf_coefficient",
    "zipf_fit",
]
