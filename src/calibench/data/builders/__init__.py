"""One registry of set builders, and the one function that runs any of them.

>>> from calibench.data.builders import build_sets
>>> sets = build_sets("wiki", model="smollm2-135m", n=16, seq_len=256)            # doctest: +SKIP
>>> sets = build_sets("mix:wiki=0.5,code=0.5", model="smollm2-135m", n=16)        # doctest: +SKIP
>>> sets = build_sets("self", model="smollm2-135m", n=8, prompting="chat")        # doctest: +SKIP

Errors name the parameter as the API spells it (:class:`ParameterError`).
"""

from __future__ import annotations

from typing import Any

from calibench.core.errors import ParameterError
from calibench.core.settings import DEFAULTS
from calibench.data.builders.context import BuildContext
from calibench.data.builders.registry import (
    Builder,
    Pattern,
    builders,
    make_params,
    register_builder,
    register_pattern,
    resolve,
)
from calibench.data.draw import validate_sizes


def build_sets(
    source: Any,
    *,
    model: Any = None,
    tokenizer: Any = None,
    dtype: str = DEFAULTS.dtype,
    device: str = DEFAULTS.device,
    max_seq_len: int | None = None,
    **params: Any,
) -> list[Any]:
    """``params.sets`` calibration sets from the builder ``source`` names, for ``model``'s tokenizer.

    ``model`` is a spec (bundled name, directory, hub id; its tokenizer is
    loaded unless given) or a loaded model (then pass ``tokenizer``); only
    builders that run the model (``self``, ``curated``, mixtures with them)
    load its weights.

    ``dtype`` and ``device`` default to ``auto`` (:data:`calibench.core.settings.DEFAULTS`): the first CUDA
    GPU if there is one, else the CPU; float32 on the CPU, the checkpoint's own dtype on a GPU.

    ``source`` may also be in-memory content: a ``datasets.Dataset`` or
    ``IterableDataset``, a list of texts or of conversations
    (:mod:`calibench.data.sources.memory`), with ``text_field`` and
    ``stream_docs`` besides the window parameters.
    """

    builder, checked = _in_memory(source, params) if not isinstance(source, str) else make_params(source, **params)
    context = BuildContext(tokenizer=tokenizer, model=model, dtype=dtype, device=device, max_seq_len=max_seq_len)
    if context.tokenizer is None:
        if context.model_spec is None:
            raise ParameterError("tokenizer", "is needed with an in-memory model (or pass a model name)")
        from calibench.models import load_tokenizer

        context.tokenizer = load_tokenizer(context.model_spec)
    if context.max_seq_len is None and context.model_spec is not None:
        from calibench.models import model_max_length

        context.max_seq_len = model_max_length(context.model_spec)
    validate_sizes(checked.n, checked.seq_len, checked.sets, context.max_seq_len)
    return builder.run(checked, context)


def _in_memory(content: Any, params: dict[str, Any]) -> tuple[Builder, Any]:
    from pydantic import ValidationError

    from calibench.data.builders.builtin import MEMORY
    from calibench.data.builders.registry import parameter_error
    from calibench.data.sources.memory import is_in_memory

    if not is_in_memory(content):
        raise ParameterError(
            "source",
            f"must be a name or in-memory data (a datasets.Dataset, a list of texts or conversations), "
            f"not {type(content).__name__}",
        )
    if "data" in params:
        raise ParameterError("data", "is already given as the source")
    try:
        return MEMORY, MEMORY.params.model_validate({"data": content, **params})
    except ValidationError as exc:
        raise parameter_error(exc, MEMORY, "in-memory data") from None


def build_set(source: Any, **kwargs: Any) -> Any:
    """One calibration set; see :func:`build_sets`."""
    return build_sets(source, **{**kwargs, "sets": 1})[0]


__all__ = [
    "Builder",
    "BuildContext",
    "Pattern",
    "build_set",
    "build_sets",
    "builders",
    "make_params",
    "register_builder",
    "register_pattern",
    "resolve",
]
