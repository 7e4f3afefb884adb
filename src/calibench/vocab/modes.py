"""The output modes of a pruned model, and exactly what each one changes.

Both keep the input contract: the model takes tokenizer ids and its logits
are indexed by tokenizer ids.  They differ in the output head:

* ``restricted``: the head keeps the kept rows only (one matrix shared with
  the input embedding when the model ties them, so the tie survives).  The
  logits of kept tokens are bit-identical to the full model's; every dropped
  token's logit is ``-inf``.  The softmax therefore runs over the kept tokens
  only: each log-probability is the full model's plus
  ``log(sum over ALL tokens of exp(logit)) - log(sum over KEPT tokens of exp(logit))``,
  a per-position constant >= 0, so log-likelihood scores (lm-eval's acc and
  acc_norm, perplexity) are normalised over the kept tokens, greedy choices
  among kept tokens are unchanged, and generation can only produce kept
  tokens.  Saves (V - K) rows of the embedding and of the head.
* ``exact-input``: only the input side is pruned; the head stays full, so
  every logit and log-probability is bit-identical to the full model's, over
  the whole vocabulary (and ``generate`` may emit a dropped token, which is
  then refused, or replaced by the fallback, when it is fed back in).
  Untied: the input embedding keeps K rows, saving (V - K) rows.  Tied: the
  head needs every row, and the input lookup reads the same (full) matrix
  through the id map, so nothing is duplicated and *nothing is saved*; the
  id map (4 bytes per tokenizer id) is added.  On a tied model exact-input is
  a guard against unseen tokens, not a memory saving.
"""

from __future__ import annotations

from dataclasses import dataclass

from calibench.core.registry import Registry


@dataclass(frozen=True)
class Mode:
    name: str
    head_pruned: bool  # the head keeps only the kept rows
    summary: str  # what changes, for the record and --help


#: The pruning modes, by ``--mode`` name (``eval.vocab.mode`` in a study spec).
MODES: Registry[Mode] = Registry("vocab mode", ordered=True)
for _mode in (
    Mode("restricted", True,
         "head and input embedding keep the kept rows (tie kept); kept-token logits bit-identical, dropped tokens "
         "get -inf, so log-probabilities are normalised over the kept tokens and generation emits kept tokens only"),
    Mode("exact-input", False,
         "input side only: the head stays full, every logit is bit-identical; saves the input embedding's dropped "
         "rows on untied models and nothing on tied ones (the head needs the full matrix)"),
):  # fmt: skip
    MODES.register(_mode.name, _mode)


def get_mode(name: str) -> Mode:
    return MODES.get(name)
