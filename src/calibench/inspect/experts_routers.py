"""Find a mixture-of-experts model's routers by structure and record the experts each real token is sent to.

A *MoE block* is a module with two children (names do not matter):

* an expert container holding ``n >= 2`` experts: either a ``ModuleList`` of
  ``n`` children with identical structure (one MLP per expert, as in
  llm-compressor's linearized experts), or a module
  whose own parameters are stacked per expert, all with leading dimension
  ``n`` and at least one of them 3-D (transformers' fused ``*Experts``);
* a router: a ``Linear`` with ``out_features == n``, or a module whose own
  ``weight`` is an ``(n, hidden)`` matrix.

The router's forward output is hooked.  Where it returns its selection (an
integer tensor of shape ``(tokens, k)``, as the Mixtral, Qwen-MoE and
DeepSeek-V3 routers of transformers 5 do), those are the experts the block
really runs.  Where it returns only logits ``(tokens, n)``, the top-k is
recomputed with the config's semantics: softmax, or sigmoid for
``scoring_func: sigmoid``, plus the routers' score-correction bias and
DeepSeek's group-limited choice (``n_group``/``topk_group``) when present;
the layer then says ``selection: recomputed-*``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from calibench.core.errors import CalibenchError

TOP_K_ATTRIBUTES = ("num_experts_per_tok", "top_k", "moe_top_k", "num_experts_per_token", "experts_per_token")


@dataclass(frozen=True)
class MoeLayer:
    """One MoE block: where it sits, its router and expert container, and how its selection is read."""

    name: str  # qualified name of the block
    layer: int  # index of the decoder layer holding it
    router_name: str
    experts_name: str
    n_experts: int
    top_k: int
    block: Any
    router: Any


def _signature(module: Any) -> tuple[Any, ...]:
    return (type(module).__name__, tuple((n, tuple(p.shape)) for n, p in module.named_parameters()))


def expert_count(module: Any) -> int | None:
    """How many experts ``module`` holds as an expert container, or None if it is not one."""
    import torch

    if isinstance(module, torch.nn.ModuleList):
        # children without parameters (an activation kept on the list, as llm-compressor's linearized experts
        # do) are not experts
        children = [child for child in module if any(True for _ in child.parameters())]
        if len(children) >= 2:
            first = _signature(children[0])
            if all(_signature(child) == first for child in children[1:]):
                return len(children)
        return None
    own = list(module.parameters(recurse=False))
    if not own or not any(p.ndim == 3 for p in own):
        return None
    leading = {int(p.shape[0]) for p in own if p.ndim >= 2}
    if len(leading) == 1 and all(p.ndim >= 2 for p in own):
        n = leading.pop()
        return n if n >= 2 else None
    return None


def _is_router(module: Any, n: int, hidden: int | None) -> bool:
    import torch

    if isinstance(module, torch.nn.Embedding):
        return False
    if isinstance(module, torch.nn.Linear):
        return module.out_features == n and (hidden is None or module.in_features == hidden)
    weight = module._parameters.get("weight") if hasattr(module, "_parameters") else None
    return (
        weight is not None
        and weight.ndim == 2
        and weight.shape[0] == n
        and (hidden is None or weight.shape[1] == hidden)
    )


def _hidden_size(model: Any) -> int | None:
    config = getattr(model, "config", None)
    text = getattr(config, "get_text_config", None)
    config = text() if callable(text) else config
    value = getattr(config, "hidden_size", None)
    return int(value) if isinstance(value, int) else None


def model_top_k(model: Any) -> int | None:
    config = getattr(model, "config", None)
    text = getattr(config, "get_text_config", None)
    config = text() if callable(text) else config
    for attribute in TOP_K_ATTRIBUTES:
        value = getattr(config, attribute, None)
        if isinstance(value, int) and value >= 1:
            return value
    return None


def _top_k(model: Any, block: Any, router: Any) -> int | None:
    for module in (router, block):
        value = getattr(module, "top_k", None)
        if isinstance(value, int) and value >= 1:
            return value
    return model_top_k(model)


def _blocks(model: Any, stack_name: str, layers: list[Any]) -> Iterator[tuple[int, str, Any]]:
    for index, layer in enumerate(layers):
        prefix = f"{stack_name}.{index}" if stack_name else str(index)
        for name, module in layer.named_modules():
            yield index, f"{prefix}.{name}" if name else prefix, module


def find_moe_layers(model: Any) -> list[MoeLayer]:
    """Every MoE block of ``model``'s decoder stack, in layer order; empty for a dense model."""
    from calibench.curate.layers import find_decoder_layers

    stack = find_decoder_layers(model)
    hidden = _hidden_size(model)
    found: list[MoeLayer] = []
    for index, name, block in _blocks(model, stack.name, stack.layers):
        children = dict(block.named_children())
        for experts_name, container in children.items():
            n = expert_count(container)
            if n is None:
                continue
            router = next(
                (
                    (child_name, child)
                    for child_name, child in children.items()
                    if child_name != experts_name and _is_router(child, n, hidden)
                ),
                None,
            )
            if router is None:
                continue
            k = _top_k(model, block, router[1])
            if k is None or k > n:
                raise CalibenchError(
                    f"{name} routes to {n} experts but its top-k is not known: the model config has none of "
                    f"{', '.join(TOP_K_ATTRIBUTES)}"
                )
            found.append(
                MoeLayer(
                    name=name,
                    layer=index,
                    router_name=f"{name}.{router[0]}",
                    experts_name=f"{name}.{experts_name}",
                    n_experts=n,
                    top_k=k,
                    block=block,
                    router=router[1],
                )
            )
            break
    return found


def _tensors(output: Any) -> list[Any]:
    import torch

    if isinstance(output, torch.Tensor):
        return [output]
    if isinstance(output, (tuple, list)):
        return [t for t in output if isinstance(t, torch.Tensor)]
    return []


def selected_indices(output: Any, n: int, k: int) -> Any | None:
    """The router's own selection in its output: an integer ``(tokens, k)`` tensor, else None."""
    for tensor in reversed(_tensors(output)):
        if not tensor.is_floating_point() and tensor.ndim == 2 and tensor.shape[-1] == k and tensor.dtype.is_signed:
            return tensor
    return None


def router_logits(output: Any, n: int) -> Any | None:
    for tensor in _tensors(output):
        if tensor.is_floating_point() and tensor.shape[-1] == n:
            return tensor.reshape(-1, n)
    return None


def scoring_function(model: Any) -> str:
    config = getattr(model, "config", None)
    return "sigmoid" if str(getattr(config, "scoring_func", "softmax")).lower() == "sigmoid" else "softmax"


def recompute_top_k(logits: Any, k: int, *, scoring: str = "softmax", bias: Any = None, groups: int = 1,
                    top_groups: int = 1) -> Any:  # fmt: skip
    """The top-k experts from router logits: softmax or sigmoid scores (+ a score-correction bias), and with
    ``groups > 1`` only the ``top_groups`` groups whose two best scores sum highest are eligible."""
    import torch

    logits = logits.float()
    scores = torch.sigmoid(logits) if scoring == "sigmoid" else torch.softmax(logits, dim=-1)
    if bias is not None:
        scores = scores + bias.float()
    n = scores.shape[-1]
    if groups > 1 and top_groups < groups and n % groups == 0:
        grouped = scores.view(-1, groups, n // groups)
        group_scores = grouped.topk(min(2, n // groups), dim=-1)[0].sum(dim=-1)
        keep = torch.zeros_like(group_scores).scatter_(1, group_scores.topk(top_groups, dim=-1)[1], 1.0)
        mask = keep.unsqueeze(-1).expand_as(grouped).reshape(-1, n).bool()
        scores = scores.masked_fill(~mask, float("-inf"))
    return scores.topk(k, dim=-1)[1]


def selection_mode(model: Any, moe: MoeLayer) -> Callable[[Any], tuple[Any, str]]:
    """A function from the router's output to ``(indices (tokens, k), selection name)``."""
    config = getattr(model, "config", None)
    scoring = scoring_function(model)
    groups = int(getattr(config, "n_group", None) or 1)
    top_groups = int(getattr(config, "topk_group", None) or groups)
    bias = getattr(moe.router, "e_score_correction_bias", None)

    def read(output: Any) -> tuple[Any, str]:
        indices = selected_indices(output, moe.n_experts, moe.top_k)
        if indices is not None:
            return indices, "router"
        logits = router_logits(output, moe.n_experts)
        if logits is None:
            raise CalibenchError(
                f"{moe.router_name} returned neither expert ids (tokens, {moe.top_k}) nor logits "
                f"(tokens, {moe.n_experts}): this router's output is not understood"
            )
        chosen = recompute_top_k(logits, moe.top_k, scoring=scoring, bias=bias, groups=groups, top_groups=top_groups)
        return chosen, f"recomputed-{scoring}"

    return read
