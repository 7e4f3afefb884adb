"""Token ids that every keep set holds, whatever the text: a registry of rules.

Counting text alone would drop tokens that the text never shows but the model
needs to run: BOS/EOS/PAD (added by tokenizers and lm-eval, used for padding
and for stopping generation), the other special tokens, the scaffolding of the
chat template, and the byte tokens that let any string be spelled (SentencePiece
``<0xNN>`` byte fallback; the 256 single-byte tokens of byte-level BPE).
Each rule is one function; the vocabulary file records what each one kept.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

_BYTE_FALLBACK = re.compile(r"^<0x[0-9A-Fa-f]{2}>$")


def _bos_eos_pad(tokenizer: Any) -> set[int]:
    ids = (tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id, tokenizer.unk_token_id)
    return {int(i) for i in ids if i is not None}


def _special(tokenizer: Any) -> set[int]:
    found = {int(i) for i in getattr(tokenizer, "all_special_ids", []) or [] if i is not None}
    for index, token in (getattr(tokenizer, "added_tokens_decoder", None) or {}).items():
        if getattr(token, "special", False):
            found.add(int(index))
    return found


_PROBE = [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}, {"role": "assistant", "content": "a"}]


def _chat_template(tokenizer: Any) -> set[int]:
    """Ids of the template rendered around one-letter messages (its literal text: role markers, separators)."""
    if not getattr(tokenizer, "chat_template", None):
        return set()
    found: set[int] = set()
    for messages in (_PROBE, _PROBE[1:]):  # some templates refuse a system turn
        for generation_prompt in (False, True):
            try:
                text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)
            except Exception:  # templates raise anything (jinja errors, role checks)
                continue
            found.update(int(i) for i in tokenizer(text, add_special_tokens=False)["input_ids"])
    return found


def _byte_tokens(tokenizer: Any) -> set[int]:
    vocab = tokenizer.get_vocab()
    fallback = {int(i) for token, i in vocab.items() if _BYTE_FALLBACK.match(token)}
    if fallback:
        return fallback
    try:  # byte-level BPE: the 256 characters that stand for single bytes
        from tokenizers.pre_tokenizers import ByteLevel

        alphabet = ByteLevel.alphabet()
    except ImportError:  # pragma: no cover
        return set()
    # byte-level vocabularies may leave out the bytes that never occur in UTF-8 (SmolLM2 has 235 of 256)
    if not _is_byte_level(tokenizer):
        return set()
    return {int(vocab[ch]) for ch in alphabet if ch in vocab}


def _is_byte_level(tokenizer: Any) -> bool:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    return backend is not None and "ByteLevel" in repr(backend.pre_tokenizer)


ALWAYS_KEPT: dict[str, Callable[[Any], set[int]]] = {
    "bos_eos_pad_unk": _bos_eos_pad,
    "special": _special,
    "chat_template": _chat_template,
    "bytes": _byte_tokens,
}


def always_kept(tokenizer: Any, vocab_size: int) -> dict[str, list[int]]:
    """Every rule's ids (inside the vocabulary), by rule name."""
    return {name: sorted(i for i in rule(tokenizer) if 0 <= i < vocab_size) for name, rule in ALWAYS_KEPT.items()}
