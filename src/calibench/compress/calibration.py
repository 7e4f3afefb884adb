"""How a calibration set is fed to llm-compressor: batch size, padding, mixture-of-experts routing, onload device.

:class:`CalibrationOptions` is the one declaration of the options that change
how calibration forwards run, not what a method does: ``compress`` derives
``--calib-batch-size`` and ``--moe-calibrate-all-experts`` from it, study
specs take the same fields (top level), and :func:`calibench.compress.compress`
takes them as keywords.

Batches.  llm-compressor 0.14's own ``batch_size`` cuts batches from the
windows sorted by length and then truncates each to its shortest window (its
default collator: calibration tokens dropped) or pads it to the longest (its
``padding`` collator).  It does not mask padded positions out of
GPTQ/SparseGPT Hessians or Wanda's activation norms (its hooks see each
module's whole input), so a padded position would count as calibration data.
calibench therefore batches itself: :func:`batched_dataset` puts windows of one length
together, up to ``calib_batch_size`` per forward pass, one pass per dataset
row (llm-compressor then runs at its batch size 1 and counts each pass's
windows as samples, as it would in its own batches).  Nothing is padded or
truncated, so every method sees exactly the tokens of batch 1; a set whose
windows all have one length (what ``data build`` cuts from text) gets full
batches, a ragged one as many as its lengths allow (the record gives the
number of forward passes).

Mixture of experts.  llm-compressor 0.14 linearizes the experts of a model
whose experts module transformers marks with ``use_experts_implementation``
(Mixtral, Qwen2/3-MoE, DeepSeek-V2/V3, OLMoE, ... about fifty families) or
for which it registers its own module (Llama 4, GPT-OSS); with
``moe_calibrate_all_experts`` every expert then runs on every token during
calibration (each token's output still uses only its routed experts), so an
expert the set never routes to still gets Hessian and activation statistics.
Without it an expert sees only the tokens routed to it, and one that gets
none is not calibrated.  :func:`moe_problem` refuses the option, from the
config alone, for a dense model or a MoE family without such a module.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from calibench.core.errors import CalibenchError


class CalibrationOptions(BaseModel):
    """Options of the calibration forward passes (CLI, API and study specs take these fields)."""

    model_config = ConfigDict(extra="forbid")

    calib_batch_size: int = Field(
        1,
        ge=1,
        description="Calibration windows per forward pass (windows of one length batch together: nothing is "
        "padded or truncated).",
    )
    moe_calibrate_all_experts: bool = Field(
        False,
        description="Mixture-of-experts models: run every expert on every calibration token, so experts the set "
        "routes no token to are calibrated too (outputs still use the routed experts).",
    )


def length_batches(lengths: list[int], batch_size: int) -> list[list[int]]:
    """Window indices per forward pass: windows of one length together, at most ``batch_size`` per pass.

    Longest first, then in the set's order; no pass mixes lengths, so nothing is padded or truncated.
    """
    by_length: dict[int, list[int]] = {}
    for index, length in enumerate(lengths):
        by_length.setdefault(length, []).append(index)
    return [
        group[i : i + batch_size]
        for length in sorted(by_length, reverse=True)
        for group in [by_length[length]]
        for i in range(0, len(group), batch_size)
    ]


def batched_dataset(calib: Any, batch_size: int) -> tuple[Any, int]:
    """An HF ``Dataset`` with one row per forward pass (2-D ``input_ids``/``attention_mask``), and the pass count.

    Each row holds :func:`length_batches`' windows of one length, real tokens only (all-ones mask).
    """
    import numpy as np
    import pyarrow as pa
    from datasets import Dataset
    from datasets.table import InMemoryTable

    keep = calib.attention_mask.astype(bool)
    lengths = [int(v) for v in keep.sum(axis=1)]
    batches = length_batches(lengths, batch_size)
    order = [i for batch in batches for i in batch]
    tokens = np.concatenate([calib.input_ids[i][keep[i]] for i in order]).astype(np.int64)
    window_offsets = pa.array(np.concatenate([[0], np.cumsum([lengths[i] for i in order])]).astype(np.int32))
    batch_offsets = pa.array(np.concatenate([[0], np.cumsum([len(b) for b in batches])]).astype(np.int32))
    ids = pa.ListArray.from_arrays(batch_offsets, pa.ListArray.from_arrays(window_offsets, pa.array(tokens)))
    ones = pa.ListArray.from_arrays(
        batch_offsets, pa.ListArray.from_arrays(window_offsets, pa.array(np.ones(len(tokens), dtype=np.int8)))
    )
    table = pa.Table.from_arrays([ids, ones], names=["input_ids", "attention_mask"])
    return Dataset(InMemoryTable(table)), len(batches)


def collate_batch(features: list[dict[str, Any]], return_tensors: str = "pt") -> dict[str, Any]:
    """One row of :func:`batched_dataset` (the loader's batch size is 1) as ``[windows, length]`` tensors."""
    import torch

    (row,) = features
    return {
        "input_ids": torch.as_tensor(row["input_ids"], dtype=torch.long),
        "attention_mask": torch.as_tensor(row["attention_mask"], dtype=torch.long),
    }


# config attributes that give a model's number of routed experts, across the families transformers builds
_EXPERT_COUNTS = ("num_local_experts", "num_experts", "n_routed_experts", "moe_num_experts")


def _expert_count(config: Any) -> int:
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    for name in _EXPERT_COUNTS:
        value = getattr(text, name, None)
        if isinstance(value, int) and value > 1:
            return value
    return 0


def _experts_classes(config: Any) -> list[str]:
    """Classes of the config's transformers modeling module that llm-compressor 0.14 linearizes (no weights read)."""
    import importlib
    import inspect

    import torch
    from llmcompressor.modeling.moe.helpers import get_use_experts_implementation_args
    from llmcompressor.modeling.moe.linear_experts import LinearExperts2D

    model_type = str(getattr(config, "model_type", ""))
    try:
        module = importlib.import_module(f"transformers.models.{model_type}.modeling_{model_type}")
    except ImportError:
        return []
    found = []
    for name, cls in inspect.getmembers(module, inspect.isclass):
        if cls.__module__ != module.__name__ or not issubclass(cls, torch.nn.Module):
            continue
        if "experts" not in name.lower():
            continue
        registered = LinearExperts2D.get_registration(cls) is not None
        if registered or get_use_experts_implementation_args(cls) is not None:
            found.append(name)
    return found


def moe_problem(config: Any, what: str) -> str | None:
    """Why ``moe_calibrate_all_experts`` cannot apply to a model with this config (None when it can)."""
    model_type = getattr(config, "model_type", "?")
    if not _expert_count(config):
        return (
            f"--moe-calibrate-all-experts: {what} ({model_type}) is a dense model, it has no experts to calibrate: "
            "drop the option"
        )
    if not _experts_classes(config):
        return (
            f"--moe-calibrate-all-experts: llm-compressor has no expert calibration module for {what} "
            f"({model_type}): drop the option (its experts see only the tokens routed to them)"
        )
    return None


def check_moe_model(model: Any, what: str) -> int:
    """A loaded model's expert layers that llm-compressor calibrates; refuse the option when there are none."""
    from llmcompressor.modeling.moe.linearize import get_linearized_moes, get_non_linearized_moes

    layers = len(get_non_linearized_moes(model)) + len(get_linearized_moes(model))
    if layers:
        return layers
    problem = moe_problem(model.config, what)
    raise CalibenchError(
        problem
        or f"--moe-calibrate-all-experts: {what} has no experts module llm-compressor can calibrate: drop the option"
    )


def check_moe_spec(model_spec: str) -> None:
    """Refuse ``moe_calibrate_all_experts`` for a model spec from its config, before any weight is read."""
    from calibench.models import load_config

    problem = moe_problem(load_config(model_spec), model_spec)
    if problem:
        raise CalibenchError(problem)


def check_onload_device(device: Any) -> Any:
    """The torch device calibration onloads layers to; one line when this machine has no such device."""
    from calibench.models import resolve_device

    try:
        return resolve_device(device)
    except CalibenchError as exc:
        raise CalibenchError(str(exc).replace("--device", "onload_device", 1)) from None
