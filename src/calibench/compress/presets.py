"""The quantization schemes people deploy: compressed-tensors presets, run by llm-compressor.

vLLM serves checkpoints made with a handful of compressed-tensors preset
schemes (``W4A16``, ``FP8_DYNAMIC``, ``NVFP4`` ...).  Each entry here names one
preset and says how calibench runs it: which llm-compressor modifier applies
it (GPTQ for the integer weight schemes, plain ``QuantizationModifier``
observers for FP8 and NVFP4, as llm-compressor's own examples do), whether it
reads the calibration set, the checkpoint format compressed-tensors writes
for it, and where it can run.  The schemes themselves (bits, group sizes,
observers) come from compressed-tensors' ``PRESET_SCHEMES``, never copied, so
what calibench runs is exactly what the preset name means in that library.

Where a preset can run was measured, not assumed: each was run on a tiny
random Llama on CPU in float32, bfloat16 and float16 (llm-compressor 0.14.0.1,
compressed-tensors 0.19.0, torch 2.13 CPU).  All eight compress on CPU; the
integer and FP8 schemes in every dtype.  NVFP4 and NVFP4A16 compress in any
dtype, but compressed-tensors 0.19 unpacks FP4 weights into bfloat16 on load,
so a float32 or float16 NVFP4 checkpoint fails in its first forward after
reloading ("expected m1 and m2 to have the same dtype"): calibench refuses
them before any work.  A preset that needs a GPU sets ``cpu=False`` and is
refused on CPU the same way.

This module imports nothing heavy at import time: the method registry loads it
when the CLI starts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from calibench.core.errors import CalibenchError
from calibench.core.registry import Registry
from calibench.models import dtype_name

if TYPE_CHECKING:
    from calibench.compress.methods import MethodParams

ALL_DTYPES = ("float32", "bfloat16", "float16")
TARGETS = ["Linear"]


@dataclass(frozen=True)
class Preset:
    """One compressed-tensors preset scheme as a calibench method."""

    method: str  # calibench method name, lower case with dashes: "w4a16-asym"
    scheme: str  # compressed-tensors preset name: "W4A16_ASYM"
    modifier: str  # llm-compressor modifier that applies it: a key of MODIFIERS
    format: str  # compressed-tensors format of the saved checkpoint
    bits: int  # weight bits (checked against the library's preset by the tests)
    description: str
    reads_calibration: bool  # False: weights-only observers or dynamic activations, no data used
    dtypes: tuple[str, ...] = ALL_DTYPES  # model dtypes it runs in, end to end (compress, save, reload)
    dtype_reason: str = ""  # why the others are refused
    cpu: bool = True  # whether it runs on a machine without a CUDA GPU
    cpu_reason: str = ""  # what it needs the GPU for
    alternative: str = "w4a16"  # what to suggest when it is refused

    def quantization_scheme(self) -> Any:
        """The compressed-tensors ``QuantizationScheme`` the preset name stands for."""
        from compressed_tensors.quantization import preset_name_to_scheme

        return preset_name_to_scheme(self.scheme, TARGETS)

    @property
    def weight_group_size(self) -> int | None:
        """Group size of the weight scales (None for per-channel and per-tensor schemes)."""
        weights = self.quantization_scheme().weights
        return weights.group_size if weights is not None and weights.strategy in ("group", "tensor_group") else None

    @property
    def param_names(self) -> tuple[str, ...]:
        return MODIFIERS.get(self.modifier).params

    def modifiers(self, params: MethodParams, ignore: list[str]) -> list[Any]:
        return [MODIFIERS.get(self.modifier).build(self, params, ignore)]


# ----------------------------------------------------------------- modifiers


def _gptq(preset: Preset, params: MethodParams, ignore: list[str]) -> Any:
    """GPTQ with the preset scheme; dampening and activation order as the ``gptq`` method sets them."""
    from llmcompressor.modifiers.gptq import GPTQModifier

    from calibench.compress.methods import gptq_actorder

    return GPTQModifier(
        scheme=preset.scheme,
        targets=TARGETS,
        ignore=ignore,
        dampening_frac=params.dampening,
        actorder=gptq_actorder(params),
    )


def _observe(preset: Preset, params: MethodParams, ignore: list[str]) -> Any:
    """Min-max observers: weight scales from the weights, static activation scales from the calibration set."""
    from llmcompressor.modifiers.quantization import QuantizationModifier

    return QuantizationModifier(scheme=preset.scheme, targets=TARGETS, ignore=ignore)


@dataclass(frozen=True)
class PresetModifier:
    """An llm-compressor modifier that applies a preset scheme."""

    build: Callable[[Preset, MethodParams, list[str]], Any]
    params: tuple[str, ...]  # the calibench parameters it reads (the scheme fixes bits, groups and symmetry)


#: The modifiers presets run with, by llm-compressor class name.
MODIFIERS: Registry[PresetModifier] = Registry("preset modifier")
MODIFIERS.register("GPTQModifier", PresetModifier(_gptq, ("actorder", "dampening")))
MODIFIERS.register("QuantizationModifier", PresetModifier(_observe, ()))

_FP4_RELOAD = (
    "compressed-tensors 0.19 unpacks FP4 weights into bfloat16 when a checkpoint is loaded, "
    "so one made in another dtype does not run after reloading"
)

#: Every preset, by calibench method name, in registration order.
PRESETS: Registry[Preset] = Registry("preset", ordered=True)


def register_preset(preset: Preset) -> Preset:
    return PRESETS.register(preset.method, preset)


for _preset in (
    Preset(
        "w4a16",
        "W4A16",
        "GPTQModifier",
        "pack-quantized",
        4,
        "GPTQ INT4 weights, symmetric, groups of 128; 16-bit activations",
        True,
    ),
    Preset(
        "w4a16-asym",
        "W4A16_ASYM",
        "GPTQModifier",
        "pack-quantized",
        4,
        "GPTQ INT4 weights with zero points, groups of 128; 16-bit activations",
        True,
    ),
    Preset(
        "w8a16",
        "W8A16",
        "GPTQModifier",
        "pack-quantized",
        8,
        "GPTQ INT8 weights, symmetric, groups of 128; 16-bit activations",
        True,
    ),
    Preset(
        "w8a8",
        "W8A8",
        "GPTQModifier",
        "int-quantized",
        8,
        "GPTQ INT8 per-channel weights, dynamic per-token INT8 activations",
        True,
    ),
    Preset(
        "fp8",
        "FP8",
        "QuantizationModifier",
        "float-quantized",
        8,
        "FP8 E4M3 per-tensor weights and static per-tensor activations (scales from the calibration set)",
        True,
        alternative="fp8-dynamic",
    ),
    Preset(
        "fp8-dynamic",
        "FP8_DYNAMIC",
        "QuantizationModifier",
        "float-quantized",
        8,
        "FP8 E4M3 per-channel weights, dynamic per-token activations (no calibration data used)",
        False,
        alternative="fp8",
    ),
    Preset(
        "nvfp4a16",
        "NVFP4A16",
        "QuantizationModifier",
        "nvfp4-pack-quantized",
        4,
        "NVFP4 weights (FP4 E2M1, FP8 scales per 16, global scale); 16-bit activations (no calibration data used)",
        False,
        dtypes=("bfloat16",),
        dtype_reason=_FP4_RELOAD,
    ),
    Preset(
        "nvfp4",
        "NVFP4",
        "QuantizationModifier",
        "nvfp4-pack-quantized",
        4,
        "NVFP4 weights and activations (activation global scales from the calibration set)",
        True,
        dtypes=("bfloat16",),
        dtype_reason=_FP4_RELOAD,
    ),
):
    register_preset(_preset)


# ----------------------------------------------------------------- checks before any work


def _presets(entries: Iterable[Any]) -> list[tuple[str, Preset, str]]:
    """(what to call it, preset, what to suggest instead) for registry methods and bare presets (a recipe's)."""
    found = []
    for entry in entries:
        if isinstance(entry, Preset):
            found.append((f"the {entry.scheme} scheme", entry, "another scheme in the recipe"))
        elif getattr(entry, "preset", None) is not None:
            found.append((entry.name, entry.preset, entry.preset.alternative))
    return found


def check_scheme_runnable(methods: Iterable[Any], dtype: Any, device: Any) -> None:
    """Refuse, in one line, a preset scheme this device or model dtype cannot run end to end.

    ``methods`` are registry methods (``Method.preset``) or bare presets (the
    schemes a recipe file names).  Called before the model is loaded (CLI,
    with the resolved dtype and device) and again by
    :func:`calibench.compress.compress` with the dtype and device of the model
    it was handed.  Methods without a preset pass.
    """
    import torch

    device_type = device.type if isinstance(device, torch.device) else torch.device(str(device)).type
    dtype_label = dtype if isinstance(dtype, str) else dtype_name(dtype)
    for label, preset, alternative in _presets(methods):
        if device_type != "cuda" and not preset.cpu:
            raise CalibenchError(
                f"{label} needs a CUDA GPU ({preset.cpu_reason}): run on a GPU (--device cuda) or choose {alternative}"
            )
        if dtype_label not in preset.dtypes:
            allowed = " or ".join(preset.dtypes)
            raise CalibenchError(
                f"{label} cannot run in {dtype_label} ({preset.dtype_reason}): use --dtype {allowed}, "
                f"or choose {alternative}"
            )


def check_scheme_fits(model: Any, methods: Iterable[Any]) -> None:
    """Refuse a grouped preset whose group size does not divide the model's input dimensions.

    llm-compressor 0.14 checks this too, but only once the modifier is
    initialised, with a multi-line message; this says it in one line, with a
    way out, before any calibration.
    """
    from calibench.compress.validate import fitting_group_sizes, input_dims

    dims = input_dims(model)
    for label, preset, _ in _presets(methods):
        group = preset.weight_group_size
        if group is None:
            continue
        bad = sorted(d for d in dims if d % group)
        if bad:
            fits = fitting_group_sizes(dims)
            smaller = f"gptq --group-size {fits[0]}" if fits else "gptq --group-size 0 (per-channel)"
            raise CalibenchError(
                f"{label} quantizes weights in groups of {group}, which does not divide the input "
                f"dimension(s) {bad} of this model: use {smaller}, or w8a8 / fp8-dynamic (per-channel)"
            )
