"""Expert routing of calibration sets on a mixture-of-experts model: which experts each set calibrates.

:func:`expert_routing` runs every set through the model once, with a hook on
each router (found by structure, :mod:`~calibench.inspect.experts_routers`),
and counts the real tokens (padding dropped) sent to each expert of each MoE
layer.  With top-k routing a token counts once for each of its k experts.  An
expert that gets fewer than ``min_expert_tokens`` is *starved*: a quantizer
calibrating it on this set sees that few rows.  The comparison across sets
says which set starves experts that another covers, and which experts no set
covers.  The counting math is :mod:`~calibench.inspect.experts_math`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import closing
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel

from calibench.core.errors import CalibenchError
from calibench.core.settings import DEFAULTS
from calibench.inspect import experts_math
from calibench.inspect.experts_routers import MoeLayer, find_moe_layers, selection_mode

FORMAT = "calibench.inspect.experts/1"
DEFAULT_MIN_TOKENS = experts_math.DEFAULT_MIN_TOKENS
COUNTING = "each real token counts once for each of its top-k experts: a layer's counts sum to k x tokens"


class MoeLayerInfo(BaseModel):
    name: str
    layer: int
    router: str
    experts: str
    n_experts: int
    top_k: int
    selection: str  # "router": the router's own ids; "recomputed-softmax"/"recomputed-sigmoid": from its logits


class SetRouting(BaseModel):
    """One set's counts, per MoE layer (the order of :attr:`ExpertRouting.layers`)."""

    label: str
    set_id: str | None = None
    tokens: int
    counts: list[list[int]]
    entropy: list[float | None]
    zero: list[list[int]]
    starved: list[list[int]]
    coverage: dict[str, float]  # min_layer / mean_layer / all: shares of experts with >= min_expert_tokens


class Starvation(BaseModel):
    set: str
    covered_by: str
    layer: int
    experts: list[int]


class Uncovered(BaseModel):
    layer: int
    experts: list[int]


class ExpertRouting(BaseModel):
    """Everything :func:`expert_routing` measured, JSON round-trippable (:meth:`to_json` / :meth:`from_json`)."""

    format: str = FORMAT
    model: str = ""
    counting: str = COUNTING
    min_expert_tokens: int
    layers: list[MoeLayerInfo]
    sets: list[SetRouting]
    starved_but_covered: list[Starvation]
    starved_everywhere: list[Uncovered]

    def set(self, label: str) -> SetRouting:
        for routing in self.sets:
            if routing.label == label:
                return routing
        raise KeyError(label)

    def to_json(self, path: str | Path | None = None) -> str:
        text = self.model_dump_json(indent=1)
        if path is not None:
            from calibench.core.fsutil import atomic_write_bytes

            atomic_write_bytes(Path(path), (text + "\n").encode("utf-8"))
        return text

    @classmethod
    def from_json(cls, source: str | Path) -> ExpertRouting:
        text = Path(source).read_text(encoding="utf-8") if isinstance(source, Path) else source
        return cls.model_validate_json(text)


def no_moe_message(model_name: str) -> str:
    return (
        f"{model_name or 'the model'} has no MoE layers (no router found): inspect experts needs a "
        "mixture-of-experts model (Mixtral, Qwen-MoE, DeepSeek-V3 style)"
    )


def moe_layers_of(model: Any, model_name: str = "") -> list[MoeLayer]:
    """The model's MoE layers; a dense model is refused in one line."""
    layers = find_moe_layers(model)
    if not layers:
        raise CalibenchError(no_moe_message(model_name))
    return layers


def route_counts(
    model: Any,
    moe: Sequence[MoeLayer],
    ids: Any,
    mask: Any,
    *,
    batch_size: int = DEFAULTS.batch_size,
    description: str | None = None,
) -> tuple[list[np.ndarray], list[str], int]:
    """Per-layer expert counts of the real tokens of ``ids``/``mask`` (windows, seq_len), the selection each
    layer's count came from, and the number of real tokens."""
    import torch

    from calibench.inspect.stream import check_vocabulary_fits, truncated_passes

    if batch_size < 1:
        raise CalibenchError(f"batch size must be at least 1, got {batch_size}")
    check_vocabulary_fits(model, ids)
    device = next(model.parameters()).device
    counts = [torch.zeros(layer.n_experts, dtype=torch.int64, device=device) for layer in moe]
    modes = ["" for _ in moe]
    keep: dict[str, Any] = {}

    def make_hook(position: int, layer: MoeLayer) -> Any:
        read = selection_mode(model, layer)

        def hook(_module: Any, _args: Any, output: Any) -> None:
            indices, modes[position] = read(output)
            flat = keep["flat"]
            if indices.shape[0] != flat.numel():
                raise CalibenchError(
                    f"{layer.router_name} routed {indices.shape[0]} tokens but the batch has {flat.numel()} positions"
                )
            # a model spread over devices routes each layer where the layer sits
            chosen = indices[flat.to(indices.device)].reshape(-1).to(torch.int64)
            found = torch.bincount(chosen, minlength=layer.n_experts)[: layer.n_experts]
            counts[position] += found.to(counts[position].device)

        return layer.router.register_forward_hook(hook)

    handles = [make_hook(i, layer) for i, layer in enumerate(moe)]
    tokens = 0
    # each pass stops after the last MoE block: its router's hook has run by then
    passes = truncated_passes(model, ids, mask, batch_size, handles, moe[-1].block, description or "routing tokens")
    with closing(passes):
        for _begin, _ids, batch_mask in passes:
            keep["flat"] = batch_mask.reshape(-1).bool()
            tokens += int(batch_mask.sum())
    return [c.cpu().numpy() for c in counts], modes, tokens


def _labelled(sets: Mapping[str, Any] | Sequence[Any]) -> dict[str, Any]:
    if isinstance(sets, Mapping):
        labelled = dict(sets)
    else:
        labelled = {}
        for i, calib in enumerate(sets):
            label = getattr(calib, "set_id", None) or f"set{i}"
            labelled[label if label not in labelled else f"{label}-{i}"] = calib
    if not labelled:
        raise CalibenchError("no calibration sets given: name at least one set")
    return labelled


def check_min_tokens(min_expert_tokens: int) -> None:
    if isinstance(min_expert_tokens, bool) or not isinstance(min_expert_tokens, int) or min_expert_tokens < 1:
        raise CalibenchError(f"--min-expert-tokens must be a whole number of at least 1, got {min_expert_tokens}")


def expert_routing(
    model: Any,
    sets: Mapping[str, Any] | Sequence[Any],
    *,
    min_expert_tokens: int = DEFAULT_MIN_TOKENS,
    batch_size: int = DEFAULTS.batch_size,
    model_name: str = "",
) -> ExpertRouting:
    """Tokens per expert per MoE layer for each calibration set, starved experts, entropy and the set comparison.

    ``sets``: ``{label: CalibrationSet}`` or a sequence of sets (labelled by
    set id).  A dense model is refused (:class:`CalibenchError`).
    """
    check_min_tokens(min_expert_tokens)
    labelled = _labelled(sets)
    moe = moe_layers_of(model, model_name)
    per_set: list[SetRouting] = []
    selection = ["" for _ in moe]
    raw: dict[str, list[list[int]]] = {}
    for label, calib in labelled.items():
        ids, mask = calib.to_torch()
        counts, modes, tokens = route_counts(
            model, moe, ids, mask, batch_size=batch_size, description=f"experts: {label}"
        )
        selection = [m or s for m, s in zip(modes, selection)]
        lists = [[int(v) for v in c] for c in counts]
        raw[label] = lists
        per_set.append(
            SetRouting(
                label=label,
                set_id=getattr(calib, "set_id", None) or None,
                tokens=tokens,
                counts=lists,
                entropy=[experts_math.routing_entropy(c) for c in counts],
                zero=[experts_math.zero_experts(c) for c in counts],
                starved=[experts_math.starved_experts(c, min_expert_tokens) for c in counts],
                coverage=experts_math.coverage_summary(lists, min_expert_tokens),
            )
        )
    layer_of = [layer.layer for layer in moe]
    return ExpertRouting(
        model=model_name,
        min_expert_tokens=min_expert_tokens,
        layers=[
            MoeLayerInfo(
                name=layer.name,
                layer=layer.layer,
                router=layer.router_name,
                experts=layer.experts_name,
                n_experts=layer.n_experts,
                top_k=layer.top_k,
                selection=mode or "not reached",
            )
            for layer, mode in zip(moe, selection)
        ],
        sets=per_set,
        starved_but_covered=[
            Starvation(set=a, covered_by=b, layer=layer_of[pos], experts=experts)
            for a, b, pos, experts in experts_math.starved_but_covered(raw, min_expert_tokens)
        ],
        starved_everywhere=[
            Uncovered(layer=layer_of[pos], experts=experts)
            for pos, experts in experts_math.starved_everywhere(raw, min_expert_tokens)
        ],
    )
