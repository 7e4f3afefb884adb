"""Run windows through a model once and hand every hook site its real-token activations.

This is the one forward loop that both the statistics pass
(:mod:`~calibench.inspect.collect`) and the quantization-error pass
(:mod:`~calibench.inspect.quant_error`) use.  Each site's activation is
reshaped to (batch, time, hidden), its padded positions (``attention_mask ==
0``) are dropped, and what is left is cast to float32 and checked to be
finite before the consumer sees it, so nothing downstream can be fooled by
padding or by a half-precision overflow.  The forward pass stops after the
last hooked decoder layer: the LM head's vocabulary-wide logits (262k rows on
Gemma 3) are never computed.  Hooks are removed in a ``finally`` block, so an
error leaves the model as it was.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from contextlib import closing
from dataclasses import dataclass, replace
from typing import Any

from calibench.core import progress
from calibench.core.errors import CalibenchError
from calibench.inspect.sites import HookSite, site_tensor


@dataclass
class Batch:
    """Where the real tokens of the current batch sit: one entry per kept position, in order."""

    sample: Any  # window index in the set
    position: Any  # position in the window
    token: Any  # token id


Consumer = Callable[[HookSite, Any, Batch], None]


class _StopForward(Exception):
    """Raised after the last hooked decoder layer: nothing later is needed."""


def _stop(_module: Any, _args: Any, _output: Any) -> None:
    raise _StopForward


def check_vocabulary_fits(model: Any, ids: Any) -> None:
    """Token ids beyond the model's embedding mean the windows were made for another tokenizer."""
    vocab = int(model.get_input_embeddings().num_embeddings)
    if ids.numel() and int(ids.max()) >= vocab:
        raise CalibenchError(
            f"the set has token ids up to {int(ids.max())} but the model's vocabulary has {vocab}: "
            "was it made for another tokenizer?"
        )


def _check_finite(site: HookSite, x: Any) -> None:
    import math

    import torch

    if not math.isfinite(float(x.sum())) and not bool(torch.isfinite(x).all()):  # one cheap pass when all is well
        bad = "nan" if bool(torch.isnan(x).any()) else "inf"
        raise CalibenchError(
            f"activations at {site.name} contain {bad} (after casting to float32): "
            "load the model in a wider dtype (float32 or bfloat16) and retry"
        )


def stream_activations(
    model: Any,
    stack: Any,
    sites: Sequence[HookSite],
    ids: Any,
    mask: Any,
    consume: Consumer,
    *,
    batch_size: int = 4,
    description: str | None = None,
) -> None:
    """Feed ``consume(site, x, batch)`` with every site's real-token activations, ``x`` of shape (tokens, width).

    ``ids`` and ``mask`` are (windows, seq_len) tensors; they move to the
    model's device a batch at a time.
    """
    import torch

    if batch_size < 1:
        raise CalibenchError(f"batch size must be at least 1, got {batch_size}")
    check_vocabulary_fits(model, ids)
    current: dict[str, Any] = {}

    def feed(site: HookSite, value: Any) -> None:
        keep = current["keep"]
        if value.shape[:2] != keep.shape:
            if value.ndim == 2 and value.shape[0] == keep.numel():  # a model that flattens (B*T, H)
                value = value.reshape(*keep.shape, value.shape[-1])
            else:
                raise RuntimeError(
                    f"{site.name}: activation shape {tuple(value.shape)} does not match the batch {tuple(keep.shape)}"
                )
        x = value[keep].float()
        _check_finite(site, x)
        consume(site, x, current["batch"])

    def make_hook(site: HookSite) -> Any:
        if site.kind == "linear_input":
            return site.module.register_forward_pre_hook(lambda _m, args: feed(site, site_tensor(site, args, None)))
        return site.module.register_forward_hook(lambda _m, args, out: feed(site, site_tensor(site, args, out)))

    last_layer = max(site.layer for site in sites)
    handles = [make_hook(site) for site in sites]
    passes = truncated_passes(
        model, ids, mask, batch_size, handles, stack.layers[last_layer], description or "collecting activations"
    )
    try:
        with closing(passes):  # hooks removed even when this loop's own code raises
            for begin, batch_ids, batch_mask in passes:
                keep = batch_mask.bool()
                rows, cols = torch.nonzero(keep, as_tuple=True)
                current.update(keep=keep, batch=Batch(sample=rows + begin, position=cols, token=batch_ids[rows, cols]))
    finally:
        current.clear()


def truncated_passes(
    model: Any, ids: Any, mask: Any, batch_size: int, handles: list[Any], last: Any, description: str
) -> Generator[tuple[int, Any, Any], None, None]:
    """Forward passes over ``ids`` in batches, each stopped once module ``last`` has run, with a progress bar.

    Yields ``(first window, batch ids, batch mask)`` before each pass, on the model's device, so the caller can
    set what its hooks (``handles``, already registered) need for that batch; the pass runs when the caller asks
    for the next batch.  The hooks are removed and the model's training mode restored at the end, however it ends.
    """
    import torch

    device = next(model.parameters()).device
    handles = [*handles, last.register_forward_hook(_stop)]  # registered last: runs after the caller's hooks
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), progress.task(description, total=int(ids.shape[0]), unit="windows") as bar:
            for begin in range(0, ids.shape[0], batch_size):
                batch_ids = ids[begin : begin + batch_size].to(device)
                batch_mask = mask[begin : begin + batch_size].to(device)
                yield begin, batch_ids, batch_mask
                try:
                    model(input_ids=batch_ids, attention_mask=batch_mask, use_cache=False)
                except _StopForward:
                    pass
                bar.advance(int(batch_ids.shape[0]))
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)


def merge_shared_inputs(model: Any, stack: Any, sites: Sequence[HookSite], ids: Any, mask: Any) -> list[HookSite]:
    """Keep one linear-input site per input tensor: a two-token probe finds which linears read the same tensor.

    In a Llama block q_proj, k_proj and v_proj read one normed hidden state,
    gate_proj and up_proj another; hooking all of them would triple the work
    and count one outlier channel as three features.  The first site of each
    group stays, with the others' roles in ``shared``.  Structure alone cannot
    tell (a parallel block or a fused projection differs), so this looks at
    the tensors a real forward pass hands the modules.
    """
    import torch

    linear = [site for site in sites if site.kind == "linear_input"]
    if len(linear) < 2 or ids.shape[0] == 0:
        return list(sites)
    seen: dict[str, tuple[int, int, tuple[int, ...]]] = {}
    alive: list[Any] = []  # every probed tensor stays referenced, so a freed one's memory cannot be reused

    def probe(site: HookSite) -> Any:
        def hook(_m: Any, args: Any) -> None:
            x = site_tensor(site, args, None)
            alive.append(x)
            seen[site.name] = (site.layer, x.data_ptr(), tuple(x.shape))

        return site.module.register_forward_pre_hook(hook)

    length = max(1, min(2, int(mask[0].sum())))
    row = int(torch.nonzero(mask[0])[0]) if bool(mask[0].any()) else 0
    window = ids[:1, row : row + length].to(next(model.parameters()).device)
    handles = [probe(site) for site in linear]
    handles.append(stack.layers[max(site.layer for site in linear)].register_forward_hook(_stop))
    try:
        with torch.no_grad():
            try:
                model(input_ids=window, attention_mask=torch.ones_like(window), use_cache=False)
            except _StopForward:
                pass
    finally:
        for handle in handles:
            handle.remove()
    alive.clear()
    first: dict[tuple[int, int, tuple[int, ...]], HookSite] = {}
    shared: dict[str, list[str]] = {}
    for site in linear:
        key = seen.get(site.name)
        if key is None:  # never called on this probe (a module a branch skipped): keep it on its own
            continue
        if key in first:
            shared[first[key].name].append(site.role)
        else:
            first[key] = site
            shared[site.name] = []
    return [
        replace(site, shared=tuple(shared[site.name])) if site.name in shared else site
        for site in sites
        if site.kind != "linear_input" or site.name in shared or site.name not in seen
    ]
