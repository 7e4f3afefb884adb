"""Where activation statistics are taken: found by model structure, not by names.

Two kinds of site matter for compression:

* ``linear_input``: the input of every ``nn.Linear`` inside a decoder layer.
  That is the tensor GPTQ's Hessian, AWQ's scales and SmoothQuant's
  migration factors are computed from.
* ``residual``: the output hidden state of each decoder layer, the residual
  stream, where massive activations (Sun et al. 2024) live.

The decoder stack is the one curation already finds
(:func:`calibench.curate.layers.find_decoder_layers`: the repeated
blocks with the most weights), so a model whose layers sit under
``model.layers``, ``transformer.h`` or anything else works the same.  The LM
head is outside the stack and never a site.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

from calibench.core.errors import CalibenchError
from calibench.core.settings import regex_problem
from calibench.curate.layers import DecoderLayers, find_decoder_layers

SiteKind = Literal["linear_input", "residual"]


@dataclass(frozen=True)
class HookSite:
    """One place a hook reads activations from.

    ``role`` is the module's name relative to its decoder layer (``"self_attn.q_proj"``;
    ``""`` for the residual stream): sites of one role across layers form the
    family that the LLM.int8 cross-layer outlier rule looks at.  ``shared``
    names the other linears that read the very same input tensor (k_proj and
    v_proj beside q_proj, up_proj beside gate_proj): their statistics would
    be identical, so they are measured once, under the first.
    """

    name: str
    kind: SiteKind
    layer: int
    role: str
    module: Any
    width: int
    shared: tuple[str, ...] = ()


def _qualified(stack: str, index: int, sub: str = "") -> str:
    base = f"{stack}.{index}" if stack else str(index)
    return f"{base}.{sub}" if sub else base


def all_sites(model: Any, stack: DecoderLayers | None = None) -> list[HookSite]:
    """Every linear-input and residual site of ``model``, in forward order per layer."""
    import torch

    stack = stack or find_decoder_layers(model)
    width = int(model.get_input_embeddings().embedding_dim)
    sites: list[HookSite] = []
    for index, layer in enumerate(stack.layers):
        for sub, module in layer.named_modules():
            if sub and isinstance(module, torch.nn.Linear):
                sites.append(
                    HookSite(
                        _qualified(stack.name, index, sub), "linear_input", index, sub, module, int(module.in_features)
                    )
                )
        sites.append(HookSite(_qualified(stack.name, index), "residual", index, "", layer, width))
    return sites


def find_sites(model: Any, layers: str | None = None, stack: DecoderLayers | None = None) -> list[HookSite]:
    """The sites whose qualified name matches the regex ``layers`` (all sites when None).

    The filter is searched (``re.search``) in the qualified module name, so
    ``"layers\\.1\\b"`` picks layer 1's linears and residual, ``"mlp"`` the MLP
    inputs only.  A bad pattern or one that matches nothing is the user's
    mistake and raises :class:`CalibenchError` with one line naming a few sites.
    """
    sites = all_sites(model, stack)
    if layers is None:
        return sites
    problem = regex_problem(layers)
    if problem is not None:
        shown = layers if len(layers) <= 60 else f"{layers[:40]}..."
        raise CalibenchError(f"layer filter {shown!r} is {problem}")
    pattern = re.compile(layers)
    chosen = [site for site in sites if pattern.search(site.name)]
    if not chosen:
        examples = ", ".join(site.name for site in sites[:3])
        raise CalibenchError(
            f"layer filter {layers!r} matches none of the {len(sites)} hook sites (e.g. {examples}); "
            "it is a regular expression searched in qualified module names"
        )
    return chosen


def site_tensor(site: HookSite, args: Any, output: Any) -> Any:
    """The activation a site stands for: a linear's first input, or a layer's hidden-state output."""
    import torch

    if site.kind == "linear_input":
        value = args[0] if isinstance(args, (tuple, list)) and args else args
    elif isinstance(output, torch.Tensor):
        value = output
    elif isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        value = output[0]
    else:
        value = None
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"cannot find the activation tensor at {site.name} ({type(output).__name__})")
    return value
