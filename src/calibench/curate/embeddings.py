"""Sentence embeddings for stage 1, with plain transformers.

What sentence-transformers does for all-MiniLM-L6-v2: the encoder's last
hidden state, averaged over the attention mask (mean pooling), then
L2-normalised.  Any encoder that ``AutoModel`` loads works the same way, so
the model is configurable (``--embedding-model``): a bundled asset name
(``minilm``, pulled with ``calibench assets pull minilm``), a local directory
or a hub id.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from calibench.models import _load, resolve_model_path

DEFAULT_EMBEDDING_MODEL = "minilm"
MAX_TOKENS = 256  # all-MiniLM-L6-v2's max_seq_length


class SentenceEmbedder:
    """``embed(texts) -> (n, d)`` unit-norm rows, from an encoder with mean pooling."""

    def __init__(
        self,
        spec: str = DEFAULT_EMBEDDING_MODEL,
        max_tokens: int = MAX_TOKENS,
        batch_size: int = 32,
        model: Any = None,
        tokenizer: Any = None,
    ):
        self.spec = str(spec)
        self.max_tokens = max_tokens
        self.batch_size = batch_size
        self._model = model
        self._tokenizer = tokenizer

    def _load(self) -> None:
        if self._model is not None and self._tokenizer is not None:
            return
        from transformers import AutoModel, AutoTokenizer

        path = resolve_model_path(self.spec)
        self._tokenizer = self._tokenizer or _load(AutoTokenizer, path)
        self._model = self._model or _load(AutoModel, path)
        self._model.eval()
        positions = getattr(self._model.config, "max_position_embeddings", None)
        if isinstance(positions, int) and positions > 0:
            self.max_tokens = min(self.max_tokens, positions)

    def describe(self) -> dict[str, Any]:
        return {
            "model": self.spec,
            "pooling": "mean over attention mask",
            "normalize": "l2",
            "max_tokens": self.max_tokens,
        }

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        import torch

        self._load()
        rows = []
        with torch.inference_mode():
            for begin in range(0, len(texts), self.batch_size):
                batch = [t if t.strip() else " " for t in texts[begin : begin + self.batch_size]]
                enc = self._tokenizer(
                    batch, padding=True, truncation=True, max_length=self.max_tokens, return_tensors="pt"
                )
                hidden = self._model(**enc).last_hidden_state
                mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp_min(1e-9)
                rows.append(torch.nn.functional.normalize(pooled.float(), dim=1).numpy())
        if not rows:
            return np.zeros((0, 0), dtype=np.float32)
        return np.concatenate(rows, axis=0)
