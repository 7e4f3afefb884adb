"""``calibench inspect activations``: statistics, set comparisons and quantization cost, for one or more models.

A set is named two ways.  A directory is a saved CalibrationSet and must
match the model's tokenizer (a set is token ids: one made for SmolLM2 means
nothing to Gemma).  Any other name goes to the set-builder registry and is
built for each model's own tokenizer with the same ``n``, ``seq_len`` and
``seed``, which is what a comparison across models needs: the same text,
tokenized by each.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from calibench.core.errors import CalibenchError
from calibench.core.settings import DEFAULTS
from calibench.curate.layers import find_decoder_layers
from calibench.data.builders import build_set
from calibench.data.calibset import CalibrationSet
from calibench.inspect.collect import ActivationStats, activation_stats
from calibench.inspect.compare import DEFAULT_TOP_K, PairComparison, StabilitySummary, compare_sets, stability_summary
from calibench.inspect.quant_error import QuantErrorReport, activation_quant_error, static_scales
from calibench.inspect.sites import find_sites
from calibench.models import dtype_name, load_tokenizer
from calibench.placement import load_placed, model_device

DEFAULT_HELDOUT = "wiki"


class SetInfo(BaseModel):
    label: str
    set_id: str
    source: str
    n: int
    seq_len: int
    tokens: int


class ModelInspection(BaseModel):
    """Everything measured on one model."""

    model: str
    dtype: str
    device: str
    sets: list[SetInfo]
    stats: dict[str, ActivationStats]
    comparisons: list[PairComparison]
    stability: StabilitySummary
    quant_error: QuantErrorReport | None


class Inspection(BaseModel):
    """The whole run: per-model results and the settings they were measured with."""

    format: str = "calibench.inspect/1"
    models: list[ModelInspection]
    settings: dict[str, Any]


def set_label(name: str) -> str:
    path = Path(name)
    return path.name if path.is_dir() else name


def check_set_names(names: Sequence[str]) -> list[str]:
    """Refuse an empty list or two sets under one label, before any model loads."""
    if not names:
        raise CalibenchError("no calibration sets given: name at least one set directory or source (e.g. wiki code)")
    labels = [set_label(n) for n in names]
    seen: set[str] = set()
    for label in labels:
        if label in seen:
            raise CalibenchError(f"two sets are labelled '{label}': give each set a distinct directory name or source")
        seen.add(label)
    return labels


def resolve_set(
    name: str, model_spec: str, tokenizer: Any, *, n: int, seq_len: int, seed: int, split: str | None = None
) -> Any:
    """A saved set (checked against the tokenizer) or one built from the registry for this tokenizer."""

    if Path(name).is_dir():
        return CalibrationSet.load(name, tokenizer=tokenizer)
    params: dict[str, Any] = {"n": n, "seq_len": seq_len, "seed": seed}
    if split is not None:
        params["split"] = split
    return build_set(name, model=model_spec, tokenizer=tokenizer, **params)


def inspect_model(
    model_spec: str,
    set_names: Sequence[str],
    *,
    n: int = 32,
    seq_len: int = 256,
    seed: int = DEFAULTS.seed,
    heldout: str | None = DEFAULT_HELDOUT,
    heldout_n: int | None = None,
    layers: str | None = None,
    dtype: str = DEFAULTS.dtype,
    device: str = DEFAULTS.device,
    batch_size: int = 4,
    top_k: int = DEFAULT_TOP_K,
    bits: int = 8,
    **stat_options: Any,
) -> ModelInspection:
    """Statistics of every set on one model, their pairwise comparison, and (with ``heldout``) their int8 cost.

    ``dtype`` and ``device`` default to ``auto`` (:data:`calibench.core.settings.DEFAULTS`): the first CUDA
    GPU if there is one, else the CPU; float32 on the CPU, the checkpoint's own dtype on a GPU.
    """

    labels = check_set_names(set_names)
    tokenizer = load_tokenizer(model_spec)
    sets = {
        label: resolve_set(name, model_spec, tokenizer, n=n, seq_len=seq_len, seed=seed)
        for label, name in zip(labels, set_names)
    }
    heldout_set = None
    heldout_set_name = ""
    if heldout is not None:
        heldout_set_name = heldout
        heldout_set = resolve_set(
            heldout,
            model_spec,
            tokenizer,
            n=heldout_n or n,
            seq_len=seq_len,
            seed=seed,
            split=None if Path(heldout).is_dir() else "heldout",
        )
    model = load_placed(model_spec, dtype=dtype, device=device)
    find_sites(model, layers, find_decoder_layers(model))  # a filter that matches nothing fails before any pass
    stats = {
        label: activation_stats(
            model,
            calib,
            layers=layers,
            batch_size=batch_size,
            description=f"{Path(str(model_spec)).name}: {label}",
            **stat_options,
        )
        for label, calib in sets.items()
    }
    comparisons = compare_sets(stats, top_k=top_k)
    quant = None
    if heldout_set is not None:
        quant = activation_quant_error(
            model,
            heldout_set,
            {label: static_scales(s) for label, s in stats.items()},
            bits=bits,
            layers=layers,
            batch_size=batch_size,
            heldout_label=set_label(heldout_set_name),
            description=f"{Path(str(model_spec)).name}: int{bits} error on {heldout}",
        )
    return ModelInspection(
        model=str(model_spec),
        dtype=dtype_name(model.dtype),
        device=str(model_device(model)),
        sets=[
            SetInfo(
                label=label,
                set_id=calib.set_id,
                source=calib.manifest.source.name,
                n=calib.n,
                seq_len=calib.seq_len,
                tokens=calib.num_tokens,
            )
            for label, calib in sets.items()
        ],
        stats=stats,
        comparisons=comparisons,
        stability=stability_summary(stats, comparisons),
        quant_error=quant,
    )


def inspect_activations(models: Sequence[str], set_names: Sequence[str], **options: Any) -> Inspection:
    """:func:`inspect_model` for every model, with the same sets and settings."""
    if not models:
        raise CalibenchError("no model given: pass --model NAME (a bundled model, checkpoint directory or hub id)")
    check_set_names(set_names)
    results = [inspect_model(model, set_names, **options) for model in models]
    settings = {key: value for key, value in options.items() if isinstance(value, (int, float, str, type(None)))}
    return Inspection(models=results, settings={"sets": list(set_names), **settings})
