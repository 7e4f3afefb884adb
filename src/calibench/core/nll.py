"""Token negative log-likelihood of windows under a causal LM: the core of every perplexity.

Evaluation perplexity (held-out text) and set statistics (perplexity of a
calibration set under its model) both reduce to: run windows through the
model in batches and sum the NLL of each next token.  Kept here once, pure
apart from the forward pass, so both agree to the last digit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from calibench.core.progress import task
from calibench.core.settings import DEFAULTS


@dataclass(frozen=True)
class NLLResult:
    """Summed NLL and token counts, per window and in total."""

    nll_per_window: np.ndarray  # float64, summed over the predicted tokens of each window
    tokens_per_window: np.ndarray  # int64, number of predicted tokens of each window

    @property
    def total_nll(self) -> float:
        return float(self.nll_per_window.sum())

    @property
    def total_tokens(self) -> int:
        return int(self.tokens_per_window.sum())

    @property
    def mean_nll(self) -> float:
        return self.total_nll / max(self.total_tokens, 1)

    @property
    def perplexity(self) -> float:
        return math.exp(self.mean_nll)


def window_nll(
    model: Any,
    input_ids: Any,
    attention_mask: Any | None = None,
    batch_size: int = DEFAULTS.batch_size,
    progress_label: str | None = None,
) -> NLLResult:
    """NLL of tokens 1..L-1 of each window given the tokens before it.

    Masked positions (attention_mask 0) neither predict nor are predicted.
    Log-softmax is taken in float32 whatever the model's dtype, so bf16
    models do not lose precision in the reduction.
    """
    import torch

    ids = torch.as_tensor(np.asarray(input_ids), dtype=torch.long)
    mask = (
        torch.ones_like(ids)
        if attention_mask is None
        else torch.as_tensor(np.asarray(attention_mask), dtype=torch.long)
    )
    device = next(model.parameters()).device
    nll_out = np.zeros(ids.shape[0], dtype=np.float64)
    count_out = np.zeros(ids.shape[0], dtype=np.int64)
    with torch.inference_mode(), task(progress_label or "scoring windows", total=ids.shape[0], unit="windows") as bar:
        for begin in range(0, ids.shape[0], batch_size):
            batch_ids = ids[begin : begin + batch_size].to(device)
            batch_mask = mask[begin : begin + batch_size].to(device)
            logits = model(input_ids=batch_ids, attention_mask=batch_mask).logits[:, :-1].float()
            targets = batch_ids[:, 1:]
            valid = (batch_mask[:, 1:] * batch_mask[:, :-1]).bool()
            logprobs = torch.log_softmax(logits, dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
            nll = -(logprobs * valid).sum(dim=1).double().cpu().numpy()
            nll_out[begin : begin + len(nll)] = nll
            count_out[begin : begin + len(nll)] = valid.sum(dim=1).cpu().numpy()
            bar.advance(len(nll))
    return NLLResult(nll_out, count_out)
