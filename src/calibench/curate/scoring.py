"""Stage 1: score every candidate source's coverage of every target capability.

For source ``s`` and capability ``c`` (each a sample of texts)::

    S(s, c) = alpha * cos(mean_emb(s), mean_emb(c))
              + (1 - alpha) * (1 - min(1, symKL(p_s, p_c) / log |V|))

* ``mean_emb``: the mean of the unit-norm sentence embeddings of the texts
  (:class:`~calibench.curate.embeddings.SentenceEmbedder`);
* ``p``: the unigram token distribution under the *target model's* tokenizer,
  with additive smoothing of :data:`SMOOTHING` pseudo-counts per vocabulary
  entry (KL is infinite on disjoint supports otherwise);
* ``symKL(p, q) = (KL(p||q) + KL(q||p)) / 2``, divided by ``log |V|`` (the
  entropy of the uniform distribution) and clipped to [0, 1] so the term is a
  similarity in [0, 1] like the cosine;
* ``alpha`` = 0.6 by default.

Capability weights: ``general`` gives every capability 1.0; ``targeted`` gives
the target 1.0 and the rest 0.2.  A source's weighted score is the
weight-averaged S over capabilities.  Selection keeps, for every capability of
the highest weight, the source that scores best on it (so each target
capability is covered), then fills up to ``top_k`` sources by weighted score.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from calibench.core.errors import CalibenchError
from calibench.core.progress import task

DEFAULT_ALPHA = 0.6
TARGET_WEIGHT, OTHER_WEIGHT = 1.0, 0.2
SMOOTHING = 0.01
MODES = ("general", "targeted")


def capability_weights(
    capabilities: Sequence[str], mode: str = "general", target: str | None = None
) -> dict[str, float]:
    """``general``: all 1.0; ``targeted``: 1.0 for ``target``, 0.2 for the others."""
    if mode not in MODES:
        raise CalibenchError(f"unknown --mode '{mode}': use general or targeted")
    if mode == "general":
        if target is not None:
            raise CalibenchError("--target goes with --mode targeted")
        return {c: 1.0 for c in capabilities}
    if target is None:
        raise CalibenchError("--mode targeted needs --target (one of the --capabilities)")
    if target not in capabilities:
        raise CalibenchError(f"--target '{target}' is not one of the capabilities ({', '.join(capabilities)})")
    return {c: TARGET_WEIGHT if c == target else OTHER_WEIGHT for c in capabilities}


def token_distribution(texts: Sequence[str], tokenizer: Any, smoothing: float = SMOOTHING) -> np.ndarray:
    """Smoothed unigram distribution over the tokenizer's vocabulary (``len(tokenizer)`` entries)."""
    vocab = len(tokenizer)
    counts = np.zeros(vocab, dtype=np.float64)
    for ids in tokenizer(list(texts), add_special_tokens=False)["input_ids"]:
        if ids:
            counts += np.bincount(np.asarray(ids, dtype=np.int64), minlength=vocab)[:vocab]
    counts += smoothing
    return counts / counts.sum()


def kl(p: np.ndarray, q: np.ndarray) -> float:
    return float(np.sum(p * (np.log(p) - np.log(q))))


def symmetric_kl(p: np.ndarray, q: np.ndarray) -> float:
    return 0.5 * (kl(p, q) + kl(q, p))


def token_similarity(p: np.ndarray, q: np.ndarray) -> float:
    """1 - min(1, symKL / log|V|): 1 for identical distributions, 0 for very different ones."""
    return 1.0 - min(1.0, symmetric_kl(p, q) / math.log(len(p)))


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    return float(a @ b / (na * nb)) if na > 0 and nb > 0 else 0.0


@dataclass
class ScoreMatrix:
    sources: list[str]
    capabilities: list[str]
    alpha: float
    embedding: np.ndarray  # (S, C) cosine of mean embeddings
    tokens: np.ndarray  # (S, C) 1 - symKL / log|V|
    settings: dict[str, Any]

    @property
    def scores(self) -> np.ndarray:
        return self.alpha * self.embedding + (1.0 - self.alpha) * self.tokens

    def weighted(self, weights: dict[str, float]) -> np.ndarray:
        w = np.asarray([weights[c] for c in self.capabilities], dtype=np.float64)
        return self.scores @ w / w.sum()

    def select(self, weights: dict[str, float], top_k: int | None = None) -> list[str]:
        """Best source of each highest-weight capability, then the best by weighted score up to ``top_k``."""
        if top_k is not None and top_k < 1:
            raise CalibenchError(f"--top-k must be at least 1, got {top_k}")
        scores = self.scores
        top_weight = max(weights.values())
        chosen: list[str] = []
        for j, cap in enumerate(self.capabilities):
            if weights[cap] == top_weight:
                best = self.sources[int(np.argmax(scores[:, j]))]
                if best not in chosen:
                    chosen.append(best)
        if top_k is not None:
            for i in np.argsort(-self.weighted(weights), kind="stable"):
                if len(chosen) >= top_k:
                    break
                if self.sources[i] not in chosen:
                    chosen.append(self.sources[i])
        return chosen

    def record(self, weights: dict[str, float] | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "sources": self.sources,
            "capabilities": self.capabilities,
            "alpha": self.alpha,
            "scores": np.round(self.scores, 6).tolist(),
            "embedding_similarity": np.round(self.embedding, 6).tolist(),
            "token_similarity": np.round(self.tokens, 6).tolist(),
            **self.settings,
        }
        if weights is not None:
            out["weights"] = weights
            out["weighted_scores"] = np.round(self.weighted(weights), 6).tolist()
        return out


def sample_texts(texts: Sequence[str], count: int, seed: int, max_chars: int = 4000) -> list[str]:
    """``count`` texts drawn without replacement by ``seed`` (all when fewer), each cut to ``max_chars``."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(texts))[:count] if len(texts) > count else np.arange(len(texts))
    return [texts[int(i)][:max_chars] for i in order]


def score_sources(
    source_texts: dict[str, list[str]],
    reference_texts: dict[str, list[str]],
    tokenizer: Any,
    embedder: Any,
    alpha: float = DEFAULT_ALPHA,
    smoothing: float = SMOOTHING,
) -> ScoreMatrix:
    """The (sources x capabilities) score matrix of the given text samples."""
    if not 0.0 <= alpha <= 1.0:
        raise CalibenchError(f"--alpha must be between 0 and 1, got {alpha}")
    for kind, group in (("source", source_texts), ("capability", reference_texts)):
        for name, texts in group.items():
            if not texts:
                raise CalibenchError(f"{kind} '{name}' has no text to score")
    sources, caps = list(source_texts), list(reference_texts)

    emb: dict[str, np.ndarray] = {}
    dist: dict[str, np.ndarray] = {}
    with task("stage 1: scoring sources", total=len(sources) + len(caps), unit="text sets") as bar:
        for key, texts in [
            *(("s:" + s, source_texts[s]) for s in sources),
            *(("c:" + c, reference_texts[c]) for c in caps),
        ]:
            emb[key] = embedder.embed(texts).mean(axis=0)
            dist[key] = token_distribution(texts, tokenizer, smoothing)
            bar.advance()
    e = np.array([[_cos(emb["s:" + s], emb["c:" + c]) for c in caps] for s in sources])
    t = np.array([[token_similarity(dist["s:" + s], dist["c:" + c]) for c in caps] for s in sources])
    settings = {
        "smoothing": smoothing,
        "vocab_size": len(tokenizer),
        "symmetric_kl": "(KL(p||q)+KL(q||p))/2",
        "embedding": embedder.describe(),
        "texts_per_source": {s: len(source_texts[s]) for s in sources},
        "texts_per_capability": {c: len(reference_texts[c]) for c in caps},
    }
    return ScoreMatrix(sources, caps, float(alpha), e, t, settings)
