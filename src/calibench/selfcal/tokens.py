"""Which token a generation starts from, and which tokens end it.

Self-calibration generates "from the BOS token alone".  What that token is
depends on how the model saw document starts in pre-training, so it is decided
here once, by rules that are recorded in the manifest:

``auto`` (the default), first rule that applies:

1. the tokenizer puts a BOS token in front of plain text (Llama, Gemma): that
   BOS is the start of every training document;
2. the tokenizer has the special token ``<|endoftext|>`` (GPT-2, SmolLM,
   Qwen, Pythia families) and adds no BOS: pre-training documents were
   delimited by it, so it is what precedes a document.  This matters for
   SmolLM2-Instruct, whose ``bos_token`` is ``<|im_start|>``, the chat-turn
   marker: generating from it produces chat transcripts, not documents;
3. the tokenizer declares a ``bos_token`` (but does not add it);
4. the tokenizer's ``eos_token``, the usual document separator of models
   trained without BOS.

If none applies the model has no BOS and no fallback: a one-line error asks
for ``--start-token``.  ``bos`` forces rule 3; any other value names a token
(its text, or its id as digits).

A generation ends when the model samples one of the *stop tokens*: the
tokenizer's EOS, the EOS ids of the model's config and generation config, and
the start token itself (a model that emits the document-start token has
started a new document).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from calibench.core.errors import CalibenchError
from calibench.data.tokenizer import tokenizer_adds_bos

DOCUMENT_SEPARATOR = "<|endoftext|>"


@dataclass(frozen=True)
class StartToken:
    id: int
    text: str
    rule: str

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "text": self.text, "rule": self.rule}


def _adds_bos(tokenizer: Any) -> bool:

    return tokenizer_adds_bos(tokenizer)


def _token_text(tokenizer: Any, token_id: int) -> str:
    return str(tokenizer.convert_ids_to_tokens(int(token_id)))


def _special_token_id(tokenizer: Any, text: str) -> int | None:
    for token_id, added in getattr(tokenizer, "added_tokens_decoder", {}).items():
        if str(added) == text or getattr(added, "content", None) == text:
            return int(token_id)
    return None


def resolve_start_token(tokenizer: Any, start: str | int = "auto") -> StartToken:
    """The token every generation starts from, and the rule that chose it."""
    size = len(tokenizer)
    if isinstance(start, int) or (isinstance(start, str) and start.isdigit()):
        token_id = int(start)
        if not 0 <= token_id < size:
            raise CalibenchError(f"--start-token {token_id} is outside the vocabulary (0..{size - 1})")
        return StartToken(token_id, _token_text(tokenizer, token_id), "given by id")
    if start == "bos":
        if tokenizer.bos_token_id is None:
            raise CalibenchError("this tokenizer has no BOS token: use --start-token auto or name a token")
        return StartToken(int(tokenizer.bos_token_id), str(tokenizer.bos_token), "the tokenizer's bos_token (forced)")
    if start != "auto":
        token_id = tokenizer.convert_tokens_to_ids(start)
        if token_id is None or (token_id == tokenizer.unk_token_id and start != tokenizer.unk_token):
            raise CalibenchError(f"--start-token '{start}' is not a token of this tokenizer: give a token or an id")
        return StartToken(int(token_id), start, "given by text")

    if tokenizer.bos_token_id is not None and _adds_bos(tokenizer):
        return StartToken(
            int(tokenizer.bos_token_id), str(tokenizer.bos_token), "auto: the tokenizer adds this BOS to plain text"
        )
    separator = _special_token_id(tokenizer, DOCUMENT_SEPARATOR)
    if separator is not None:
        return StartToken(
            separator,
            DOCUMENT_SEPARATOR,
            f"auto: the tokenizer adds no BOS; {DOCUMENT_SEPARATOR} is its document separator",
        )
    if tokenizer.bos_token_id is not None:
        return StartToken(
            int(tokenizer.bos_token_id),
            str(tokenizer.bos_token),
            "auto: the tokenizer's bos_token (not added to plain text)",
        )
    if tokenizer.eos_token_id is not None:
        return StartToken(
            int(tokenizer.eos_token_id), str(tokenizer.eos_token), "auto: no BOS; the EOS token as document separator"
        )
    raise CalibenchError(
        "this model has no BOS token and no document separator (EOS or <|endoftext|>) to start generation "
        "from: name one with --start-token TOKEN"
    )


def _ids(value: Any) -> list[int]:
    if value is None:
        return []
    if isinstance(value, (list, tuple, set)):
        return [int(v) for v in value if v is not None]
    return [int(value)]


def stop_token_ids(tokenizer: Any, start: StartToken, model: Any | None = None) -> list[int]:
    """Sorted ids that end a generation (see the module docstring)."""
    ids = set(_ids(tokenizer.eos_token_id)) | {start.id}
    if model is not None:
        ids |= set(_ids(getattr(getattr(model, "config", None), "eos_token_id", None)))
        ids |= set(_ids(getattr(getattr(model, "generation_config", None), "eos_token_id", None)))
    return sorted(i for i in ids if 0 <= i < len(tokenizer))
