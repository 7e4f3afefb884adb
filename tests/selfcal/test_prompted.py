"""Chat self-calibration: prompts through the chat template, replies sampled with the schedule, whole conversations."""

from __future__ import annotations

import hashlib
from importlib import resources
from types import SimpleNamespace

import pydantic
import pytest
import torch

from calibench.core.errors import CalibenchError, ParameterError, UnknownNameError
from calibench.data.calibset import CalibrationSet
from calibench.data.chat import render_conversations, template_sha256
from calibench.selfcal.api import GenerationSettings, run_generation
from calibench.selfcal.pipeline import STRATEGIES
from calibench.selfcal.prompted import (
    PromptedSettings,
    PromptOrder,
    chat_stop_ids,
    generate_prompted_set,
    load_prompts,
    parse_prompts,
    prompt_conversations,
    sample_prompted_streams,
)
from calibench.selfcal.sampler import SamplingPlan
from conftest import REAL_HOME, make_tokenizer, tiny_llama_config

CHATML = (
    "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
THINKING = CHATML.replace(
    "{{ '<|im_start|>assistant\\n' }}",
    "{{ '<|im_start|>assistant\\n' }}{% if enable_thinking is defined and enable_thinking is false %}"
    "{{ '<think>\\n\\n</think>\\n\\n' }}{% endif %}",
)
PROMPTS = ["the quick fox", "a lazy dog jumps over seven quiet wizards", "box", "heavy jugs of liquid and some words"]


@pytest.fixture(scope="module")
def chat_tok():
    tok = make_tokenizer(extra_specials=("<|im_start|>", "<|im_end|>", "<think>", "</think>"))
    tok.chat_template = CHATML
    return tok


@pytest.fixture(scope="module")
def chat_model(chat_tok):
    from transformers import LlamaForCausalLM

    torch.manual_seed(0)
    return LlamaForCausalLM(tiny_llama_config(chat_tok)).eval()


def rendered_prompts(tok, prompts=PROMPTS, system=None, **kw):
    return render_conversations(prompt_conversations(prompts, system), tok, add_generation_prompt=True, **kw)


def check_structure(calib, stats, rendered, stops, max_new_tokens):
    """Every sample is whole conversations: rendered prompt, reply (ending at a stop or the cap), cut at seq_len."""
    assert len(stats.spans) == calib.n
    for row, spans in zip(calib.input_ids.tolist(), stats.spans):
        assert len(row) == calib.seq_len and spans[0][1] == 0
        position = 0
        for i, (k, start, prompt_len, reply_len) in enumerate(spans):
            assert start == position
            assert row[start : start + prompt_len] == rendered[k][:prompt_len]
            reply = row[start + prompt_len : start + prompt_len + reply_len]
            last = i == len(spans) - 1
            if not last:  # a finished conversation: whole prompt, reply ended by a stop token or the cap
                assert prompt_len == len(rendered[k])
                assert reply[-1] in stops or reply_len == max_new_tokens
                assert not set(reply[:-1]) & set(stops)
            position = start + prompt_len + reply_len
        assert position == calib.seq_len


# --------------------------------------------------------------------------- prompts


def test_bundled_prompts_and_their_hash(tmp_path):
    bundled = load_prompts()
    raw = resources.files("calibench.selfcal").joinpath("prompts_generic.txt").read_bytes()
    assert len(bundled.prompts) == 64 and len(set(bundled.prompts)) == 64
    assert bundled.origin == "calibench:prompts_generic.txt" and bundled.file_sha256 == hashlib.sha256(raw).hexdigest()
    assert not any(p.startswith("#") for p in bundled.prompts)
    path = tmp_path / "mine.txt"
    path.write_text("# comment\n\n  Explain #hashtags.  \nWrite a poem.\n", encoding="utf-8")
    mine = load_prompts(path)
    assert mine.prompts == ("Explain #hashtags.", "Write a poem.") and mine.origin == "mine.txt"
    assert mine.sha256 == load_prompts(["Explain #hashtags.", "Write a poem."]).sha256 != bundled.sha256
    assert parse_prompts("a\n#b\n c \n") == ["a", "c"]
    with pytest.raises(ParameterError, match="prompts file .* does not exist"):
        load_prompts(tmp_path / "missing.txt")
    (tmp_path / "empty.txt").write_text("# nothing\n", encoding="utf-8")
    with pytest.raises(ParameterError, match="holds no prompts"):
        load_prompts(tmp_path / "empty.txt")
    with pytest.raises(ParameterError, match="prompt 1 is empty"):
        load_prompts(["ok", "  "])


# The shipped prompts file's bytes go into every chat self-calibration set's manifest, hence its set id: an edit
# (even to a comment line) changes every such set id, so it must be made on purpose (and said in the README).
SHIPPED_PROMPTS_SHA256 = "f1fba81e3a6895f9d7c6551027471836242d71d5f79e3113f00e263d52ef2c68"


def test_the_shipped_prompts_file_is_unchanged():
    raw = resources.files("calibench.selfcal").joinpath("prompts_generic.txt").read_bytes()
    assert hashlib.sha256(raw).hexdigest() == SHIPPED_PROMPTS_SHA256


def test_prompt_order_is_per_sample_and_covers_the_list():
    a, b = PromptOrder(5, 0, 4), PromptOrder(5, 0, 4)
    seq = [a.next() for _ in range(12)]
    assert seq == [b.next() for _ in range(12)]
    assert sorted(seq[:4]) == sorted(seq[4:8]) == [0, 1, 2, 3]  # a permutation, then a fresh one
    others = [[PromptOrder(5, i, 4).next() for _ in range(4)] for i in range(1, 6)]
    assert any(o != seq[:4] for o in others)


# --------------------------------------------------------------------------- the set


def test_samples_are_whole_conversations_of_exactly_seq_len(chat_model, chat_tok):
    calib, stats = generate_prompted_set(
        chat_model, chat_tok, n=5, seq_len=72, seed=0, batch_size=2, max_new_tokens=9, prompts=PROMPTS
    )
    rendered = rendered_prompts(chat_tok)
    assert calib.input_ids.shape == (5, 72) and calib.attention_mask.all()
    stops = calib.manifest.generator["stop_token_ids"]
    check_structure(calib, stats, rendered, stops, 9)
    for i, (row, spans) in enumerate(zip(calib.input_ids.tolist(), stats.spans)):
        assert any(row[: len(p)] == p for p in rendered)  # every sample starts with a rendered prompt
        order = PromptOrder(0, i, len(PROMPTS))  # sample i reads its own seeded order, whatever the batch
        assert [span[0] for span in spans] == [order.next() for _ in spans]
    summary = stats.summary()
    assert summary["conversations"] == sum(len(s) for s in stats.spans) and summary["conversations"] > 5
    assert summary["prompt_tokens"] + summary["reply_tokens"] == 5 * 72


def test_same_seed_gives_byte_identical_sets(chat_model, chat_tok, tmp_path):
    kwargs = dict(n=3, seq_len=48, batch_size=2, max_new_tokens=7, prompts=PROMPTS)
    a = generate_prompted_set(chat_model, chat_tok, seed=7, **kwargs)[0].save(tmp_path / "a")
    b = generate_prompted_set(chat_model, chat_tok, seed=7, **kwargs)[0].save(tmp_path / "b")
    c = generate_prompted_set(chat_model, chat_tok, seed=8, **kwargs)[0].save(tmp_path / "c")
    for name in ("manifest.json", "input_ids.npy", "attention_mask.npy"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    assert (a / "input_ids.npy").read_bytes() != (c / "input_ids.npy").read_bytes()


def test_greedy_batch_equals_one_prompt_at_a_time_and_hf_generate(chat_model, chat_tok):
    """t = 0: every reply must equal model.generate on its prompt alone, whatever the batch and its padding."""
    rendered = rendered_prompts(chat_tok)
    assert len({len(p) for p in rendered}) > 1  # prompts of different lengths: the prefill is left-padded
    stops, _ = chat_stop_ids(chat_tok, CHATML, chat_model)
    max_new = 6
    plan = SamplingPlan(
        start_id=0,
        stop_ids=tuple(stops),
        t_init=0.0,
        t_final=0.0,
        schedule_tokens=0,
        max_new_tokens=max_new,
        vocab_size=len(chat_tok),
    )
    runs = {bs: sample_prompted_streams(chat_model, 4, 90, rendered, plan, seed=0, batch_size=bs) for bs in (1, 3)}
    tokens1, stats1 = runs[1]
    for bs, (tokens, stats) in runs.items():
        assert (tokens == tokens1).all(), bs
        assert stats.spans == stats1.spans
    replies = {}
    for k, prompt in enumerate(rendered):
        ids = torch.tensor([prompt])
        out = chat_model.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            do_sample=False,
            max_new_tokens=max_new,
            min_new_tokens=1,
            eos_token_id=stops,
            pad_token_id=chat_tok.pad_token_id,
        )
        replies[k] = out[0, len(prompt) :].tolist()
    checked = 0
    for row, spans in zip(tokens1.tolist(), stats1.spans):
        assert len(spans) >= 3  # later prompts are fed token by token in the middle of the wave
        for k, start, prompt_len, reply_len in spans:
            reply = row[start + prompt_len : start + prompt_len + reply_len]
            assert reply == replies[k][:reply_len], (k, start)
            checked += reply_len > 0
    assert checked >= 8


class ScriptedChatLM(torch.nn.Module):
    """Logits depend only on the position id: <|im_end|> is near-certain from position ``stop_at`` on."""

    def __init__(self, tokenizer, stop_at):
        super().__init__()
        self.config = tiny_llama_config(tokenizer)
        self.anchor = torch.nn.Parameter(torch.zeros(1))
        self.vocab = len(tokenizer)
        self.eot = tokenizer.convert_tokens_to_ids("<|im_end|>")
        self.eos = tokenizer.eos_token_id
        self.im_start = tokenizer.convert_tokens_to_ids("<|im_start|>")
        self.stop_at = stop_at
        self.calls = []

    def get_output_embeddings(self):
        return None

    def forward(self, input_ids, attention_mask, position_ids, past_key_values, use_cache, logits_to_keep):
        self.calls.append(
            {"input": input_ids[:, -1].tolist(), "mask": attention_mask.clone(), "pos": position_ids[:, -1].tolist()}
        )
        gen = torch.Generator().manual_seed(len(self.calls))
        logits = torch.randn(input_ids.shape[0], self.vocab, generator=gen)
        logits[:, [self.eos, self.im_start]] -= 100.0  # never sampled: </s> would end a reply by chance
        for r, p in enumerate(position_ids[:, -1].tolist()):
            if p >= self.stop_at:
                logits[r, self.eot] += 100.0
        return SimpleNamespace(logits=logits[:, None, :])


def test_reply_ends_at_end_of_turn_and_the_row_restarts_fresh(chat_tok):
    rendered = rendered_prompts(chat_tok)
    stop_at = max(len(p) for p in rendered) + 2
    model = ScriptedChatLM(chat_tok, stop_at)
    eot = model.eot
    calib, stats = generate_prompted_set(
        model, chat_tok, n=2, seq_len=120, seed=0, batch_size=2, prompts=PROMPTS, max_new_tokens=50
    )
    g = calib.manifest.generator
    assert g["end_of_turn"] == {"id": eot, "text": "<|im_end|>"} and eot in g["stop_token_ids"]
    check_structure(calib, stats, rendered, g["stop_token_ids"], 50)
    for row, spans in zip(calib.input_ids.tolist(), stats.spans):
        for _k, start, prompt_len, reply_len in spans[:-1]:
            assert prompt_len + reply_len == stop_at + 2  # <|im_end|> is sampled from the logits at position stop_at
            assert row[start + prompt_len + reply_len - 1] == eot
    assert stats.ended_by_stop_token >= 4 and stats.stop_tokens == {eot: stats.ended_by_stop_token}
    # the first token of a later prompt is fed at position 0 with every earlier cache column masked
    # (a finished row is fed at position 0 too, but its input is a sampled token, never <|im_start|>)
    restarts = [
        (i, r)
        for i, call in enumerate(model.calls[1:], 1)
        for r in range(2)
        if call["pos"][r] == 0 and call["input"][r] == model.im_start
    ]
    assert len(restarts) == sum(len(spans) - 1 for spans in stats.spans) - stats.samples_ending_in_prompt
    for i, r in restarts:
        mask = model.calls[i]["mask"][r].tolist()
        assert mask[-1] == 1 and not any(mask[:-1])
        assert model.calls[i - 1]["pos"][r] > 0


def test_manifest_records_the_prompting(chat_model, chat_tok, tmp_path):
    calib, _ = generate_prompted_set(
        chat_model,
        chat_tok,
        n=2,
        seq_len=200,
        seed=3,
        t_init=1.2,
        t_final=0.8,
        schedule_tokens=5,
        max_new_tokens=11,
        batch_size=2,
        system="Be brief.",
    )
    loaded = CalibrationSet.load(calib.save(tmp_path / "s"), tokenizer=chat_tok)
    m = loaded.manifest
    assert (m.source.name, m.source.kind, m.sampling.mode, m.seed) == ("self", "generated", "generated", 3)
    assert m.source.spec == {"model": "LlamaForCausalLM", "prompting": "chat"} and m.source.fingerprint
    assert m.sampling.bos is False  # windows start with <|im_start|>, not the tokenizer's <s>
    g = m.generator
    assert g["prompting"] == "chat" and g["method"] == "self-calibration" and g["backend"] == "torch"
    assert (g["t_init"], g["t_final"], g["schedule_tokens"], g["max_new_tokens"], g["batch_size"]) == (
        1.2,
        0.8,
        5,
        11,
        2,
    )
    assert g["seed"] == 3 and g["system"] == "Be brief."
    bundled = load_prompts()
    assert g["prompts"]["origin"] == "calibench:prompts_generic.txt" and g["prompts"]["count"] == 64
    assert g["prompts"]["file_sha256"] == bundled.file_sha256 and g["prompts"]["sha256"] == bundled.sha256
    assert g["chat_template"] == {
        "origin": "tokenizer",
        "sha256": template_sha256(CHATML),
        "supports_thinking": False,
        "enable_thinking": None,
    }
    assert set(g["libraries"]) == {"torch", "transformers"} and g["result"]["conversations"] >= 2
    for text in loaded.texts(chat_tok):
        assert text.startswith("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n")


def test_thinking_mode_and_template_override(chat_model, chat_tok):
    calib, stats = generate_prompted_set(
        chat_model,
        chat_tok,
        n=2,
        seq_len=80,
        seed=0,
        batch_size=2,
        prompts=PROMPTS,
        max_new_tokens=5,
        chat_template=THINKING,
        enable_thinking=False,
    )
    rec = calib.manifest.generator["chat_template"]
    assert rec == {
        "origin": "given",
        "sha256": template_sha256(THINKING),
        "supports_thinking": True,
        "enable_thinking": False,
    }
    rendered = rendered_prompts(chat_tok, template=THINKING, enable_thinking=False)
    think_end = chat_tok.convert_tokens_to_ids("</think>")
    assert all(think_end in p for p in rendered)
    check_structure(calib, stats, rendered, calib.manifest.generator["stop_token_ids"], 5)
    plain, _ = generate_prompted_set(
        chat_model, chat_tok, n=2, seq_len=80, seed=0, batch_size=2, prompts=PROMPTS, max_new_tokens=5
    )
    assert plain.set_id != calib.set_id
    with pytest.raises(ParameterError, match="enable_thinking .* no thinking mode"):
        generate_prompted_set(chat_model, chat_tok, n=1, seq_len=48, prompts=PROMPTS, enable_thinking=True)


def test_model_spec_without_chat_template_fails_before_loading(tiny_model_dir, monkeypatch):
    import calibench.models

    monkeypatch.setattr(calibench.models, "load_model", lambda *a, **k: pytest.fail("the model was loaded"))
    with pytest.raises(CalibenchError, match=f"model {tiny_model_dir} has no chat template"):
        generate_prompted_set(str(tiny_model_dir), n=1, seq_len=32)


def test_user_errors(chat_model, chat_tok):
    base = make_tokenizer(extra_specials=("<|im_start|>", "<|im_end|>", "<think>", "</think>"))
    base.chat_template = None
    with pytest.raises(CalibenchError, match="has no chat template \\(a base model\\?\\)"):
        generate_prompted_set(chat_model, base, n=1, seq_len=32, prompts=PROMPTS)
    with pytest.raises(ParameterError, match="seq_len 8 leaves no room for a reply"):
        generate_prompted_set(chat_model, chat_tok, n=1, seq_len=8, prompts=PROMPTS)
    for bad, param in (
        ({"batch_size": 0}, "batch_size"),
        ({"max_new_tokens": 0}, "max_new_tokens"),
        ({"system": " "}, "system"),
    ):
        with pytest.raises(ParameterError) as info:
            generate_prompted_set(chat_model, chat_tok, n=1, seq_len=32, prompts=PROMPTS, **bad)
        assert info.value.param == param
    with pytest.raises(CalibenchError, match="^t_init must be zero or above"):
        generate_prompted_set(chat_model, chat_tok, n=1, seq_len=32, prompts=PROMPTS, t_init=-1.0)
    with pytest.raises(ParameterError, match="^n must be"):
        generate_prompted_set(chat_model, chat_tok, n=0, seq_len=32, prompts=PROMPTS)
    with pytest.raises(pydantic.ValidationError, match="first_token"):
        PromptedSettings(first_token="stopwords")  # a BOS-only knob: refused, not ignored


@pytest.mark.parametrize("prompting", ["bos", "chat"])
def test_a_misspelt_setting_is_refused_in_both_prompting_settings(chat_model, chat_tok, prompting, monkeypatch):
    """`t_innit=3` was dropped silently by the chat path (model_copy(update=)): now refused by name, with a hint."""
    import calibench.models

    generate = {"bos": run_generation, "chat": generate_prompted_set}[prompting]
    settings = {"bos": GenerationSettings, "chat": PromptedSettings}[prompting](t_init=0.2)
    for model in (chat_model, "a-model-spec-never-loaded"):
        monkeypatch.setattr(calibench.models, "load_model", lambda *a, **k: pytest.fail("the model was loaded"))
        for given in (None, settings):
            with pytest.raises(ParameterError) as info:
                generate(model, chat_tok, n=1, seq_len=32, settings=given, t_innit=3)
            assert info.value.param == "t_innit"
            assert str(info.value).startswith(
                f"t_innit is not a generator setting of prompting {prompting} (did you mean 't_init'?) "
                "(its parameters: "
            )
            assert "t_init" in info.value.allowed and "t_innit" not in info.value.allowed


def test_a_setting_of_the_other_prompting_is_refused_not_ignored(chat_model, chat_tok):
    for generate, option, message in (
        (generate_prompted_set, {"first_token": "stopwords"}, "^first_token applies to prompting bos only"),
        (generate_prompted_set, {"backend": "vllm"}, "^backend applies to prompting bos only"),
        (run_generation, {"system": "Be brief."}, "^system applies to prompting chat only"),
        (run_generation, {"prompts": PROMPTS}, "^prompts applies to prompting chat only"),
    ):
        with pytest.raises(ParameterError, match=message):
            generate(chat_model, chat_tok, n=1, seq_len=32, **option)
    with pytest.raises(ParameterError, match="^settings must be PromptedSettings for prompting chat"):
        generate_prompted_set(chat_model, chat_tok, n=1, seq_len=32, settings=GenerationSettings())
    with pytest.raises(ParameterError) as info:  # a value pydantic refuses: a ParameterError too, by name
        generate_prompted_set(chat_model, chat_tok, n=1, seq_len=32, prompts=PROMPTS, t_init="hot")
    assert info.value.param == "t_init" and "'hot'" in str(info.value)


def test_strategies_are_the_self_builders_prompting_choices():
    import typing

    from calibench.selfcal.builder import SelfParams

    assert STRATEGIES.names() == sorted(typing.get_args(SelfParams.model_fields["prompting"].annotation))
    assert STRATEGIES.get("chat").settings_model is PromptedSettings
    assert STRATEGIES.get("bos").settings_model is GenerationSettings
    with pytest.raises(UnknownNameError, match="unknown prompting 'chta' \\(did you mean 'chat'\\?\\)"):
        STRATEGIES.get("chta")


# --------------------------------------------------------------------------- the real model


@pytest.fixture
def smollm2(monkeypatch):
    monkeypatch.setenv("CALIBENCH_HOME", REAL_HOME)
    from calibench.assets import asset_path
    from calibench.models import load_model, load_tokenizer

    if asset_path("smollm2-135m") is None:
        pytest.skip("smollm2-135m is not pulled: run `calibench assets pull smollm2-135m`")
    return load_model("smollm2-135m"), load_tokenizer("smollm2-135m")


@pytest.mark.integration
def test_smollm2_answers_generic_prompts(smollm2):
    model, tok = smollm2
    calib, stats = generate_prompted_set(model, tok, n=2, seq_len=96, seed=0, batch_size=2, max_new_tokens=24)
    g = calib.manifest.generator
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    assert g["end_of_turn"]["id"] == im_end and im_end in g["stop_token_ids"]
    assert g["model"]["name"] == "smollm2-135m" and calib.manifest.source.spec["model"] == "smollm2-135m"
    assert calib.manifest.sampling.bos is True  # SmolLM2's bos_token is <|im_start|>, which opens every window
    rendered = render_conversations(prompt_conversations(load_prompts().prompts), tok, add_generation_prompt=True)
    check_structure(calib, stats, rendered, g["stop_token_ids"], 24)
    text = calib.texts(tok)[0]
    assert text.startswith("<|im_start|>system\n") and "<|im_start|>assistant\n" in text
