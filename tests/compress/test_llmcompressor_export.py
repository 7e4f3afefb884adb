"""A set exported with to_hf_dataset() goes through llm-compressor's oneshot unchanged."""

from __future__ import annotations

import pytest


@pytest.mark.filterwarnings("ignore")
def test_oneshot_sees_exactly_the_calibration_windows(tiny_model_dir, text_file, tiny_tokenizer):
    import torch
    from llmcompressor import oneshot
    from llmcompressor.modifiers.quantization import GPTQModifier
    from transformers import AutoModelForCausalLM

    from calibench.data.draw import build_calibration_set

    calib = build_calibration_set(str(text_file), tiny_tokenizer, n=8, seq_len=32, seed=0)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    before = model.model.layers[0].mlp.down_proj.weight.detach().clone()

    seen: list[torch.Tensor] = []
    hook = model.get_input_embeddings().register_forward_pre_hook(
        lambda module, args: seen.append(args[0].detach().clone()) if not args[0].is_meta else None
    )
    try:
        oneshot(
            model=model,
            dataset=calib.to_hf_dataset(),
            recipe=GPTQModifier(targets="Linear", scheme="W4A16", ignore=["lm_head"]),
            num_calibration_samples=calib.n,
            max_seq_length=calib.seq_len,
            tokenizer=tiny_tokenizer,
        )
    finally:
        hook.remove()

    rows = {tuple(r.tolist()) for batch in seen for r in batch}
    assert rows == {tuple(r) for r in calib.input_ids.tolist()}
    assert all(batch.shape[-1] == calib.seq_len for batch in seen)
    after = model.model.layers[0].mlp.down_proj.weight.detach()
    assert not torch.equal(before, after)  # the recipe really ran on these inputs
