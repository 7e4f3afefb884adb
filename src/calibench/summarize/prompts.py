"""The summarization prompt: a short instruction, a blank line, the document.

The three instruction styles of Chrysostomou et al. (PruneHall), in our own
words.  An instruct model gets its chat template (a system line asking for a
truthful summary, then the instruction and document as the user turn, then
the generation prompt), rendered by ``tokenizer.apply_chat_template`` itself
so the prompt is exactly what the model was tuned on.  A base model gets the
plain text with a ``Summary:`` cue, and its continuation is cut at the first
blank line (a base model goes on to write the next article).
"""

from __future__ import annotations

from typing import Any, Literal

from calibench.core.errors import CalibenchError

STYLES: dict[str, str] = {
    "paragraph": "Summarize the following document in a single short paragraph.",
    "sentences": "Summarize the following document in a couple of sentences.",
    "summary": "Write a short summary of the following document.",
}
SYSTEM = (
    "You are a careful assistant who writes truthful summaries: state only what the document says, "
    "and add nothing it does not support."
)
PLAIN_CUE = "Summary:"
ChatMode = Literal["auto", "yes", "no"]


def check_style(value: str) -> str:
    """A prompt style's name, or ValueError (pydantic's field validators report it) naming the known ones."""
    if value not in STYLES:
        raise ValueError(f"must be one of {', '.join(STYLES)}, got '{value}'")
    return value


def user_message(document: str, style: str) -> str:
    return f"{STYLES[style]}\n\n{document}"


def conversation(document: str, style: str, system: bool = True) -> list[dict[str, str]]:
    head = [{"role": "system", "content": SYSTEM}] if system else []
    return [*head, {"role": "user", "content": user_message(document, style)}]


def plain_prompt(document: str, style: str) -> str:
    return f"{user_message(document, style)}\n\n{PLAIN_CUE}"


def use_chat(tokenizer: Any, mode: ChatMode, model_name: str) -> bool:
    """Whether prompts go through the chat template; ``yes`` on a model without one is the user's error."""
    has = bool(getattr(tokenizer, "chat_template", None))
    if mode == "yes" and not has:
        raise CalibenchError(
            f"summarization chat=yes: the tokenizer of {model_name} has no chat template (a base "
            "model?); use chat=no for a plain prompt"
        )
    return has if mode == "auto" else mode == "yes"


def render(tokenizer: Any, document: str, style: str, chat: bool, system: bool = True) -> list[int]:
    """The prompt's token ids (chat: ``apply_chat_template(..., add_generation_prompt=True)``)."""
    if chat:
        from calibench.data.chat import _as_ids

        return _as_ids(
            tokenizer.apply_chat_template(
                conversation(document, style, system), tokenize=True, add_generation_prompt=True, return_dict=False
            )
        )
    return list(tokenizer(plain_prompt(document, style))["input_ids"])


def clean_summary(text: str, chat: bool) -> str:
    """The summary text: stripped; a plain prompt's continuation cut at its first blank line."""
    text = text.strip()
    if not chat:
        text = text.split("\n\n", 1)[0].strip()
    return text
