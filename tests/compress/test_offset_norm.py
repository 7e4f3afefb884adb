"""SmoothQuant and AWQ on a Gemma 3 layout: norms that scale by 1 + w, and a separate pre-MLP norm.

Smoothing alone must leave the model's function unchanged (it moves scale from
a norm into the next linear layers), so a tiny Gemma 3 with SmoothQuant and no
quantization is checked against its own dense logits.  Both ways it broke are
reproduced: llm-compressor's Llama mappings (``post_attention_layernorm`` into
the MLP, which in Gemma reads ``pre_feedforward_layernorm``), and smoothing
the ``1 + w`` norms without llm-compressor's norm calibration context.
"""

from __future__ import annotations

import contextlib
import importlib

import pytest
import torch

from calibench.compress import compress
from calibench.compress.api import _run_stage
from calibench.compress.offset_norm import (
    check_smoothing,
    has_post_norm_layers,
    offset_norms,
    scales_by_one_plus_w,
    smoothing_for,
)
from calibench.core.errors import CalibenchError

pytestmark = pytest.mark.filterwarnings("ignore")


def tiny_gemma3(tokenizer):
    """A 2-layer Gemma 3 (text) from a config, its norms' w drawn away from 0 so that 1 + w differs from w."""
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    config = Gemma3TextConfig(
        vocab_size=len(tokenizer),
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=32,
        max_position_embeddings=256,
        sliding_window=64,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    model = Gemma3ForCausalLM(config).eval()
    with torch.no_grad():
        for module in model.modules():
            if type(module).__name__ == "Gemma3RMSNorm":
                module.weight.normal_(0, 0.3)
    return model


def logits(model, tokenizer):
    ids = torch.randint(5, len(tokenizer), (2, 32), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        return model(ids).logits


def rel_err(a, b) -> float:
    return float((a - b).norm() / b.norm())


def smooth_only(model, calib, tokenizer):
    from llmcompressor.modifiers.transform.smoothquant import SmoothQuantModifier

    _run_stage(model, calib, [SmoothQuantModifier(smoothing_strength=0.8)], 0, tokenizer)


@pytest.fixture
def no_norm_context(monkeypatch):
    """llm-compressor's oneshot without its offset-norm calibration context (the 1 + w weights smoothed as w)."""
    oneshot_module = importlib.import_module("llmcompressor.entrypoints.oneshot")
    monkeypatch.setattr(oneshot_module, "norm_calibration_context", lambda model: contextlib.nullcontext())


def test_gemma3_layout_is_recognised(tiny_tokenizer):
    from transformers import LlamaForCausalLM

    from conftest import tiny_llama_config

    gemma = tiny_gemma3(tiny_tokenizer)
    assert has_post_norm_layers(gemma)
    assert len(offset_norms(gemma)) == 2 * 6 + 1  # four per layer, q_norm and k_norm, and the final norm
    norm = gemma.model.layers[0].input_layernorm
    before = norm.weight.detach().clone()
    assert scales_by_one_plus_w(norm)
    assert torch.equal(norm.weight, before)  # the probe puts the weight back
    llama = LlamaForCausalLM(tiny_llama_config(tiny_tokenizer))
    assert not has_post_norm_layers(llama) and offset_norms(llama) == []
    assert not scales_by_one_plus_w(llama.model.layers[0].input_layernorm)
    assert not scales_by_one_plus_w(torch.nn.LayerNorm(16))


def test_smoothing_alone_keeps_a_gemma3_function(tiny_tokenizer, tiny_text_set):
    model = tiny_gemma3(tiny_tokenizer)
    dense = logits(model, tiny_tokenizer)
    smooth_only(model, tiny_text_set, tiny_tokenizer)
    assert rel_err(logits(model, tiny_tokenizer), dense) < 1e-4
    changed = model.model.layers[0].pre_feedforward_layernorm.weight
    assert not torch.allclose(changed, tiny_gemma3(tiny_tokenizer).model.layers[0].pre_feedforward_layernorm.weight)


def test_llama_mappings_break_gemma3(tiny_tokenizer, tiny_text_set, monkeypatch):
    """What llm-compressor 0.14 did by itself: smooth post_attention_layernorm into gate/up."""
    import calibench.compress.offset_norm as offset_norm

    monkeypatch.setattr(offset_norm, "has_post_norm_layers", lambda model: False)
    model = tiny_gemma3(tiny_tokenizer)
    dense = logits(model, tiny_tokenizer)
    smooth_only(model, tiny_text_set, tiny_tokenizer)
    assert rel_err(logits(model, tiny_tokenizer), dense) > 0.3


def test_smoothing_one_plus_w_as_w_breaks_gemma3(tiny_tokenizer, tiny_text_set, no_norm_context):
    model = tiny_gemma3(tiny_tokenizer)
    dense = logits(model, tiny_tokenizer)
    smooth_only(model, tiny_text_set, tiny_tokenizer)
    assert rel_err(logits(model, tiny_tokenizer), dense) > 0.1


def test_smoothquant_w8a8_on_gemma3_stays_near_dense(tiny_tokenizer, tiny_text_set):
    model = tiny_gemma3(tiny_tokenizer)
    dense = logits(model, tiny_tokenizer)
    result = compress(model, tiny_text_set, "smoothquant", tokenizer=tiny_tokenizer)
    assert rel_err(logits(result.model, tiny_tokenizer), dense) < 0.1  # W8A8 noise; the broken runs were > 0.5


def test_recipe_is_left_as_given(tiny_tokenizer):
    from llmcompressor.modifiers.transform.smoothquant import SmoothQuantModifier

    modifier = SmoothQuantModifier()
    with smoothing_for(tiny_gemma3(tiny_tokenizer), [modifier]):
        assert modifier.mappings is not None and "pre_feedforward_layernorm" in modifier.mappings[1][1]
    assert modifier.mappings is None
    own = SmoothQuantModifier(mappings=[[["re:.*q_proj$"], "re:.*input_layernorm$"]])
    with smoothing_for(tiny_gemma3(tiny_tokenizer), [own]):
        assert own.mappings == [[["re:.*q_proj$"], "re:.*input_layernorm$"]]  # a user's mappings are theirs


class OffsetNorm(torch.nn.Module):
    """An RMSNorm with scale 1 + w that llm-compressor does not know."""

    def __init__(self, dim: int):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(dim))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * (1 + self.weight)


def test_an_unknown_offset_norm_is_refused_in_one_line(tiny_tokenizer):
    from llmcompressor.modifiers.gptq import GPTQModifier
    from llmcompressor.modifiers.transform.awq import AWQModifier
    from llmcompressor.modifiers.transform.smoothquant import SmoothQuantModifier
    from transformers import LlamaForCausalLM

    from conftest import tiny_llama_config

    model = LlamaForCausalLM(tiny_llama_config(tiny_tokenizer))
    model.model.layers[0].input_layernorm = OffsetNorm(model.config.hidden_size)
    for modifier in (SmoothQuantModifier(), AWQModifier()):
        with pytest.raises(CalibenchError) as err:
            check_smoothing(model, [modifier])
        message = str(err.value)
        assert "\n" not in message and "OffsetNorm" in message and "1 + w" in message
    check_smoothing(model, [GPTQModifier(targets="Linear", scheme="W4A16")])  # no smoothing, nothing to refuse
