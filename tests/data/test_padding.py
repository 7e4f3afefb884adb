"""Padded positions of per-sample windows never reach llm-compressor's calibration.

llm-compressor's GPTQ accumulates H = 2 * sum x x^T over *every* position of
a linear module's input, padding included (its ``apply_pad_mask_to_batch``
only rewrites padded ids, and the calibration pipelines do not call it).  So
calibench hands each window over at its own length (``to_hf_dataset``).
These tests capture the Hessians GPTQ really accumulates and check that

* they do not change when the padding changes (other pad ids, more padding);
* they equal an independent computation over the real tokens only
  (a masked forward pass of the padded batch);
* without calibench's stripping the padding would change them.
"""

from __future__ import annotations

import pytest

from conftest import repadded

pytestmark = pytest.mark.filterwarnings("ignore")


def _padded_set(text_file, tokenizer, seq_len=48):
    from calibench.data.builders import build_set

    calib = build_set(str(text_file), tokenizer=tokenizer, n=6, seq_len=seq_len, seed=0, mode="sample", bos="never")
    lengths = calib.attention_mask.sum(axis=1)
    assert (lengths < seq_len).any() and (lengths > 1).all(), lengths  # some rows padded, none empty
    return calib


def _gptq_hessians(model_dir, tokenizer, dataset, monkeypatch, seq_len):
    """The final Hessian GPTQ accumulated for every linear module, by module name."""
    import torch
    from llmcompressor import oneshot
    from llmcompressor.modifiers.gptq import base as gptq_base
    from llmcompressor.modifiers.quantization import GPTQModifier
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    for name, module in model.named_modules():  # the pipeline may hand the hook other module objects
        module._calibench_name = name
    captured: dict[str, torch.Tensor] = {}
    original = gptq_base.accumulate_hessian

    def recording(inp, module, hessian, num_samples):
        result = original(inp, module, hessian, num_samples)
        captured[module._calibench_name] = result[0].detach().clone()
        return result

    monkeypatch.setattr(gptq_base, "accumulate_hessian", recording)
    oneshot(
        model=model,
        dataset=dataset,
        recipe=GPTQModifier(targets="Linear", scheme="W4A16", ignore=["lm_head"]),
        num_calibration_samples=len(dataset),
        max_seq_length=seq_len,
        tokenizer=tokenizer,
    )
    assert captured, "GPTQ accumulated no Hessian"
    return captured


def test_padding_does_not_change_gptq_hessians(tiny_model_dir, text_file, tiny_tokenizer, monkeypatch):
    import torch

    calib = _padded_set(text_file, tiny_tokenizer)
    other = repadded(calib, tiny_tokenizer, extra=16, pad_id=5)
    assert other.sha256 != calib.sha256  # really another padding
    first = _gptq_hessians(tiny_model_dir, tiny_tokenizer, calib.to_hf_dataset(), monkeypatch, calib.seq_len)
    second = _gptq_hessians(tiny_model_dir, tiny_tokenizer, other.to_hf_dataset(), monkeypatch, other.seq_len)
    assert first.keys() == second.keys()
    for name in first:
        assert torch.equal(first[name], second[name]), name


def test_gptq_hessian_is_over_real_tokens_only(tiny_model_dir, text_file, tiny_tokenizer, monkeypatch):
    """Layer 0's q_proj Hessian equals 2 X^T X over the unmasked positions of a masked forward pass."""
    import torch
    from transformers import AutoModelForCausalLM

    calib = _padded_set(text_file, tiny_tokenizer)
    hessians = _gptq_hessians(tiny_model_dir, tiny_tokenizer, calib.to_hf_dataset(), monkeypatch, calib.seq_len)
    name = next(k for k in hessians if k.endswith("layers.0.self_attn.q_proj"))

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    module = dict(model.named_modules())[name]
    inputs: list[torch.Tensor] = []
    hook = module.register_forward_pre_hook(lambda m, args: inputs.append(args[0].detach()))
    ids, mask = calib.to_torch()
    with torch.no_grad():
        model(input_ids=ids, attention_mask=mask)
    hook.remove()
    real = inputs[0][mask.bool()].double()  # (real tokens, hidden)
    expected = 2.0 * real.T @ real
    torch.testing.assert_close(hessians[name].double(), expected, rtol=1e-4, atol=1e-4)

    # and handing llm-compressor the padded rows instead would have counted the padding (padded with an
    # ordinary token: the tiny model's own pad id has a zero embedding row, which would hide it at layer 0)
    from datasets import Dataset

    other = repadded(calib, tiny_tokenizer, extra=0, pad_id=5)
    padded = Dataset.from_dict({"input_ids": other.input_ids.tolist(), "attention_mask": other.attention_mask.tolist()})
    with_padding = _gptq_hessians(tiny_model_dir, tiny_tokenizer, padded, monkeypatch, calib.seq_len)
    assert not torch.allclose(with_padding[name].double(), expected, rtol=1e-3, atol=1e-3)


def test_to_hf_dataset_rows_are_the_real_tokens(text_file, tiny_tokenizer):
    calib = _padded_set(text_file, tiny_tokenizer)
    dataset = calib.to_hf_dataset()
    for row, (ids, mask) in enumerate(zip(dataset["input_ids"], dataset["attention_mask"])):
        real = calib.input_ids[row][calib.attention_mask[row].astype(bool)].tolist()
        assert ids == real and mask == [1] * len(real)
