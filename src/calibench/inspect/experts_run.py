"""``calibench inspect experts``: resolve the model and sets, count the routing, write JSON and heat maps.

The dense-model check builds the model's skeleton on PyTorch's ``meta``
device from its config (no weights read), so a model without routers is
refused before any set is built or any weight is loaded.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from calibench.core.errors import CalibenchError
from calibench.core.settings import DEFAULTS
from calibench.inspect.experts import DEFAULT_MIN_TOKENS, ExpertRouting, expert_routing, no_moe_message
from calibench.inspect.experts_routers import find_moe_layers

JSON_NAME = "experts.json"


def check_moe_model(model_spec: str) -> int:
    """The number of MoE layers of ``model_spec``'s architecture (from its config alone); refuses a dense model."""
    import torch
    from transformers import AutoModelForCausalLM

    from calibench.models import load_config

    config = load_config(model_spec)
    try:
        with torch.device("meta"):
            skeleton = AutoModelForCausalLM.from_config(config)
    except (ValueError, KeyError) as exc:
        raise CalibenchError(f"{model_spec}: transformers cannot build this architecture: {exc}") from None
    layers = find_moe_layers(skeleton)
    if not layers:
        raise CalibenchError(no_moe_message(str(model_spec)))
    return len(layers)


def inspect_experts(
    model_spec: str,
    set_names: Sequence[str],
    *,
    n: int = 32,
    seq_len: int = 256,
    seed: int = DEFAULTS.seed,
    min_expert_tokens: int = DEFAULT_MIN_TOKENS,
    batch_size: int = DEFAULTS.batch_size,
    dtype: str = DEFAULTS.dtype,
    device: str = DEFAULTS.device,
) -> ExpertRouting:
    """Expert routing of each named set on one MoE model (sets named as in ``inspect activations``)."""
    from calibench.inspect.run import check_set_names, resolve_set
    from calibench.models import load_tokenizer
    from calibench.placement import load_placed

    labels = check_set_names(set_names)
    check_moe_model(model_spec)
    tokenizer = load_tokenizer(model_spec)
    sets = {
        label: resolve_set(name, model_spec, tokenizer, n=n, seq_len=seq_len, seed=seed)
        for label, name in zip(labels, set_names)
    }
    model = load_placed(model_spec, dtype=dtype, device=device)
    return expert_routing(
        model, sets, min_expert_tokens=min_expert_tokens, batch_size=batch_size, model_name=str(model_spec)
    )


def heat_map_name(label: str) -> str:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in label)
    return f"experts-{safe}.png"


def _draw_heat_map(routing: ExpertRouting, label: str, path: Path) -> Path:
    from calibench.core import plots

    @plots.styled
    def draw() -> Path:
        plt = plots.pyplot()
        result = routing.set(label)
        width = max(layer.n_experts for layer in routing.layers)
        grid = np.full((len(routing.layers), width), np.nan)
        for row, (layer, counts) in enumerate(zip(routing.layers, result.counts)):
            expected = layer.top_k * result.tokens / layer.n_experts
            grid[row, : layer.n_experts] = np.asarray(counts) / expected if expected else 0.0
        fig, ax = plt.subplots(figsize=(min(16, 2 + 0.35 * width), 1.5 + 0.3 * len(routing.layers)))
        image = ax.imshow(grid, aspect="auto", cmap="viridis", interpolation="nearest")
        fig.colorbar(image, ax=ax, label="tokens / uniform share")
        for row, starved in enumerate(result.starved):
            for expert in starved:
                ax.text(expert, row, "x", ha="center", va="center", color="red", fontsize=8)
        ax.set_yticks(range(len(routing.layers)), [str(layer.layer) for layer in routing.layers])
        ax.set_xlabel("expert")
        ax.set_ylabel("decoder layer")
        ax.set_title(
            f"{Path(routing.model).name or 'model'}: {label} ({result.tokens} tokens; x: < {routing.min_expert_tokens})"
        )
        return plots.save_figure(fig, path)

    return draw()


def write_experts(routing: ExpertRouting, directory: str | Path) -> list[Path]:
    """``experts.json`` and one layer x expert heat map per set (``experts-<set>.png``)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    routing.to_json(directory / JSON_NAME)
    written = [directory / JSON_NAME]
    for result in routing.sets:
        written.append(_draw_heat_map(routing, result.label, directory / heat_map_name(result.label)))
    return written


def summary_rows(routing: ExpertRouting) -> list[tuple[str, int, float, float, float | None, int, int]]:
    """Per set: label, tokens, least and mean covered share over layers, mean entropy, zero and starved experts."""
    rows = []
    for result in routing.sets:
        entropies = [e for e in result.entropy if e is not None]
        rows.append(
            (
                result.label,
                result.tokens,
                result.coverage["min_layer"],
                result.coverage["mean_layer"],
                float(np.mean(entropies)) if entropies else None,
                sum(len(z) for z in result.zero),
                sum(len(s) for s in result.starved),
            )
        )
    return rows


def describe(routing: ExpertRouting) -> dict[str, Any]:
    """A short dict of the layers found (for messages and docs)."""
    return {
        "moe_layers": len(routing.layers),
        "experts": sorted({layer.n_experts for layer in routing.layers}),
        "top_k": sorted({layer.top_k for layer in routing.layers}),
        "selection": sorted({layer.selection for layer in routing.layers}),
    }
