"""Chat / SFT conversations rendered through a model's chat template.

An instruct model is deployed on *rendered conversations*
(``<|im_start|>user ... <|im_end|>``), not on plain documents, so a
calibration set meant to look like its real inputs must be made of the same
token sequences.  This module holds the pure pieces (no CLI, no model):

* :class:`ChatFormat`: which columns of a row hold the conversation, either a
  ``messages`` column (``[{"role": ..., "content": ...}, ...]``) or
  Alpaca-style ``instruction`` / ``input`` / ``response`` columns;
* :func:`conversations_from_rows`: rows to validated conversations, with a
  one-line :class:`~calibench.core.errors.ParameterError` naming the field and the
  row for every malformed row, so a bad dataset fails before any tokenizing;
* :func:`require_chat_template`: the template text (the tokenizer's, or one
  the user gives), or a one-line error for a base model that has none;
* :func:`render_conversations`: token ids, exactly what
  ``tokenizer.apply_chat_template(conv, tokenize=True)`` returns;
* :func:`template_record`: what the manifest records about the template (its
  sha256, whether it has a thinking mode, the ``enable_thinking`` used), so
  two sets rendered with different templates never share an identity.

``enable_thinking`` is a template variable of reasoning models (Qwen3,
SmolLM3...): it is passed to the template only when the template reads it.  A
request for it on a template that never reads it is an error rather than a
silent no-op, because the user would believe the set holds (or lacks)
reasoning traces when the template ignored the request.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator

from calibench.core.errors import CalibenchError, ParameterError
from calibench.core.text import one_line
from calibench.data.tokenizer import portable_name

#: Roles a conversation may hold; anything else is almost always a mislabelled column ("human", "gpt").
ROLES = ("system", "user", "assistant", "tool")
#: The template variable that switches a reasoning model's thinking mode.
THINKING_VARIABLE = "enable_thinking"


class ChatFormat(BaseModel):
    """Where a row keeps its conversation.

    Either ``messages_field`` (the default, ``"messages"``), or
    ``instruction_field`` and ``response_field`` (with optional
    ``input_field``, appended to the instruction after a blank line as in
    Alpaca, and ``system_field``).  ``system`` is a system message added to a
    conversation that has none (a per-row ``system_field`` value wins over it).
    ``enable_thinking``: ``None`` leaves the template's default.
    """

    model_config = ConfigDict(extra="forbid")
    messages_field: str | None = None
    instruction_field: str | None = None
    response_field: str | None = None
    input_field: str | None = None
    system_field: str | None = None
    system: str | None = None
    enable_thinking: bool | None = None

    @model_validator(mode="after")
    def _one_layout(self) -> ChatFormat:
        sft = self.instruction_field is not None or self.response_field is not None
        if self.messages_field is not None and sft:
            raise ParameterError(
                "messages_field",
                "cannot be combined with instruction_field/response_field: "
                "give a messages column or Alpaca-style columns, not both",
            )
        if sft and (self.instruction_field is None or self.response_field is None):
            missing = "response_field" if self.response_field is None else "instruction_field"
            raise ParameterError(missing, "is required with Alpaca-style rows (instruction_field and response_field)")
        if not sft and self.input_field is not None:
            raise ParameterError("input_field", "only applies with instruction_field/response_field")
        if not sft and self.messages_field is None:
            self.messages_field = "messages"
        for name in ("messages_field", "instruction_field", "response_field", "input_field", "system_field"):
            value = getattr(self, name)
            if value is not None and not value.strip():
                raise ParameterError(name, "is an empty column name")
        return self

    @property
    def alpaca(self) -> bool:
        """True for instruction/response rows, False for a messages column."""
        return self.instruction_field is not None

    @property
    def layout_param(self) -> str:
        """The parameter that names this layout's main column, for errors about a whole row."""
        return "instruction_field" if self.alpaca else "messages_field"

    def columns(self) -> list[str]:
        """The columns this format reads (for error messages and column selection)."""
        names = [self.messages_field, self.instruction_field, self.input_field, self.response_field, self.system_field]
        return [n for n in names if n is not None]


# ----------------------------------------------------------------------------- rows -> conversations


def _columns_hint(row: Mapping[str, Any]) -> str:
    names = [str(k) for k in row.keys()]
    return ", ".join(names[:20]) + (f", ... ({len(names)} in all)" if len(names) > 20 else "") if names else "none"


def _column(row: Mapping[str, Any], param: str, name: str, index: int) -> Any:
    if name not in row:
        raise ParameterError(param, f"'{name}' is not a column of row {index} (columns present: {_columns_hint(row)})")
    return row[name]


def _text(value: Any, param: str, name: str, index: int, *, optional: bool = False) -> str | None:
    """A string cell; None (and, when optional, '') means absent."""
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise ParameterError(param, f"'{name}' of row {index} is {type(value).__name__}, not a string")
    if not value.strip():
        if optional:
            return None
        raise ParameterError(param, f"'{name}' of row {index} is empty")
    return value


def _text_field(
    row: Mapping[str, Any], fmt: ChatFormat, param: str, index: int, *, optional: bool = False
) -> str | None:
    """The string in the column that ``fmt``'s ``param`` (``"response_field"``, ...) names."""
    name = getattr(fmt, param)
    return _text(_column(row, param, name, index), param, name, index, optional=optional)


def _messages(value: Any, param: str, name: str, index: int) -> list[dict[str, str]]:
    if not isinstance(value, (list, tuple)) or isinstance(value, (str, bytes)):
        raise ParameterError(
            param, f"'{name}' of row {index} is {type(value).__name__}, not a list of {{role, content}} messages"
        )
    messages = []
    for j, message in enumerate(value):
        where = f"'{name}' of row {index}, message {j}"
        if not isinstance(message, Mapping):
            raise ParameterError(param, f"{where} is {type(message).__name__}, not a {{role, content}} dict")
        for key in ("role", "content"):
            if key not in message:
                keys = ", ".join(map(str, message.keys())) or "none"
                raise ParameterError(param, f"{where} has no '{key}' key (keys: {keys})")
            if not isinstance(message[key], str):
                raise ParameterError(param, f"{where} has a {type(message[key]).__name__} '{key}', not a string")
        role = message["role"]
        if role not in ROLES:
            raise ParameterError(param, f"{where} has unknown role '{role}' (known: {', '.join(ROLES)})")
        messages.append({"role": role, "content": message["content"]})
    return messages


def conversation_from_row(row: Mapping[str, Any], fmt: ChatFormat, index: int = 0) -> list[dict[str, str]]:
    """One row as a validated conversation (``index`` is the row number shown in errors)."""
    if not isinstance(row, Mapping):
        raise ParameterError(fmt.layout_param, f"row {index} is {type(row).__name__}, not a mapping of columns")
    system: str | None = fmt.system
    if fmt.system_field is not None:
        own = _text_field(row, fmt, "system_field", index, optional=True)
        system = own if own is not None else system
    if fmt.alpaca:
        assert fmt.instruction_field is not None and fmt.response_field is not None
        instruction = _text_field(row, fmt, "instruction_field", index)
        if fmt.input_field is not None:
            extra = _text_field(row, fmt, "input_field", index, optional=True)
            if extra is not None:
                instruction = f"{instruction}\n\n{extra}"
        response = _text_field(row, fmt, "response_field", index)
        conv = [{"role": "user", "content": str(instruction)}, {"role": "assistant", "content": str(response)}]
    else:
        assert fmt.messages_field is not None
        conv = _messages(
            _column(row, "messages_field", fmt.messages_field, index), "messages_field", fmt.messages_field, index
        )
        field = fmt.messages_field
        if not conv:
            raise ParameterError("messages_field", f"'{field}' of row {index} is an empty conversation")
        if all(m["role"] == "system" for m in conv):
            raise ParameterError("messages_field", f"'{field}' of row {index} has only system messages")
    if system is not None and conv[0]["role"] != "system":
        conv.insert(0, {"role": "system", "content": system})
    return conv


def conversations_from_rows(rows: Iterable[Mapping[str, Any]], fmt: ChatFormat) -> list[list[dict[str, str]]]:
    """Every row as a conversation (a list of ``{"role", "content"}`` dicts), or a one-line error.

    Messages keep only ``role`` and ``content``: those are what was validated,
    and other keys (tool calls, names) would reach the template unchecked.
    """
    convs = [conversation_from_row(row, fmt, i) for i, row in enumerate(rows)]
    if not convs:
        raise ParameterError(fmt.layout_param, "found no rows")
    return convs


# ----------------------------------------------------------------------------- the template


def model_label(tokenizer: Any, model_name: str | None) -> str:
    """How errors name the model: the name given, else the tokenizer's (portable) name."""
    if model_name:
        return model_name

    return portable_name(str(getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__)) or "this model"


def read_chat_template(path: str | Path) -> str:
    """The text of a Jinja chat-template file (``--chat-template FILE``)."""
    p = Path(path)
    if not p.is_file():
        raise ParameterError("chat_template", f"file {p} does not exist: give a Jinja chat-template file")
    text = p.read_text(encoding="utf-8")
    if not text.strip():
        raise ParameterError("chat_template", f"file {p} is empty")
    return text


def require_chat_template(tokenizer: Any, model_name: str | None = None, template: str | None = None) -> str:
    """The template text to render with: ``template`` when given, else the tokenizer's own.

    A base model has no template; rendering would fail deep inside
    transformers, so this says at once what to do instead.
    """
    if template is not None:
        if not isinstance(template, str) or not template.strip():
            raise ParameterError("chat_template", "is empty: give the Jinja template text")
        return template
    own = getattr(tokenizer, "chat_template", None)
    if not own:
        raise CalibenchError(
            f"model {model_label(tokenizer, model_name)} has no chat template (a base model?): use a plain text "
            "source, or pass --chat-template FILE"
        )
    try:
        return str(tokenizer.get_chat_template())  # a dict of named templates: its "default"
    except ValueError as exc:
        first = one_line(str(exc))
        raise CalibenchError(f"model {model_label(tokenizer, model_name)}: {first}") from None


def supports_thinking(template: str) -> bool:
    """Whether the template reads ``enable_thinking`` (a textual test: templates are code we do not run here)."""
    return THINKING_VARIABLE in template


def _thinking_kwargs(template: str, enable_thinking: bool | None, model_name: str) -> dict[str, Any]:
    if enable_thinking is None:
        return {}
    if not supports_thinking(template):
        raise ParameterError(
            "enable_thinking",
            f"is set to {enable_thinking} but the chat template of {model_name} has no thinking mode (it never reads "
            f"{THINKING_VARIABLE}): leave it unset",
        )
    return {THINKING_VARIABLE: bool(enable_thinking)}


def _as_ids(result: Any) -> list[int]:
    """Token ids from apply_chat_template's result.

    transformers 5.x returns a BatchEncoding by default (``return_dict=True``);
    we ask for ``return_dict=False`` but accept either, and tensors.
    """
    if isinstance(result, Mapping) or hasattr(result, "keys"):
        result = result["input_ids"]
    if hasattr(result, "tolist"):
        result = result.tolist()
    if result and isinstance(result[0], (list, tuple)):  # a batch of one
        if len(result) != 1:
            raise ValueError(f"expected the ids of one conversation, got a batch of {len(result)}")
        result = result[0]
    return [int(t) for t in result]


def render_conversations(
    convs: Sequence[Sequence[Mapping[str, str]]],
    tokenizer: Any,
    *,
    enable_thinking: bool | None = None,
    template: str | None = None,
    add_generation_prompt: bool = False,
    model_name: str | None = None,
) -> list[list[int]]:
    """Token ids of each conversation, exactly ``tokenizer.apply_chat_template(conv, tokenize=True)``.

    ``template`` overrides the tokenizer's template; ``enable_thinking`` is
    passed only when given (and then the template must read it);
    ``add_generation_prompt`` ends the ids with the assistant-turn header, for
    prompting a reply.
    """
    label = model_label(tokenizer, model_name)
    text = require_chat_template(tokenizer, label, template)
    kwargs = _thinking_kwargs(text, enable_thinking, label)
    out = []
    for i, conv in enumerate(convs):
        if not conv:
            raise ParameterError("conversations", f"conversation {i} is empty")
        try:
            result = tokenizer.apply_chat_template(
                [dict(m) for m in conv],
                chat_template=text,
                tokenize=True,
                return_dict=False,
                add_generation_prompt=add_generation_prompt,
                **kwargs,
            )
        except Exception as exc:  # jinja2 TemplateError (incl. raise_exception in the template), ValueError...
            if type(exc).__module__.startswith("jinja2") or isinstance(exc, ValueError):
                first = one_line(exc)
                raise CalibenchError(f"the chat template of {label} refused conversation {i}: {first}") from None
            raise
        out.append(_as_ids(result))
    return out


def template_sha256(template: str) -> str:
    """Hash of the template text (UTF-8)."""
    return hashlib.sha256(template.encode("utf-8")).hexdigest()


def template_record(
    tokenizer: Any, template: str | None = None, enable_thinking: bool | None = None, model_name: str | None = None
) -> dict[str, Any]:
    """What the manifest records about rendering: the template's hash and origin, its thinking mode, the flag used.

    Validates like :func:`render_conversations` (no template, or
    ``enable_thinking`` on a template without it, is an error), so a record
    is only ever written for a rendering that can happen.
    """
    label = model_label(tokenizer, model_name)
    text = require_chat_template(tokenizer, label, template)
    _thinking_kwargs(text, enable_thinking, label)
    return {
        "origin": "given" if template is not None else "tokenizer",
        "sha256": template_sha256(text),
        "supports_thinking": supports_thinking(text),
        "enable_thinking": enable_thinking,
    }
