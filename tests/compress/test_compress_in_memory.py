"""compress() on a model that exists only in memory (built from a config, never saved).

Before: llm-compressor re-read ``config.json`` from the model's empty ``name_or_path`` and the run died in
a multi-line OSError ("Repo id must use alphanumeric chars ... ''"); without a tokenizer, in a RuntimeError
about the processor.  Now the model compresses exactly as its saved copy does, the record names it
``in-memory:<class>`` with a sha256 of its weights, and a missing tokenizer is one line before any work.
"""

from __future__ import annotations

import pytest
import torch

from calibench.compress import compress
from calibench.compress.api import weights_fingerprint
from calibench.core.errors import CalibenchError
from conftest import fresh_model, model_weights, tiny_llama_config

pytestmark = pytest.mark.filterwarnings("ignore")


def in_memory_model(tokenizer):
    """The same weights as ``tiny_model_dir`` (same config, same seed), but never saved: no name_or_path."""
    from transformers import LlamaForCausalLM

    torch.manual_seed(0)
    return LlamaForCausalLM(tiny_llama_config(tokenizer)).eval()


@pytest.mark.parametrize("method, params", [("gptq", {"group_size": 64}), ("sparsegpt", {})])
def test_in_memory_model_compresses_like_its_saved_copy(method, params, tiny_model_dir, tiny_text_set, tiny_tokenizer):
    model = in_memory_model(tiny_tokenizer)
    assert model.config._name_or_path == ""
    given = weights_fingerprint(model)
    result = compress(model, tiny_text_set, method, tokenizer=tiny_tokenizer, **params)
    saved = compress(fresh_model(tiny_model_dir), tiny_text_set, method, tokenizer=tiny_tokenizer, **params)
    got, expected = model_weights(result.model), model_weights(saved.model)
    assert got.keys() == expected.keys() and all(torch.equal(got[k], expected[k]) for k in got)
    record = result.record
    assert record["model"] == "in-memory:LlamaForCausalLM"
    assert record["model_weights"] == given and len(given["sha256"]) == 64
    assert given["parameters"] == sum(p.numel() for p in in_memory_model(tiny_tokenizer).state_dict().values())
    assert record["model_weights"]["sha256"] != weights_fingerprint(result.model)["sha256"]  # taken as given
    assert saved.record["model"] == str(tiny_model_dir) and "model_weights" not in saved.record
    assert model.config._name_or_path == ""  # the temporary config directory was only lent


def test_weights_fingerprint_follows_the_weights(tiny_tokenizer):
    first, second = in_memory_model(tiny_tokenizer), in_memory_model(tiny_tokenizer)
    assert weights_fingerprint(first) == weights_fingerprint(second)
    with torch.no_grad():
        second.model.layers[0].mlp.up_proj.weight[0, 0] += 1
    assert weights_fingerprint(first)["sha256"] != weights_fingerprint(second)["sha256"]


def test_in_memory_model_without_tokenizer_is_one_line_before_any_work(tiny_text_set, tiny_tokenizer):
    model = in_memory_model(tiny_tokenizer)
    before = model_weights(model)
    with pytest.raises(CalibenchError) as err:
        compress(model, tiny_text_set, "gptq", group_size=64)
    assert str(err.value) == (
        "compress() of a model that exists only in memory (LlamaForCausalLM, no checkpoint directory to read "
        "a tokenizer from) needs its tokenizer: pass tokenizer="
    )
    after = model_weights(model)
    assert all(torch.equal(before[k], after[k]) for k in before)
