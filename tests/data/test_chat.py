"""Chat/SFT rendering: rows to conversations, shape errors, the template, thinking mode, the manifest record."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from calibench.core.errors import CalibenchError, ParameterError
from calibench.data.chat import (
    ChatFormat,
    conversations_from_rows,
    read_chat_template,
    render_conversations,
    require_chat_template,
    supports_thinking,
    template_record,
    template_sha256,
)
from conftest import REAL_HOME, make_tokenizer

CONVERSATIONS = Path(__file__).parents[1] / "fixtures" / "conversations.jsonl"

CHATML = (
    "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
# A hand-written reasoning-model template (Qwen3-like): thinking on by default, an empty think block when off.
THINKING = (
    "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}"
    "{% if enable_thinking is defined and enable_thinking is false %}{{ '<think>\\n\\n</think>\\n\\n' }}"
    "{% else %}{{ '<think>\\n' }}{% endif %}{% endif %}"
)
SPECIALS = ("<|im_start|>", "<|im_end|>", "<think>", "</think>")


def read_conversations() -> list[list[dict[str, str]]]:
    rows = [json.loads(line) for line in CONVERSATIONS.read_text(encoding="utf-8").splitlines() if line.strip()]
    return conversations_from_rows(rows, ChatFormat())


def chat_tokenizer(template: str | None):
    tok = make_tokenizer(extra_specials=SPECIALS)
    tok.chat_template = template
    return tok


def reference_ids(tokenizer, conv, **kwargs) -> list[int]:
    """What transformers itself returns (5.x: a BatchEncoding by default)."""
    out = tokenizer.apply_chat_template(conv, tokenize=True, **kwargs)
    return list(out["input_ids"]) if hasattr(out, "keys") else list(out)


@pytest.fixture
def smollm2_tok(monkeypatch):
    """The real bundled SmolLM2-135M-Instruct tokenizer, when it has been pulled on this machine."""
    monkeypatch.setenv("CALIBENCH_HOME", REAL_HOME)
    from calibench.assets import asset_path
    from calibench.models import load_tokenizer

    if asset_path("smollm2-135m") is None:
        pytest.skip("smollm2-135m is not pulled: run `calibench assets pull smollm2-135m`")
    return load_tokenizer("smollm2-135m")


# --------------------------------------------------------------------------- rendering equals transformers


@pytest.mark.integration
def test_smollm2_rendering_equals_apply_chat_template(smollm2_tok):
    convs = read_conversations()
    assert len(convs) >= 10
    ids = render_conversations(convs, smollm2_tok)
    for conv, got in zip(convs, ids):
        assert got == reference_ids(smollm2_tok, conv)
        assert got[0] == smollm2_tok.convert_tokens_to_ids("<|im_start|>")
    prompts = render_conversations([c[:-1] for c in convs], smollm2_tok, add_generation_prompt=True)
    for conv, got in zip(convs, prompts):
        assert got == reference_ids(smollm2_tok, conv[:-1], add_generation_prompt=True)
    # a conversation without a system message gets SmolLM's default one from the template
    assert "You are a helpful AI assistant named SmolLM" in smollm2_tok.decode(ids[0])
    record = template_record(smollm2_tok)
    assert record["origin"] == "tokenizer" and record["supports_thinking"] is False
    assert record["enable_thinking"] is None and len(record["sha256"]) == 64
    with pytest.raises(ParameterError, match="enable_thinking .* no thinking mode"):
        render_conversations(convs[:1], smollm2_tok, enable_thinking=True)
    with pytest.raises(ParameterError, match="enable_thinking"):
        template_record(smollm2_tok, enable_thinking=False)


def test_thinking_template_rendering_equals_apply_chat_template():
    tok = chat_tokenizer(THINKING)
    convs = [c[:-1] for c in read_conversations()]  # end on a user turn: a generation prompt follows
    for flag in (None, True, False):
        kwargs = {} if flag is None else {"enable_thinking": flag}
        got = render_conversations(convs, tok, enable_thinking=flag, add_generation_prompt=True)
        for conv, ids in zip(convs, got):
            assert ids == reference_ids(tok, conv, add_generation_prompt=True, **kwargs)
    on = render_conversations(convs[:1], tok, enable_thinking=True, add_generation_prompt=True)[0]
    off = render_conversations(convs[:1], tok, enable_thinking=False, add_generation_prompt=True)[0]
    default = render_conversations(convs[:1], tok, add_generation_prompt=True)[0]
    think_end = tok.convert_tokens_to_ids("</think>")
    assert think_end in off and think_end not in on and default == on
    assert supports_thinking(THINKING) and not supports_thinking(CHATML)
    assert template_record(tok, enable_thinking=False) == {
        "origin": "tokenizer",
        "sha256": template_sha256(THINKING),
        "supports_thinking": True,
        "enable_thinking": False,
    }


def test_template_override_and_hash():
    tok = chat_tokenizer(CHATML)
    conv = read_conversations()[1]
    assert render_conversations([conv], tok)[0] == reference_ids(tok, conv)
    other = CHATML.replace("'\\n' + m['content']", "':\\n' + m['content']")
    assert render_conversations([conv], tok, template=other)[0] == reference_ids(tok, conv, chat_template=other)
    assert render_conversations([conv], tok, template=other) != render_conversations([conv], tok)
    own, given = template_record(tok), template_record(tok, template=other)
    assert own["sha256"] == template_sha256(CHATML) != given["sha256"] == template_sha256(other)
    assert (own["origin"], given["origin"]) == ("tokenizer", "given")
    assert require_chat_template(tok, "m", other) == other


def test_base_model_without_template_is_one_line_error(tmp_path):
    tok = chat_tokenizer(None)
    with pytest.raises(CalibenchError) as info:
        require_chat_template(tok, "tiny-base")
    message = str(info.value)
    assert message == (
        "model tiny-base has no chat template (a base model?): use a plain text source, or pass --chat-template FILE"
    )
    conv = read_conversations()[:1]
    with pytest.raises(CalibenchError, match="has no chat template"):
        render_conversations(conv, tok)
    with pytest.raises(CalibenchError, match="has no chat template"):
        template_record(tok)
    # an explicit template makes a base model renderable
    path = tmp_path / "chatml.jinja"
    path.write_text(CHATML, encoding="utf-8")
    template = read_chat_template(path)
    assert render_conversations(conv, tok, template=template)[0] == reference_ids(tok, conv[0], chat_template=CHATML)
    with pytest.raises(ParameterError, match="does not exist"):
        read_chat_template(tmp_path / "missing.jinja")


def test_template_that_raises_is_a_user_error():
    template = "{% if messages[0]['role'] == 'system' %}{{ raise_exception('no system role') }}{% endif %}x"
    tok = chat_tokenizer(template)
    with pytest.raises(CalibenchError, match="refused conversation 0: no system role"):
        render_conversations([[{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]], tok)


# --------------------------------------------------------------------------- rows -> conversations


def test_messages_rows_and_system_line():
    rows = [
        {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello", "name": "bot"}]},
        {"messages": [{"role": "system", "content": "own"}, {"role": "user", "content": "q"}], "id": 3},
    ]
    convs = conversations_from_rows(rows, ChatFormat(system="Be brief."))
    assert convs[0] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
    ]  # only role and content are kept
    assert convs[1][0] == {"role": "system", "content": "own"}  # a conversation's own system message wins
    assert conversations_from_rows(rows, ChatFormat())[0][0]["role"] == "user"
    assert conversations_from_rows([{"conv": rows[0]["messages"]}], ChatFormat(messages_field="conv"))[0][0] == {
        "role": "user",
        "content": "hi",
    }


def test_alpaca_rows():
    rows = [
        {"instruction": "Add the numbers.", "input": "2 and 3", "output": "5", "sys": None},
        {"instruction": "Name a colour.", "input": "", "output": "Blue.", "sys": "You are terse."},
    ]
    fmt = ChatFormat(
        instruction_field="instruction",
        input_field="input",
        response_field="output",
        system_field="sys",
        system="Default system.",
    )
    convs = conversations_from_rows(rows, fmt)
    assert convs[0] == [
        {"role": "system", "content": "Default system."},
        {"role": "user", "content": "Add the numbers.\n\n2 and 3"},
        {"role": "assistant", "content": "5"},
    ]
    assert convs[1] == [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Name a colour."},
        {"role": "assistant", "content": "Blue."},
    ]
    plain = conversations_from_rows(rows, ChatFormat(instruction_field="instruction", response_field="output"))
    assert plain[1] == [{"role": "user", "content": "Name a colour."}, {"role": "assistant", "content": "Blue."}]
    tok = chat_tokenizer(CHATML)
    assert render_conversations(convs, tok)[0] == reference_ids(tok, convs[0])


def bad(rows, fmt=None):
    with pytest.raises(ParameterError) as info:
        conversations_from_rows(rows, fmt or ChatFormat())
    message = str(info.value)
    assert "\n" not in message
    return info.value


GOOD = [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize(
    "rows,param,fragments",
    [
        (
            [{"text": "x", "id": 1}],
            "messages_field",
            ["'messages' is not a column of row 0", "columns present: text, id"],
        ),
        ([{"messages": GOOD}, {"messages": "hi"}], "messages_field", ["row 1", "str, not a list"]),
        ([{"messages": [GOOD[0], "hi"]}], "messages_field", ["row 0, message 1", "not a {role, content} dict"]),
        ([{"messages": [{"content": "x"}]}], "messages_field", ["message 0 has no 'role' key (keys: content)"]),
        ([{"messages": [{"role": "user", "content": 3}]}], "messages_field", ["int 'content', not a string"]),
        (
            [{"messages": GOOD}, {"messages": GOOD}, {"messages": [{"role": "human", "content": "x"}]}],
            "messages_field",
            ["row 2, message 0 has unknown role 'human'", "known: system, user, assistant, tool"],
        ),
        ([{"messages": []}], "messages_field", ["row 0 is an empty conversation"]),
        ([{"messages": [{"role": "system", "content": "s"}]}], "messages_field", ["only system messages"]),
        (["just a string"], "messages_field", ["row 0 is str, not a mapping"]),
        ([], "messages_field", ["found no rows"]),
    ],
)
def test_shape_errors_name_the_field_and_row(rows, param, fragments):
    err = bad(rows)
    assert err.param == param
    for fragment in fragments:
        assert fragment in str(err), str(err)


def test_alpaca_shape_errors():
    fmt = ChatFormat(instruction_field="instruction", input_field="input", response_field="output")
    err = bad([{"instruction": "a", "output": "b"}], fmt)
    assert (
        err.param == "input_field"
        and "'input' is not a column of row 0 (columns present: instruction, output)" in str(err)
    )
    err = bad(
        [{"instruction": "a", "input": None, "output": "b"}, {"instruction": " ", "input": "", "output": "b"}], fmt
    )
    assert err.param == "instruction_field" and "'instruction' of row 1 is empty" in str(err)
    err = bad([{"instruction": "a", "input": "", "output": 7}], fmt)
    assert err.param == "response_field" and "'output' of row 0 is int, not a string" in str(err)


def test_chat_format_validation():
    with pytest.raises(ParameterError, match="messages_field cannot be combined"):
        ChatFormat(messages_field="m", instruction_field="i", response_field="r")
    with pytest.raises(ParameterError, match="response_field is required"):
        ChatFormat(instruction_field="i")
    with pytest.raises(ParameterError, match="input_field only applies"):
        ChatFormat(input_field="x")
    with pytest.raises(ValidationError):
        ChatFormat(messages="m")  # extra fields are refused
    assert ChatFormat().messages_field == "messages" and not ChatFormat().alpaca
    assert ChatFormat(instruction_field="i", response_field="r").columns() == ["i", "r"]


def test_conversation_file_is_valid():
    convs = read_conversations()
    assert 10 <= len(convs) <= 20
    assert sum(len(c) > 3 for c in convs) >= 3  # some multi-turn
    assert sum(c[0]["role"] == "system" for c in convs) >= 2  # some with a system message
    assert all(c[-1]["role"] == "assistant" for c in convs)
