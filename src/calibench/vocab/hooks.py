"""The two hooks that keep a pruned model speaking the tokenizer's ids.

* at the input, a forward pre-hook on the embedding maps tokenizer ids to
  rows of the kept table (``vocab_slot``, one int32 per tokenizer id, -1 for
  a dropped id).  A dropped id is an error naming the token, or, when a
  fallback was chosen, the fallback's row, counted and warned about once;
* at the output (restricted mode), a forward hook on the head scatters the
  kept tokens' logits into a full-vocabulary tensor filled with ``-inf``, so
  lm-eval, ``generate`` and any loss see ordinary ids and a dropped token
  has probability exactly 0.

Hooks rather than replacement modules: the embedding and head keep their
class (Gemma's scaled embedding stays scaled), their parameter names (the
tie, ``ignore: [lm_head]`` recipes and ``save_pretrained`` see the names they
expect) and their type (llm-compressor still finds an ``nn.Linear`` head).
The hooks are module-level callables, so a pruned model pickles and copies.
"""

from __future__ import annotations

import warnings
from typing import Any

from calibench.core.errors import CalibenchError

SLOT = "vocab_slot"  # buffer on the embedding: tokenizer id -> row of the kept table, -1 if dropped
KEPT = "vocab_kept"  # buffer on the head: row -> tokenizer id


class TokenOutsideVocabularyError(CalibenchError):
    """A token id that the pruned model does not have (and no fallback was chosen)."""


class RemapIds:
    """Forward pre-hook of the input embedding: tokenizer ids -> kept rows."""

    def __init__(self, fallback_slot: int | None = None, describe: Any = None):
        self.fallback_slot = fallback_slot
        self.fallbacks = 0  # ids replaced by the fallback so far
        self.describe = describe  # optional callable id -> text, for the error

    def __call__(self, module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        import torch

        key = None
        if args:
            ids = args[0]
        else:
            key = next(k for k in ("input", "input_ids") if k in kwargs)
            ids = kwargs[key]
        slot = getattr(module, SLOT)
        if slot.device != ids.device:  # e.g. llm-compressor's shape passes on the meta device
            slot = slot.to(ids.device)
        slots = slot[ids]
        dropped = slots < 0
        if ids.device.type != "meta" and bool(dropped.any()):
            bad = torch.unique(ids[dropped])
            if self.fallback_slot is None:
                first = int(bad[0])
                name = f" ({self.describe(first)!r})" if self.describe else ""
                more = f" and {len(bad) - 1} more" if len(bad) > 1 else ""
                raise TokenOutsideVocabularyError(
                    f"token id {first}{name}{more} is outside the pruned vocabulary ({int((slot >= 0).sum())} of "
                    f"{slot.numel()} kept): collect the vocabulary again including this text, "
                    "or prune with --fallback TOKEN"
                )
            count = int(dropped.sum())
            if self.fallbacks == 0:
                warnings.warn(f"{count} token(s) outside the pruned vocabulary were replaced by the fallback token "
                              "(counted in the model's vocab record)", stacklevel=2)  # fmt: skip
            self.fallbacks += count
            slots = torch.where(dropped, torch.full_like(slots, self.fallback_slot), slots)
        if key is None:
            return (slots, *args[1:]), kwargs
        return args, {**kwargs, key: slots}


class ScatterLogits:
    """Forward hook of the output head: logits over kept rows -> logits over the full vocabulary."""

    def __init__(self, vocab_size: int):
        self.vocab_size = vocab_size

    def __call__(self, module: Any, _args: Any, output: Any) -> Any:
        kept = getattr(module, KEPT)
        if kept.device != output.device:
            kept = kept.to(output.device)
        full = output.new_full((*output.shape[:-1], self.vocab_size), float("-inf"))
        return full.index_copy_(output.dim() - 1, kept, output)


def remap_hook(module: Any) -> RemapIds | None:
    for hook in module._forward_pre_hooks.values():
        if isinstance(hook, RemapIds):
            return hook
    return None


def attach_remap(module: Any, slot: Any, fallback_slot: int | None, describe: Any = None) -> RemapIds:
    module.register_buffer(SLOT, slot, persistent=False)
    hook = RemapIds(fallback_slot, describe)
    module.register_forward_pre_hook(hook, with_kwargs=True)
    return hook


def attach_scatter(module: Any, kept: Any, vocab_size: int) -> None:
    module.register_buffer(KEPT, kept, persistent=False)
    module.register_forward_hook(ScatterLogits(vocab_size))


def detach(module: Any) -> None:
    """Remove calibench's vocabulary hooks and buffers from a module (no-op if none)."""
    if module is None:
        return
    for hooks in (module._forward_pre_hooks, module._forward_hooks):
        for key in [k for k, h in hooks.items() if isinstance(h, (RemapIds, ScatterLogits))]:
            del hooks[key]
    for name in (SLOT, KEPT):
        if name in module._buffers:
            del module._buffers[name]
            module._non_persistent_buffers_set.discard(name)
