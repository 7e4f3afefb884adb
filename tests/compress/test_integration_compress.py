"""Compression of the real SmolLM2 on a real offline set: runs, keeps its promises, reloads."""

from __future__ import annotations

import pytest
import torch

from calibench.compress import compress
from calibench.compress.masks import is_nm_sparse
from calibench.compress.validate import target_linears
from calibench.data.draw import build_calibration_set

pytestmark = [pytest.mark.integration, pytest.mark.filterwarnings("ignore")]


def test_wanda_2_4_on_smollm2_reloads_identically(offline_assets, smollm2_tokenizer, tmp_path):
    from transformers import AutoModelForCausalLM

    from calibench.models import load_model

    calib = build_calibration_set("wiki", smollm2_tokenizer, n=8, seq_len=128, seed=0)
    result = compress(load_model("smollm2-135m"), calib, "wanda", tokenizer=smollm2_tokenizer, structure="2:4")
    linears = target_linears(result.model)
    assert len(linears) == 30 * 7  # q,k,v,o,gate,up,down in each of 30 layers; the tied head stays dense
    assert all(is_nm_sparse(m.weight, 2, 4) for m in linears.values())
    result.save(tmp_path / "ckpt", smollm2_tokenizer)
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "ckpt").eval()
    ids, _ = calib.to_torch()
    with torch.no_grad():
        assert torch.equal(result.model(ids[:2]).logits, reloaded(ids[:2]).logits)


def test_smollm2_default_group_size_falls_back_from_128(offline_assets, smollm2_tokenizer):
    from calibench.compress.methods import make_params, resolve
    from calibench.compress.validate import resolve_group_size
    from calibench.models import load_model

    model = load_model("smollm2-135m")
    methods = resolve("gptq")
    params, note = resolve_group_size(model, methods, make_params(methods))
    assert params.group_size == 64 and "576" in note
