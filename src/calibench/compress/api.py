"""compress(model, calib_set, method) -> CompressionResult, through llm-compressor's oneshot.

Determinism.  llm-compressor draws calibration samples with a RandomSampler
by default (``shuffle_calibration_samples=True``), so the order in which
windows reach the model, and with it the floating-point accumulation of
Hessians and activation statistics, changes from run to run.  calibench
turns shuffling off (its sets are already in a seeded random order) and
seeds torch before every stage, so the same model, set, method and seed give
identical weights on the same machine and thread count.

Combinations (``sparsegpt+gptq``) run one oneshot stage per method.  GPTQ in
llm-compressor 0.14 has no way to keep an existing sparsity mask, and its
error feedback writes into pruned positions; calibench records the mask after
pruning and puts it back after quantization (zero is on every symmetric
grid, so the weights stay quantized), and reports that it did.

Preset schemes (``w4a16``, ``fp8-dynamic``, ``nvfp4``...) are checked against
the model's dtype and device before any work, and the record names the
compressed-tensors scheme, the llm-compressor modifiers that ran and the
checkpoint format to expect.  A recipe file (``recipe=PATH``) runs through the
same stage, and the record keeps its full text and sha256.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import resource
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from calibench import __version__
from calibench.compress.methods import Method, MethodParams, build_recipe, ignore_pattern, make_params, resolve
from calibench.compress.metrics import achieved
from calibench.compress.presets import check_scheme_fits, check_scheme_runnable
from calibench.compress.recipe_file import load_recipe, recipe_presets
from calibench.compress.validate import check_causal_lm, check_structure, resolve_group_size, target_linears
from calibench.core.errors import CalibenchError
from calibench.core.fsutil import atomic_dir
from calibench.core.provenance import library_versions
from calibench.core.settings import DEFAULTS
from calibench.data.calibset import CalibrationSet
from calibench.models import dtype_name, is_hub_id
from calibench.placement import model_device, onload_to, requested_onload_device

RECORD_FILE = "calibench.json"


@dataclass
class CompressionResult:
    """The compressed model (in memory) and the record that describes the run."""

    model: Any
    record: dict[str, Any]
    notes: list[str] = field(default_factory=list)

    def save(self, out: str | Path, tokenizer: Any | None = None) -> Path:
        """A compressed-tensors checkpoint plus calibench.json, written atomically.

        The file record (:mod:`calibench.compress.checkpoint`) is written last, so every reader can verify it.
        """
        from calibench.compress.checkpoint import write_record

        with atomic_dir(out) as tmp:
            self.model.save_pretrained(tmp, save_compressed=True)
            if tokenizer is not None:
                tokenizer.save_pretrained(tmp)
            (tmp / RECORD_FILE).write_text(json.dumps(self.record, indent=2, sort_keys=True) + "\n")
            write_record(tmp, "compressed", tokenizer)
        return Path(out)


def _library_versions() -> dict[str, str]:
    libraries = library_versions(("torch", "transformers", "llmcompressor", "compressed-tensors"), absent="absent")
    return {"python": platform.python_version(), "calibench": __version__, **libraries}


def _peak_memory_mb() -> dict[str, float]:
    """Peak resident memory of this process so far (ru_maxrss), and of the GPU when used."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    peak = {"peak_rss_mb": rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024}
    if torch.cuda.is_available():
        peak["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return peak


def _check_set_fits_model(model: Any, calib: CalibrationSet, tokenizer: Any | None) -> None:
    if tokenizer is not None:
        calib.check_tokenizer(tokenizer)
    embedding = model.get_input_embeddings()
    slot = getattr(embedding, "vocab_slot", None)  # a vocabulary-pruned model (calibench.vocab) takes tokenizer ids
    vocab = slot.numel() if slot is not None else embedding.num_embeddings
    if int(calib.input_ids.max()) >= vocab:
        raise CalibenchError(
            f"calibration set {calib.set_id} has token ids up to {int(calib.input_ids.max())} but the model's "
            f"vocabulary has {vocab}: the set was made for another tokenizer"
        )


def _head_name(model: Any) -> str:
    """Qualified name of the output projection, found by identity rather than by name."""
    head = model.get_output_embeddings()
    for name, module in model.named_modules():
        if module is head:
            return name
    return "lm_head"


def _zero_masks(model: Any) -> dict[str, torch.Tensor]:
    return {name: module.weight.detach() == 0 for name, module in target_linears(model).items()}


def _reapply_masks(model: Any, masks: dict[str, torch.Tensor]) -> None:
    with torch.no_grad():
        for name, module in target_linears(model).items():
            module.weight.masked_fill_(masks[name], 0.0)


def _run_stage(model: Any, calib: CalibrationSet, recipe: list[Any], seed: int, tokenizer: Any | None) -> None:
    from llmcompressor import oneshot

    from calibench.compress.compat import cpu_safe_oneshot
    from calibench.compress.offset_norm import smoothing_for

    torch.manual_seed(seed)
    # layers are onloaded where the model is (a CPU model on a GPU machine stays on the CPU), or where an
    # enclosing onload_to asks (an offloaded model in host memory, calibrated on the GPU)
    with (
        smoothing_for(model, recipe),  # SmoothQuant on Gemma 2/3: see compress.offset_norm
        cpu_safe_oneshot(),
        onload_to(requested_onload_device() or model_device(model)),
        _config_on_disk(model),
    ):
        oneshot(
            model=model,
            dataset=calib.to_hf_dataset(),
            recipe=recipe,
            num_calibration_samples=calib.n,
            max_seq_length=calib.seq_len,
            shuffle_calibration_samples=False,
            # the set is already tokenized; passing the tokenizer only spares
            # oneshot from loading one from the model's directory
            **({"processor": tokenizer} if tokenizer is not None else {}),
        )


def _model_directory(model: Any) -> Path | None:
    """The local checkpoint directory the model was loaded from, if there is one (else it exists only in memory)."""
    name = str(getattr(getattr(model, "config", None), "_name_or_path", "") or "")
    path = Path(name) if name else None
    return path if path is not None and (path / "config.json").is_file() else None


@contextlib.contextmanager
def _config_on_disk(model: Any) -> Iterator[None]:
    """While oneshot runs, a model without a local directory names one holding its own config.

    llm-compressor 0.14 re-reads ``config.json`` from ``model.config.name_or_path``
    before calibrating (to find an on-disk quantization config); for a model
    built or edited in memory that is ``""`` (a one-line-per-frame OSError) or a
    hub id (a hub download, retried offline).  The in-memory config is the
    truth, so it is written (config only, no weights) to a temporary directory,
    and the name is restored afterwards.
    """
    if _model_directory(model) is not None:
        yield
        return
    config = model.config
    before = config._name_or_path
    with tempfile.TemporaryDirectory(prefix="calibench-config-") as tmp:
        config.to_json_file(str(Path(tmp) / "config.json"))
        config._name_or_path = tmp
        try:
            yield
        finally:
            config._name_or_path = before


def _in_memory_name(model: Any) -> str:
    """How the record names a model that exists only in memory: ``in-memory:<class>``."""
    return f"in-memory:{type(model).__name__}"


#: weights of models up to this many parameters are hashed for the record (about a second per 100M on a CPU)
FINGERPRINT_MAX_PARAMETERS = 200_000_000


def weights_fingerprint(model: Any) -> dict[str, Any]:
    """The sha256 of the model's parameters (names, dtypes, shapes and bytes, in order), when that is cheap."""
    import hashlib

    params = list(model.state_dict().items())
    count = sum(t.numel() for _, t in params)
    if count > FINGERPRINT_MAX_PARAMETERS:
        return {"parameters": count, "sha256": None, "why": f"over {FINGERPRINT_MAX_PARAMETERS:,} parameters"}
    digest = hashlib.sha256()
    for name, tensor in params:
        data = tensor.detach().to("cpu").contiguous()
        digest.update(f"{name}:{data.dtype}:{tuple(data.shape)};".encode())
        digest.update(data.reshape(-1).view(torch.uint8).numpy().tobytes())
    return {"parameters": count, "sha256": digest.hexdigest()}


def _dtype_and_device(model: Any) -> tuple[Any, Any]:
    """What the model computes in and where: read from its first parameter, as llm-compressor does."""
    first = next(model.parameters())
    return first.dtype, first.device


def _load(model: Any, tokenizer: Any | None, schemes: list[Any]) -> tuple[Any, Any | None, str, dict[str, Any]]:
    """The model (loaded when given as a spec, after the scheme check), its tokenizer, how to name it, and what
    identifies a model that exists only in memory (its weights' fingerprint) for the record."""
    from calibench.models import load_model, load_tokenizer, resolve_device, resolve_dtype

    if isinstance(model, (str, os.PathLike)):
        model_spec = os.fspath(model)
        device = resolve_device("auto")
        check_scheme_runnable(schemes, resolve_dtype("auto", device, model_spec), device)
        tokenizer = tokenizer if tokenizer is not None else load_tokenizer(model_spec)
        model = load_model(model_spec, dtype="auto", device=device)
    else:
        check_causal_lm(model)
        name = str(getattr(model.config, "_name_or_path", "") or "")  # a directory or hub id it was loaded from
        model_spec = name or _in_memory_name(model)
        if tokenizer is None and _model_directory(model) is None and not is_hub_id(name):
            raise CalibenchError(
                f"compress() of a model that exists only in memory ({type(model).__name__}, no checkpoint "
                "directory to read a tokenizer from) needs its tokenizer: pass tokenizer="
            )
    check_causal_lm(model)
    check_scheme_runnable(schemes, *_dtype_and_device(model))
    identity = {"model_weights": weights_fingerprint(model)} if model_spec.startswith("in-memory:") else {}
    return model, tokenizer, model_spec, identity


def _record(
    model: Any, model_spec: str, calib_set: CalibrationSet, seed: int, wall: float, notes: list[str], **run: Any
) -> dict[str, Any]:
    """The compression record: what ran (``run``: method, params, scheme, modifiers...), on what, and with what."""

    dtype, device = _dtype_and_device(model)
    return {
        "model": model_spec,
        **run,
        "seed": seed,
        "dtype": dtype_name(dtype),
        "device": str(device),
        "calibration_set": {
            "id": calib_set.set_id,
            "tokens_sha256": calib_set.sha256,
            "source": calib_set.manifest.source.name,
            "n": calib_set.n,
            "seq_len": calib_set.seq_len,
        },
        "achieved": achieved(model),
        "wall_time_s": round(wall, 3),
        "memory": _peak_memory_mb(),
        "threads": torch.get_num_threads(),
        "versions": _library_versions(),
        "notes": notes,
    }


def compress(
    model: Any,
    calib_set: CalibrationSet,
    method: str | None = None,
    *,
    recipe: str | Path | None = None,
    tokenizer: Any | None = None,
    seed: int = DEFAULTS.seed,
    **params: Any,
) -> CompressionResult:
    """Compress ``model`` in place with ``method`` (or an llm-compressor ``recipe`` file) calibrated on ``calib_set``.

    ``model`` is a spec for :func:`calibench.models.load_model` or a loaded causal LM, also one that exists
    only in memory (built from a config, edited): give its ``tokenizer`` then; the record names it
    ``in-memory:<class>`` with a sha256 of its weights as given (``model_weights``).
    Parameters (bits, group_size, actorder, dampening, symmetric, sparsity,
    structure, smoothing_strength) are validated against the method before any
    work starts, and a preset scheme is checked against the model's dtype and
    device (:func:`calibench.compress.presets.check_scheme_runnable`).  A
    recipe file sets its own parameters; see :mod:`calibench.compress.recipe_file`.
    """
    if (method is None) == (recipe is None):
        raise CalibenchError("give either a method or a recipe file, not both and not neither")
    if recipe is not None:
        return _compress_with_recipe(model, calib_set, recipe, tokenizer=tokenizer, seed=seed, **params)
    assert method is not None  # exactly one of method and recipe is given, and recipe is None here
    methods: list[Method] = resolve(method)
    method_params: MethodParams = make_params(methods, **params)
    model, tokenizer, model_spec, identity = _load(model, tokenizer, methods)
    method_params, note = resolve_group_size(model, methods, method_params)
    check_structure(model, method_params)
    check_scheme_fits(model, methods)
    _check_set_fits_model(model, calib_set, tokenizer)
    notes = [note] if note else []

    ignore = ignore_pattern(_head_name(model))
    started = time.perf_counter()
    masks: dict[str, torch.Tensor] | None = None
    modifiers: list[str] = []
    for position, method_entry in enumerate(methods):
        stage = build_recipe([method_entry], method_params, ignore)
        modifiers.extend(type(modifier).__name__ for modifier in stage)
        _run_stage(model, calib_set, stage, seed, tokenizer)
        if method_entry.kind == "pruning" and position + 1 < len(methods):
            masks = _zero_masks(model)  # only a later quantization stage needs it (1 byte per weight)
        elif masks is not None:
            _reapply_masks(model, masks)
            notes.append("pruning mask re-applied after quantization (GPTQ does not preserve sparsity)")
    wall = time.perf_counter() - started

    presets = [m.preset for m in methods if m.preset is not None]
    record = _record(
        model,
        model_spec,
        calib_set,
        seed,
        wall,
        notes,
        **identity,
        method="+".join(m.name for m in methods),
        params={k: v for m in methods for k, v in m.relevant(method_params).items()},
        scheme=presets[0].scheme if presets else None,
        modifiers=modifiers,
        checkpoint_format=presets[0].format if presets else None,
    )
    return CompressionResult(model=model, record=record, notes=notes)


def _compress_with_recipe(
    model: Any, calib_set: CalibrationSet, recipe: str | Path, *, tokenizer: Any | None, seed: int, **params: Any
) -> CompressionResult:
    """Run an llm-compressor recipe file through the same oneshot stage as the built-in methods."""
    given = sorted(k for k, v in params.items() if v is not None)
    if given:
        raise CalibenchError(
            f"a recipe file sets its own parameters: drop {', '.join(given)}, or put them in the recipe"
        )
    recipe_file = load_recipe(recipe)  # before the model is loaded: a bad file costs a second, not a load
    presets = recipe_presets(recipe_file)
    model, tokenizer, model_spec, identity = _load(model, tokenizer, presets)
    _check_set_fits_model(model, calib_set, tokenizer)

    started = time.perf_counter()
    try:
        _run_stage(model, calib_set, recipe_file.modifiers(), seed, tokenizer)
    except ValueError as exc:  # llm-compressor's checks at initialisation (group sizes, targets...)
        first = next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
        raise CalibenchError(f"recipe {recipe_file.path} failed in llm-compressor: {first}") from exc
    wall = time.perf_counter() - started

    record = _record(
        model,
        model_spec,
        calib_set,
        seed,
        wall,
        [],
        **identity,
        method="recipe",
        params={},
        scheme="+".join(recipe_file.schemes) or None,
        modifiers=list(recipe_file.modifier_names),
        checkpoint_format=presets[0].format if len(presets) == 1 else None,
        recipe=recipe_file.record(),
    )
    return CompressionResult(model=model, record=record)
