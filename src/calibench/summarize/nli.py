"""NLI backends for the consistency score: anything that says how strongly a premise supports a hypothesis.

An :class:`Nli` maps (premise, hypothesis) pairs to P(supported) in [0, 1].
The registry holds the offline ``aegis`` model (the ``aegis-nli`` asset: an
undocumented int8 ONNX cross-encoder of DeBERTa-v3-xsmall shape, 160-token
inputs, 2 logits, class 0 behaving like "supported"; weak, see docs/summarization.md)
and, for any other name, a Hugging Face sequence-classification NLI model
(hub id or local directory: ``MoritzLaurer/DeBERTa-v3-base-mnli``,
``tals/albert-xlarge-vitaminc-mnli`` as SummaC uses...), whose entailment
class is found from its ``id2label``.  Tests plug in a plain function.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Any, Protocol

import numpy as np

from calibench.assets import require
from calibench.core.errors import CalibenchError
from calibench.core.text import one_line

AEGIS = "aegis"
AEGIS_ASSET = "aegis-nli"
AEGIS_MAX_TOKENS = 160


class Nli(Protocol):
    name: str

    def __call__(self, premises: Sequence[str], hypotheses: Sequence[str]) -> np.ndarray: ...


#: what a backend may also give so that premises can be windows of sentences (:mod:`.consistency`):
#: ``max_tokens`` (its input length) and ``token_count(texts) -> [tokens without special tokens]``


class FunctionNli:
    """Any ``fn(premises, hypotheses) -> probabilities`` as an :class:`Nli` (stubs, custom scorers)."""

    def __init__(self, fn: Callable[[Sequence[str], Sequence[str]], Any], name: str = "function"):
        self.fn, self.name = fn, name

    def __call__(self, premises: Sequence[str], hypotheses: Sequence[str]) -> np.ndarray:
        return np.asarray(self.fn(premises, hypotheses), dtype=np.float64)


class AegisNli:
    """The offline ONNX cross-encoder; premises are truncated first so the hypothesis always fits.

    The int8 model quantizes its activations dynamically, with one scale per *tensor*: in a batch of several
    pairs the scale comes from all of them, so a pair's score would depend on its batch mates (by up to 0.2 in
    P(supported) on Factual-Summary-Pairs).  Every pair therefore goes through the session alone, padded to the
    model's fixed 160 tokens: a pair's score is the same whatever else is scored with it (about a quarter fewer
    pairs per second than 32-pair batches; benchmarks/bench_aegis_batch.py measures it).
    """

    name = AEGIS

    def __init__(self) -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise CalibenchError("nli=aegis needs onnxruntime (pip install onnxruntime), or use nli=none") from None
        import torch
        from transformers import AutoTokenizer

        root = require(AEGIS_ASSET)
        options = ort.SessionOptions()
        options.intra_op_num_threads = max(1, torch.get_num_threads())  # honour the process's thread budget
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(
            str(root / "policy_nli_int8.onnx"), options, providers=["CPUExecutionProvider"]
        )
        self.tokenizer = AutoTokenizer.from_pretrained(str(root / "policy_nli_tokenizer"))
        self.max_tokens = AEGIS_MAX_TOKENS
        self.hypotheses_cut = 0  # rows whose hypothesis alone filled the input (see encode_pairs)

    def __call__(self, premises: Sequence[str], hypotheses: Sequence[str]) -> np.ndarray:
        if not len(premises):
            return np.zeros(0)
        enc, cut = encode_pairs(
            self.tokenizer, premises, hypotheses, AEGIS_MAX_TOKENS, padding="max_length", return_tensors="np"
        )
        self.hypotheses_cut += cut
        ids, mask = enc["input_ids"].astype(np.int64), enc["attention_mask"].astype(np.int64)
        out = np.empty(len(ids), dtype=np.float64)
        for i in range(len(ids)):  # one pair per run: its activation scales are its own (see the class)
            logits = self.session.run(None, {"input_ids": ids[i : i + 1], "attention_mask": mask[i : i + 1]})[0]
            out[i] = _softmax(logits.astype(np.float64))[0, 0]
        return out

    def token_count(self, texts: Sequence[str]) -> list[int]:
        """Tokens of each text without special tokens (what a premise window is sized by)."""
        return [len(ids) for ids in self.tokenizer(list(texts), add_special_tokens=False)["input_ids"]]


class HfNli:
    """A sequence-classification NLI model (hub or local); P(entailment) from its softmax."""

    def __init__(self, spec: str, batch_size: int = 16, max_length: int = 512):
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        try:
            self.tokenizer = AutoTokenizer.from_pretrained(spec)
            self.model = AutoModelForSequenceClassification.from_pretrained(spec).eval()
        except Exception as exc:
            raise CalibenchError(
                f"could not load NLI model '{spec}' ({one_line(str(exc), 160)}); offline, use nli=aegis"
            ) from None
        labels = {str(v).lower(): int(k) for k, v in self.model.config.id2label.items()}
        found = [i for label, i in labels.items() if label.startswith("entail") or label == "supported"]
        if not found:
            raise CalibenchError(f"NLI model '{spec}' has no entailment label (labels: {', '.join(labels)})")
        self.entail, self.name, self.batch_size, self.max_length = found[0], spec, batch_size, max_length
        self.max_tokens = min(max_length, int(getattr(self.tokenizer, "model_max_length", max_length) or max_length))
        self._torch = torch
        self.hypotheses_cut = 0  # rows whose hypothesis alone filled the input (see encode_pairs)

    def __call__(self, premises: Sequence[str], hypotheses: Sequence[str]) -> np.ndarray:
        out = []
        with self._torch.inference_mode():
            for i in range(0, len(premises), self.batch_size):
                enc, cut = encode_pairs(
                    self.tokenizer,
                    premises[i : i + self.batch_size],
                    hypotheses[i : i + self.batch_size],
                    self.max_length,
                    padding="longest",
                    return_tensors="pt",
                )
                self.hypotheses_cut += cut
                probs = self.model(**enc).logits.float().softmax(-1)[:, self.entail]
                out.append(probs.numpy())
        return np.concatenate(out) if out else np.zeros(0)

    def token_count(self, texts: Sequence[str]) -> list[int]:
        return [len(ids) for ids in self.tokenizer(list(texts), add_special_tokens=False)["input_ids"]]


def encode_pairs(
    tokenizer: Any,
    premises: Sequence[str],
    hypotheses: Sequence[str],
    max_length: int,
    *,
    padding: str,
    return_tensors: str,
) -> tuple[Any, int]:
    """Encode (premise, hypothesis) pairs in ``max_length`` tokens, cutting the premise first, row by row.

    A row's premise is truncated so that its hypothesis fits whole.  A
    hypothesis that alone fills the input (a run-on summary sentence of
    ~155 tokens for the 160-token aegis model) leaves nothing to cut from the
    premise, and a tokenizer asked to truncate only the premise refuses the
    whole batch ("Sequence to truncate too short"); such a row is cut from
    the longer side instead (both sides kept, the hypothesis's end dropped)
    and counted in the second return value, while the other rows are
    encoded exactly as before.
    """
    premises, hypotheses = list(premises), list(hypotheses)
    room = max_length - tokenizer.num_special_tokens_to_add(pair=True)
    lengths = [len(ids) for ids in tokenizer(hypotheses, add_special_tokens=False)["input_ids"]] if hypotheses else []
    too_long = [n >= room for n in lengths]
    rows: list[dict[str, Any]] = [{} for _ in premises]
    for flag, strategy in ((False, "only_first"), (True, "longest_first")):
        idx = [i for i, f in enumerate(too_long) if f == flag]
        if idx:
            enc = tokenizer(
                [premises[i] for i in idx], [hypotheses[i] for i in idx], truncation=strategy, max_length=max_length
            )
            for j, i in enumerate(idx):
                rows[i] = {key: enc[key][j] for key in enc}
    batch = tokenizer.pad(rows, padding=padding, max_length=max_length, return_tensors=return_tensors)
    return batch, sum(too_long)


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


@lru_cache(maxsize=4)
def get_nli(name: str) -> Nli:
    """The NLI backend called ``name`` (loaded once per process)."""
    if name == AEGIS:
        return AegisNli()
    return HfNli(name)


def check_nli_name(name: str, offline: bool = False) -> None:
    """Fail in seconds, before any model loads or generates: the offline model must be pulled; any other name
    must be a directory or hub id whose config (no weights) loads and has an entailment class."""
    if name == AEGIS:
        require(AEGIS_ASSET)
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            raise CalibenchError("nli=aegis needs onnxruntime (pip install onnxruntime), or use nli=none") from None
        return
    check_nli_spelling(name, offline)
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(os.path.expanduser(name), local_files_only=offline)
    except Exception as exc:  # a missing repo, offline without a copy, a directory without config.json
        where = "in the local hub cache (offline)" if offline else "locally or on the hub"
        raise CalibenchError(
            f"NLI model '{name}' not found {where} ({one_line(str(exc), 120)}); offline, use nli=aegis"
        ) from None
    labels = [str(v).lower() for v in (getattr(config, "id2label", None) or {}).values()]
    if not any(label.startswith("entail") or label == "supported" for label in labels):
        raise CalibenchError(
            f"NLI model '{name}' has no entailment label (labels: {', '.join(labels) or 'none'}): "
            "give a sequence-classification NLI model"
        )


def check_nli_spelling(name: str, offline: bool) -> None:
    """The cheap part of :func:`check_nli_name` (no transformers, no network): a hub id or a directory; offline,
    a hub id must be in the local hub cache."""
    local = os.path.expanduser(name)
    if os.path.isdir(local):
        if not os.path.isfile(os.path.join(local, "config.json")):
            raise CalibenchError(f"NLI model directory {name} has no config.json")
        return
    if "/" not in name or name.startswith((".", "/", "~")):
        raise CalibenchError(
            f"unknown NLI model '{name}': use aegis (offline), none, or a hub id/directory "
            "of a sequence-classification NLI model"
        )
    if offline:
        from huggingface_hub import try_to_load_from_cache

        try:
            cached = isinstance(try_to_load_from_cache(name, "config.json"), str)
        except Exception:  # an id the hub client rejects
            cached = False
        if not cached:
            raise CalibenchError(
                f"NLI model '{name}' is not in the local hub cache (offline): use nli=aegis (offline), nli=none, "
                "or a directory"
            )
