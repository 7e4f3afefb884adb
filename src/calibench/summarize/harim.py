"""HaRiM+ (Son et al. 2022) with a causal LM as the judge: is the summary more likely *given the source*?

HaRiM+ compares, token by token, the probability of the summary under the
judge with the source (``p_src``: the summarization prompt with the
document) and without it (``p_lm``: the same prompt with an empty document):

    harim   = mean_i (1 - p_src_i) * (1 - (p_src_i - p_lm_i))
    harim+  = mean_i log p_src_i  -  lambda * harim          (lambda = 7, the paper's)

A token the source makes likely (p_src high and above p_lm) costs little; a
token the judge finds unlikely whether or not it read the source is a
hallucination risk.  ``harim_gain`` = mean_i log p_src_i - mean_i log p_lm_i
is the plain version (nats per token of pointwise mutual information).

The original uses a seq2seq summarizer as the judge; here it is the *dense*
causal LM (the uncompressed version of the model under test), so dense and
compressed summaries are judged by the same model.  NaN for an empty summary.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from calibench.core.settings import DEFAULTS
from calibench.summarize.prompts import render

HARIM_LAMBDA = 7.0


@dataclass
class Judge:
    """A causal LM with its tokenizer and the prompt settings it scores under."""

    model: Any
    tokenizer: Any
    style: str
    chat: bool
    name: str
    batch_size: int = DEFAULTS.batch_size


def token_logprobs(
    model: Any,
    contexts: Sequence[Sequence[int]],
    targets: Sequence[Sequence[int]],
    batch_size: int = DEFAULTS.batch_size,
) -> list[np.ndarray]:
    """log p(target_i | context + target_<i) for each pair (right-padded batches, one forward each).

    Only the positions that predict a target token get logits (``logits_to_keep``, where the model takes it: the
    union over the batch's rows, which are ordered by prompt length so that the union stays near one summary's
    length), and each row is normalised on its own: a 262k-token vocabulary over a long source prompt would
    otherwise hold batch x prompt x vocabulary floats (gigabytes for Gemma 3 at batch 8).
    """
    import torch

    device = next(model.parameters()).device
    keeps = _takes_logits_to_keep(model)
    out: list[np.ndarray] = [np.zeros(0)] * len(contexts)
    order = sorted(range(len(contexts)), key=lambda i: (len(contexts[i]), len(targets[i])))
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            rows = [i for i in order[start : start + batch_size] if len(targets[i])]
            if not rows:
                continue
            seqs = [list(contexts[i]) + list(targets[i]) for i in rows]
            width = max(len(s) for s in seqs)
            ids = torch.zeros((len(rows), width), dtype=torch.long, device=device)
            mask = torch.zeros_like(ids)
            for r, s in enumerate(seqs):
                ids[r, : len(s)] = torch.as_tensor(s, device=device)
                mask[r, : len(s)] = 1
            # each row's positions predicting its target tokens, and their union over the batch (sorted)
            wanted = [torch.arange(len(contexts[i]) - 1, len(contexts[i]) + len(targets[i]) - 1) for i in rows]
            kept = torch.unique(torch.cat(wanted)).to(device)
            if keeps:
                logits = model(input_ids=ids, attention_mask=mask, logits_to_keep=kept).logits
            else:
                logits = model(input_ids=ids, attention_mask=mask).logits[:, kept]
            for r, (i, pos) in enumerate(zip(rows, wanted)):
                c, t = len(contexts[i]), len(targets[i])
                row = logits[r, torch.searchsorted(kept, pos.to(device))].float()
                chosen = row.gather(-1, ids[r, c : c + t, None])[:, 0]
                out[i] = (chosen - row.logsumexp(-1)).cpu().numpy().astype(np.float64)
    return out


def _takes_logits_to_keep(model: Any) -> bool:
    import inspect

    try:
        return "logits_to_keep" in inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return False


def harim_from_logprobs(lp_src: np.ndarray, lp_lm: np.ndarray, lam: float = HARIM_LAMBDA) -> dict[str, float]:
    if lp_src.size == 0:
        return {"harim_plus": math.nan, "harim_gain": math.nan}
    p_src, p_lm = np.exp(lp_src), np.exp(lp_lm)
    harim = float(np.mean((1 - p_src) * (1 - (p_src - p_lm))))
    return {"harim_plus": float(lp_src.mean()) - lam * harim, "harim_gain": float(lp_src.mean() - lp_lm.mean())}


def harim_scores(judge: Judge, sources: Sequence[str], summaries: Sequence[str]) -> list[dict[str, float]]:
    """HaRiM+ and the gain for each (source, summary)."""
    tok = judge.tokenizer
    empty = render(tok, "", judge.style, judge.chat)
    with_src = [render(tok, s, judge.style, judge.chat) for s in sources]
    targets = [tok(s, add_special_tokens=False)["input_ids"] if s.strip() else [] for s in summaries]
    lp_src = token_logprobs(judge.model, with_src, targets, judge.batch_size)
    lp_lm = token_logprobs(judge.model, [empty] * len(summaries), targets, judge.batch_size)
    return [harim_from_logprobs(a, b) for a, b in zip(lp_src, lp_lm)]
