"""Generation for summarization: greedy batched KV-cache generation equals HF ``generate`` token for token,
prompts equal ``apply_chat_template``, the same inputs give the same generations."""

from __future__ import annotations

import pytest

from conftest import fresh_model

pytestmark = pytest.mark.usefixtures("one_thread")

TEMPLATE = (
    "{% for m in messages %}<s>{{ m['role'] }}\n{{ m['content'] }}</s>\n{% endfor %}"
    "{% if add_generation_prompt %}<s>assistant\n{% endif %}"
)


@pytest.fixture(scope="module")
def model(tiny_model_dir):
    return fresh_model(tiny_model_dir)


def _prompts(tok):
    texts = [
        "doc 1: heavy jugs of liquid",
        "doc 2: some other words appear here for variety in text and more",
        "doc 3: words",
        "doc 4: liquid words appear and heavy jugs of text for variety",
        "doc 5: text",
    ]
    return [tok(t)["input_ids"] for t in texts]


def _hf_greedy(model, prompt, max_new, stops, pad):
    import torch

    out = model.generate(
        input_ids=torch.tensor([prompt]),
        attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
        max_new_tokens=max_new,
        do_sample=False,
        eos_token_id=list(stops),
        pad_token_id=pad,
    )
    new = out[0, len(prompt) :].tolist()
    for i, t in enumerate(new):
        if t in stops:
            return new[:i], True
    return new, False


@pytest.mark.parametrize("batch_size", [1, 3])
def test_batched_greedy_equals_hf_generate(model, tiny_tokenizer, batch_size):
    from calibench.summarize.generate import greedy_generate

    prompts = _prompts(tiny_tokenizer)
    # a frequent token as an extra stop so that some rows stop early and others run to the cap
    stops = [tiny_tokenizer.eos_token_id]
    first = greedy_generate(
        model, prompts, max_new_tokens=12, stop_ids=stops, pad_id=tiny_tokenizer.pad_token_id, batch_size=batch_size
    ).generations
    stops.append(first[0].tokens[3] if len(first[0].tokens) > 3 else 5)
    run = greedy_generate(
        model, prompts, max_new_tokens=12, stop_ids=stops, pad_id=tiny_tokenizer.pad_token_id, batch_size=batch_size
    )
    for prompt, gen in zip(prompts, run.generations):
        tokens, stopped = _hf_greedy(model, prompt, 12, stops, tiny_tokenizer.pad_token_id)
        assert (gen.tokens, gen.stopped) == (tokens, stopped)
    assert any(g.stopped for g in run.generations)


def test_same_inputs_same_generations_any_batch_size(model, tiny_tokenizer):
    from calibench.summarize.generate import greedy_generate

    prompts = _prompts(tiny_tokenizer)
    kw = {"max_new_tokens": 10, "stop_ids": [tiny_tokenizer.eos_token_id], "pad_id": tiny_tokenizer.pad_token_id}
    a = greedy_generate(model, prompts, batch_size=2, **kw).generations
    b = greedy_generate(model, prompts, batch_size=2, **kw).generations
    c = greedy_generate(model, prompts, batch_size=5, **kw).generations
    assert [g.tokens for g in a] == [g.tokens for g in b] == [g.tokens for g in c]


def test_beyond_vocab_rows_are_never_chosen(model, tiny_tokenizer):
    from calibench.summarize.generate import greedy_generate

    vocab = 40  # pretend only the first 40 ids are real tokens
    run = greedy_generate(model, _prompts(tiny_tokenizer), max_new_tokens=8, stop_ids=[], pad_id=0, vocab_size=vocab)
    assert all(t < vocab for g in run.generations for t in g.tokens)


def test_chat_prompt_equals_apply_chat_template(tiny_tokenizer, smollm2_tokenizer):
    import copy

    from calibench.summarize.prompts import SYSTEM, render, user_message

    tiny = copy.deepcopy(tiny_tokenizer)
    tiny.chat_template = TEMPLATE
    doc = "The council said the bridge would reopen on Monday.\nRepairs cost 2m."
    for tok in (tiny, smollm2_tokenizer):
        for style in ("paragraph", "sentences", "summary"):
            conv = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user_message(doc, style)}]
            expected = tok.apply_chat_template(conv, tokenize=True, add_generation_prompt=True, return_dict=False)
            assert render(tok, doc, style, chat=True) == list(expected)
    text = smollm2_tokenizer.decode(render(smollm2_tokenizer, doc, "sentences", chat=True))
    assert "couple of sentences" in text and text.rstrip().endswith("assistant")


def test_plain_prompt_and_clean_summary(tiny_tokenizer):
    from calibench.summarize.prompts import clean_summary, plain_prompt, render

    assert plain_prompt("D.", "summary") == "Write a short summary of the following document.\n\nD.\n\nSummary:"
    assert (
        render(tiny_tokenizer, "D.", "summary", chat=False)
        == tiny_tokenizer(plain_prompt("D.", "summary"))["input_ids"]
    )
    assert clean_summary(" A short one.\n\nArticle: next ", chat=False) == "A short one."
    assert clean_summary(" A.\n\nB. ", chat=True) == "A.\n\nB."


def test_chat_yes_needs_a_template(tiny_tokenizer):
    from calibench.core.errors import CalibenchError
    from calibench.summarize.prompts import use_chat

    assert use_chat(tiny_tokenizer, "auto", "m") is False
    with pytest.raises(CalibenchError, match="has no chat template"):
        use_chat(tiny_tokenizer, "yes", "tiny")
