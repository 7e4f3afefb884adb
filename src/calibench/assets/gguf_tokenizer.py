"""A faithful Hugging Face tokenizer for a GGUF file.

``AutoTokenizer.from_pretrained(dir, gguf_file=...)`` (transformers 5.17) gets
some GGUF vocabularies wrong, and a wrong tokenizer silently ruins every
perplexity and every calibration set, so the conversion repairs it here:

* SentencePiece vocabularies (``tokenizer.ggml.model == "llama"``, as in
  Gemma 3) come with per-piece scores but no merge list.  transformers turns
  Gemma's into a *Unigram* model, which segments badly ("Hello world" ->
  ``Hello ▁w or ld`` instead of ``Hello ▁world``), drops the GGUF's
  ``add_bos_token`` (Gemma's perplexity goes from about 9 to about 250 without
  BOS), and after ``save_pretrained`` reloads as a BPE without merges, i.e.
  one token per character.  We rebuild it the way llama.cpp, the reference
  runtime for GGUF, tokenizes: byte-fallback BPE whose merge priority is the
  score of the merged piece, control and user-defined pieces matched whole.
* For every vocabulary, the special tokens are set from the ids the GGUF
  declares (transformers' converters can swap or misassign BOS and EOS: SmolLM2
  came out with EOS = ``<|im_start|>``), BOS is added when the GGUF says so,
  and ``model_max_length`` is the model's context length instead of the
  "unbounded" sentinel.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

# GGUF token types (llama.cpp's llama_token_type).
_NORMAL, _CONTROL, _USER_DEFINED = 1, 3, 4


@dataclass(frozen=True)
class GGUFVocab:
    """The tokenizer metadata of a GGUF file."""

    model: str
    tokens: list[str]
    scores: list[float] | None
    types: list[int] | None
    has_merges: bool
    special_ids: dict[str, int]  # bos/eos/unk/pad -> id, those the file declares
    add_bos: bool
    add_eos: bool
    add_space_prefix: bool
    chat_template: str | None
    context_length: int | None


def read_vocab(gguf: Path) -> GGUFVocab:
    """Read the tokenizer fields of ``gguf`` (tensors are memory-mapped, not read)."""
    from gguf import GGUFReader

    fields = GGUFReader(str(gguf)).fields

    def get(key: str, default: Any = None) -> Any:
        field = fields.get(key)
        return default if field is None else field.contents()

    arch = get("general.architecture", "")
    special_ids = {}
    for name, key in (("bos", "bos"), ("eos", "eos"), ("unk", "unknown"), ("pad", "padding")):
        value = get(f"tokenizer.ggml.{key}_token_id")
        if value is not None:
            special_ids[name] = int(value)
    return GGUFVocab(
        model=str(get("tokenizer.ggml.model", "")),
        tokens=list(get("tokenizer.ggml.tokens", [])),
        scores=get("tokenizer.ggml.scores"),
        types=get("tokenizer.ggml.token_type"),
        has_merges="tokenizer.ggml.merges" in fields,
        special_ids=special_ids,
        add_bos=bool(get("tokenizer.ggml.add_bos_token", False)),
        add_eos=bool(get("tokenizer.ggml.add_eos_token", False)),
        add_space_prefix=bool(get("tokenizer.ggml.add_space_prefix", True)),
        chat_template=get("tokenizer.chat_template"),
        context_length=get(f"{arch}.context_length"),
    )


def _spm_merges(vocab: GGUFVocab) -> list[tuple[str, str]]:
    """BPE merges equivalent to SentencePiece's score-driven merging.

    SentencePiece (and llama.cpp) repeatedly merges the adjacent pair whose
    concatenation is the highest-scoring normal piece, so every split of a
    piece into two normal pieces is a merge, ranked by the piece's score.
    """
    assert vocab.scores is not None and vocab.types is not None
    ids = {tok: i for i, tok in enumerate(vocab.tokens)}
    normal = {tok for tok, ty in zip(vocab.tokens, vocab.types, strict=True) if ty == _NORMAL}
    ranked = []
    for i, (tok, ty) in enumerate(zip(vocab.tokens, vocab.types, strict=True)):
        if ty != _NORMAL or len(tok) < 2:
            continue
        for k in range(1, len(tok)):
            left, right = tok[:k], tok[k:]
            if left in normal and right in normal:
                ranked.append((-vocab.scores[i], ids[left], ids[right], left, right))
    ranked.sort()
    return [(left, right) for *_, left, right in ranked]


def _spm_backend(vocab: GGUFVocab) -> Any:
    """A ``tokenizers.Tokenizer`` reproducing llama.cpp's SentencePiece tokenization."""
    from tokenizers import AddedToken, Tokenizer, decoders, normalizers
    from tokenizers.models import BPE

    ids = {tok: i for i, tok in enumerate(vocab.tokens)}
    unk_id = vocab.special_ids.get("unk")
    backend = Tokenizer(
        BPE(
            ids,
            _spm_merges(vocab),
            unk_token=vocab.tokens[unk_id] if unk_id is not None else None,
            fuse_unk=True,
            byte_fallback=True,
        )
    )
    steps: list[normalizers.Normalizer] = [normalizers.Replace(" ", "▁")]
    if vocab.add_space_prefix:
        steps.insert(0, normalizers.Prepend("▁"))
    backend.normalizer = normalizers.Sequence(steps)
    decode = [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()]
    if vocab.add_space_prefix:
        decode.append(decoders.Strip(content=" ", left=1))
    backend.decoder = decoders.Sequence(decode)
    assert vocab.types is not None
    # Control and user-defined pieces are matched whole in the raw text, never built by merges.
    backend.add_tokens(
        [
            AddedToken(tok, special=ty == _CONTROL, normalized=False)
            for tok, ty in zip(vocab.tokens, vocab.types, strict=True)
            if ty in (_CONTROL, _USER_DEFINED)
        ]
    )
    return backend


def _add_template(tokenizer: Any, bos: tuple[str, int] | None, eos: tuple[str, int] | None) -> None:
    """Put BOS before / EOS after each sequence, keeping any existing post-processing."""
    from tokenizers import processors

    single = " ".join(x for x in (bos and bos[0], "$A", eos and eos[0]) if x)
    pair = " ".join(x for x in (bos and bos[0], "$A", eos and eos[0], bos and bos[0], "$B", eos and eos[0]) if x)
    specials = sorted({t for t in (bos, eos) if t is not None})
    template = processors.TemplateProcessing(single=single, pair=pair, special_tokens=specials)
    backend = tokenizer.backend_tokenizer
    existing = backend.post_processor
    backend.post_processor = template if existing is None else processors.Sequence([existing, template])


def load_gguf_tokenizer(gguf: Path) -> Any:
    """A Hugging Face tokenizer equivalent to the one llama.cpp would use for ``gguf``."""
    from transformers import AutoTokenizer, PreTrainedTokenizerBase, PreTrainedTokenizerFast

    vocab = read_vocab(gguf)
    specials = {f"{k}_token": vocab.tokens[i] for k, i in vocab.special_ids.items() if 0 <= i < len(vocab.tokens)}
    if vocab.model == "llama" and not vocab.has_merges and vocab.scores is not None and vocab.types is not None:
        tokenizer: PreTrainedTokenizerBase = PreTrainedTokenizerFast(tokenizer_object=_spm_backend(vocab), **specials)
    else:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        for attr, token in specials.items():
            setattr(tokenizer, attr, token)
    probe = tokenizer("a").input_ids
    bos = eos = None
    if vocab.add_bos and "bos" in vocab.special_ids and probe[:1] != [vocab.special_ids["bos"]]:
        bos = (vocab.tokens[vocab.special_ids["bos"]], vocab.special_ids["bos"])
    if vocab.add_eos and "eos" in vocab.special_ids and probe[-1:] != [vocab.special_ids["eos"]]:
        eos = (vocab.tokens[vocab.special_ids["eos"]], vocab.special_ids["eos"])
    if bos or eos:
        _add_template(tokenizer, bos, eos)
    if vocab.chat_template and not getattr(tokenizer, "chat_template", None):
        tokenizer.chat_template = vocab.chat_template
    if vocab.context_length:
        tokenizer.model_max_length = int(vocab.context_length)
    # Cleanup of spaces before punctuation is destructive for BPE (and warns on every decode).
    tokenizer.clean_up_tokenization_spaces = False
    return tokenizer
