"""Compression methods: one registry mapping names and parameters to llm-compressor modifiers.

Each method is a small declarative entry: the parameters it accepts (a
pydantic model that validates user input), the bit widths it supports, and a
function from validated parameters to a list of llm-compressor modifiers.
Combinations are written ``prune+quant`` (``sparsegpt+gptq``) and run the
modifiers in that order, the way the SparseGPT paper applies 2:4 then GPTQ.

Defaults follow the papers: GPTQ dampening 0.01, group size 128 where the
model's dimensions allow it (see :mod:`calibench.compress.validate`),
symmetric integer weights, GPTQ with static activation order (llm-compressor's
default; ``actorder=False`` for the original column order).

The schemes people deploy (``w4a16``, ``w8a8``, ``fp8``, ``fp8-dynamic``,
``nvfp4``...) are registered here too, one entry per compressed-tensors preset
from the table in :mod:`calibench.compress.presets`; the preset fixes bits,
groups and symmetry, so they take only their modifier's parameters.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from calibench.compress.presets import PRESETS, Preset
from calibench.core.errors import CalibenchError, UnknownNameError, did_you_mean
from calibench.core.registry import Registry


def ignore_pattern(head_name: str) -> list[str]:
    """Ignore list matching the output projection, which stays dense in every paper's setup.

    A regex rather than the bare name: llm-compressor 0.14's pruning modifiers
    name a targeted module ``f"{layer}.{child}"``, so the head reaches the
    ignore check as ``lm_head.`` and a plain ``lm_head`` silently fails to match.
    """
    return [f"re:(^|.*\\.){re.escape(head_name)}\\.?$"]


DEFAULT_IGNORE = ignore_pattern("lm_head")
DEFAULT_GROUP_SIZE = 128
PER_CHANNEL = 0  # group_size value meaning one scale per output channel


class MethodParams(BaseModel):
    """Every parameter any method takes; each method reads the ones it needs."""

    model_config = ConfigDict(extra="forbid")

    bits: int | None = Field(None, description="Weight bits (quantization methods); default per method.")
    group_size: int | None = Field(
        None,
        description="Quantization group size; 0 = per-channel; default: 128 where it divides, else the largest "
        "that does.",
    )
    actorder: bool = Field(
        True,  # llm-compressor's default
        description="GPTQ static activation order; --no-actorder for the original column order.",
    )
    dampening: float = Field(0.01, description="GPTQ Hessian dampening fraction, in (0, 1).")
    symmetric: bool = Field(True, description="Symmetric integer weights; --no-symmetric for zero points.")
    sparsity: float = Field(0.5, description="Pruning sparsity in (0, 1); N:M structures fix it to N/M.")
    structure: str = Field("unstructured", description="Pruning structure: 'unstructured' or N:M such as 2:4.")
    smoothing_strength: float = Field(0.8, description="SmoothQuant's migration strength alpha.")
    # W8A8 activations: "dynamic" per-token scales at run time (llm-compressor's W8A8), or "static"
    # per-tensor scales fixed from the calibration set, where the set's activation maxima matter most
    activations: Literal["dynamic", "static"] = Field(
        "dynamic",
        description="SmoothQuant's int8 activations: dynamic per-token scales or static per-tensor scales "
        "calibrated on the set.",
    )

    @field_validator("sparsity")
    @classmethod
    def _sparsity_in_range(cls, value: float) -> float:
        if not 0.0 < value < 1.0:
            raise ValueError(f"sparsity must be strictly between 0 and 1, got {value}")
        return value

    @field_validator("dampening")
    @classmethod
    def _dampening_positive(cls, value: float) -> float:
        if not 0.0 < value < 1.0:
            raise ValueError(f"dampening must be between 0 and 1, got {value}")
        return value

    @field_validator("structure")
    @classmethod
    def _structure_form(cls, value: str) -> str:
        if value == "unstructured":
            return value
        parse_nm(value)
        return value

    @field_validator("group_size")
    @classmethod
    def _group_size_non_negative(cls, value: int | None) -> int | None:
        if value is not None and value < 0:
            raise ValueError(f"group size must be positive (or 0 for per-channel), got {value}")
        return value

    @property
    def nm(self) -> tuple[int, int] | None:
        return None if self.structure == "unstructured" else parse_nm(self.structure)


def parse_nm(structure: str) -> tuple[int, int]:
    """'2:4' -> (2, 4): N weights pruned in every M consecutive inputs, as llm-compressor reads it."""
    try:
        n_str, m_str = structure.split(":")
        n, m = int(n_str), int(m_str)
    except ValueError:
        raise ValueError(f"structure must be 'unstructured' or N:M like 2:4, got '{structure}'") from None
    if not 0 < n < m:
        raise ValueError(f"N:M structure needs 0 < N < M, got '{structure}'")
    return n, m


@dataclass(frozen=True)
class Method:
    name: str
    kind: str  # "quantization" or "pruning"
    description: str
    build: Callable[[MethodParams, list[str]], list[Any]]
    bits: tuple[int, ...] = ()
    default_bits: int | None = None
    uses_group_size: bool = False
    uses_structure: bool = False
    param_names: tuple[str, ...] = ()
    # False for methods that never look at the calibration set (RTN, magnitude): their cells are
    # identical across sets, so a study's spread across sets is zero by construction, not a finding.
    reads_calibration: bool = True
    # the compressed-tensors preset scheme this method runs, for the schemes people deploy (presets.py)
    preset: Preset | None = None

    def relevant(self, params: MethodParams) -> dict[str, Any]:
        """The parameters this method actually reads, for records and reports."""
        return {name: getattr(params, name) for name in self.param_names}


# ----------------------------------------------------------------- schemes


def weight_args(params: MethodParams, bits: int, group_size: int | None = None) -> Any:
    from compressed_tensors.quantization import QuantizationArgs

    group = params.group_size if group_size is None else group_size
    per_channel = group in (None, PER_CHANNEL)
    return QuantizationArgs(
        num_bits=bits,
        type="int",
        symmetric=params.symmetric,
        strategy="channel" if per_channel else "group",
        group_size=None if per_channel else group,
    )


def weight_only_scheme(params: MethodParams) -> dict[str, Any]:
    from compressed_tensors.quantization import QuantizationScheme

    assert params.bits is not None, "make_params sets bits for every weight-quantizing method"
    return {"group_0": QuantizationScheme(targets=["Linear"], weights=weight_args(params, params.bits))}


def w8a8_scheme(params: MethodParams) -> dict[str, Any]:
    from compressed_tensors.quantization import QuantizationArgs, QuantizationScheme

    weights = weight_args(params.model_copy(update={"group_size": PER_CHANNEL}), 8)
    if params.activations == "static":
        activations = QuantizationArgs(num_bits=8, type="int", symmetric=True, strategy="tensor", dynamic=False)
    else:
        activations = QuantizationArgs(num_bits=8, type="int", symmetric=True, strategy="token", dynamic=True)
    return {"group_0": QuantizationScheme(targets=["Linear"], weights=weights, input_activations=activations)}


# ----------------------------------------------------------------- recipes


def _rtn(params: MethodParams, ignore: list[str]) -> list[Any]:
    from llmcompressor.modifiers.quantization import QuantizationModifier

    return [QuantizationModifier(config_groups=weight_only_scheme(params), ignore=ignore)]


def gptq_actorder(params: MethodParams) -> Any:
    """GPTQ's activation order, always explicit at the modifier level (never in the scheme, which RTN shares).

    llm-compressor 0.14's GPTQModifier turns an unset ``actorder`` into STATIC
    for group and channel schemes: calibench once recorded "off" while STATIC
    ran.  STATIC stays the default (what llm-compressor users deploy, and what
    every earlier calibench GPTQ number used); ``actorder=False`` gives the
    original GPTQ column order.
    """
    from compressed_tensors.quantization import ActivationOrdering

    return ActivationOrdering.STATIC if params.actorder else None


def _gptq(params: MethodParams, ignore: list[str]) -> list[Any]:
    from llmcompressor.modifiers.gptq import GPTQModifier

    return [
        GPTQModifier(
            config_groups=weight_only_scheme(params),
            ignore=ignore,
            dampening_frac=params.dampening,
            actorder=gptq_actorder(params),
        )
    ]


def _awq(params: MethodParams, ignore: list[str]) -> list[Any]:
    from llmcompressor.modifiers.quantization import QuantizationModifier
    from llmcompressor.modifiers.transform.awq import AWQModifier

    return [AWQModifier(), QuantizationModifier(config_groups=weight_only_scheme(params), ignore=ignore)]


def _smoothquant(params: MethodParams, ignore: list[str]) -> list[Any]:
    from llmcompressor.modifiers.gptq import GPTQModifier
    from llmcompressor.modifiers.transform.smoothquant import SmoothQuantModifier

    return [
        SmoothQuantModifier(smoothing_strength=params.smoothing_strength),
        GPTQModifier(
            config_groups=w8a8_scheme(params),
            ignore=ignore,
            dampening_frac=params.dampening,
            actorder=gptq_actorder(params),
        ),
    ]


def _mask_structure(params: MethodParams) -> str:
    return "0:0" if params.nm is None else params.structure


def _sparsegpt(params: MethodParams, ignore: list[str]) -> list[Any]:
    from llmcompressor.modifiers.pruning import SparseGPTModifier

    return [
        SparseGPTModifier(
            sparsity=params.sparsity,
            mask_structure=_mask_structure(params),
            ignore=ignore,
            dampening_frac=params.dampening,
        )
    ]


def _wanda(params: MethodParams, ignore: list[str]) -> list[Any]:
    from llmcompressor.modifiers.pruning import WandaPruningModifier

    return [WandaPruningModifier(sparsity=params.sparsity, mask_structure=_mask_structure(params), ignore=ignore)]


def _magnitude(params: MethodParams, ignore: list[str]) -> list[Any]:
    from calibench.compress.magnitude import MagnitudeOneShotModifier

    return [MagnitudeOneShotModifier(sparsity=params.sparsity, mask_structure=_mask_structure(params), ignore=ignore)]


#: Every method, by name, in registration order (the built-in ones, then one per preset).
METHODS: Registry[Method] = Registry("method", ordered=True)


def register_method(method: Method) -> Method:
    return METHODS.register(method.name, method)


_WEIGHT_ONLY = ("bits", "group_size", "symmetric")
_PRUNE = ("sparsity", "structure")
register_method(
    Method(
        "rtn",
        "quantization",
        "round-to-nearest weight-only (W4A16 / W8A16)",
        _rtn,
        (4, 8),
        4,
        uses_group_size=True,
        param_names=_WEIGHT_ONLY,
        reads_calibration=False,
    )
)
register_method(
    Method(
        "gptq",
        "quantization",
        "GPTQ weight-only, second-order error compensation",
        _gptq,
        (2, 3, 4, 8),
        4,
        uses_group_size=True,
        param_names=(*_WEIGHT_ONLY, "actorder", "dampening"),
    )
)
register_method(
    Method(
        "awq",
        "quantization",
        "activation-aware weight scaling, then W4 groups",
        _awq,
        (4,),
        4,
        uses_group_size=True,
        param_names=_WEIGHT_ONLY,
    )
)
register_method(
    Method(
        "smoothquant",
        "quantization",
        "SmoothQuant migration, then W8A8 (GPTQ weights)",
        _smoothquant,
        (8,),
        8,
        param_names=("bits", "smoothing_strength", "dampening", "activations"),
    )
)
register_method(
    Method(
        "sparsegpt",
        "pruning",
        "SparseGPT: prune with OBS weight updates",
        _sparsegpt,
        uses_structure=True,
        param_names=(*_PRUNE, "dampening"),
    )
)
register_method(
    Method("wanda", "pruning", "Wanda: |W| x ||X|| per output row", _wanda, uses_structure=True, param_names=_PRUNE)
)
register_method(
    Method(
        "magnitude",
        "pruning",
        "magnitude pruning per output row (no calibration data used)",
        _magnitude,
        uses_structure=True,
        param_names=_PRUNE,
        reads_calibration=False,
    )
)


def _preset_method(preset: Preset) -> Method:
    """A registry entry for a preset scheme: the scheme fixes bits, groups and symmetry; the modifier its parameters."""
    return Method(
        preset.method,
        "quantization",
        preset.description,
        preset.modifiers,
        (preset.bits,),
        preset.bits,
        param_names=preset.param_names,
        reads_calibration=preset.reads_calibration,
        preset=preset,
    )


for _, _preset in PRESETS.items():
    register_method(_preset_method(_preset))


def resolve(spec: str) -> list[Method]:
    """'sparsegpt+gptq' -> [sparsegpt, gptq]; pruning must come before quantization."""
    parts = [p.strip() for p in spec.split("+") if p.strip()]
    if not parts:
        raise UnknownNameError(f"empty method name{did_you_mean('', METHODS.names())}")
    methods = [METHODS.get(part) for part in parts]
    kinds = [m.kind for m in methods]
    if len(methods) > 1 and (kinds != ["pruning", "quantization"]):
        raise CalibenchError(
            f"combination '{spec}' must be one pruning method then one quantization method, e.g. sparsegpt+gptq"
        )
    return methods


def make_params(methods: list[Method], **values: Any) -> MethodParams:
    """Validate user parameters against the chosen methods; one-line errors."""
    clean = {k: v for k, v in values.items() if v is not None}
    accepted = {name for method in methods for name in method.param_names}
    ignored = sorted(set(clean) - accepted)
    if ignored:
        names = "+".join(m.name for m in methods)
        raise CalibenchError(
            f"{names} does not use {', '.join(ignored)} (it takes {', '.join(sorted(accepted)) or 'no parameters'}): "
            "drop it, or choose a method that does"
        )
    try:
        params = MethodParams(**clean)
    except ValidationError as exc:
        error = exc.errors()[0]
        field = ".".join(str(x) for x in error["loc"]) or "parameters"
        message = error["msg"].removeprefix("Value error, ")
        raise CalibenchError(f"invalid {field}: {message}") from None
    if params.nm is not None:
        n, m = params.nm
        if "sparsity" in clean and abs(clean["sparsity"] - n / m) > 1e-9:
            raise CalibenchError(
                f"{params.structure} sparsity is {n / m:g} by definition; drop --sparsity or make it {n / m:g}"
            )
        params = params.model_copy(update={"sparsity": n / m})
    quant = [m for m in methods if m.kind == "quantization"]
    if quant:
        method = quant[0]
        bits = params.bits if params.bits is not None else method.default_bits
        if bits not in method.bits:
            raise CalibenchError(
                f"{method.name} does not support {bits}-bit weights (supported: {', '.join(map(str, method.bits))})"
            )
        params = params.model_copy(update={"bits": bits})
    return params


def build_recipe(methods: list[Method], params: MethodParams, ignore: list[str] | None = None) -> list[Any]:
    recipe: list[Any] = []
    for method in methods:
        recipe.extend(method.build(params, DEFAULT_IGNORE if ignore is None else ignore))
    return recipe
