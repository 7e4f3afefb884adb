"""What a builder may use besides its parameters: the tokenizer, and the model when it needs one.

The model is loaded lazily and at most once, so text builders (which only
need the tokenizer) never pay for the weights, and a mixture with a ``self``
component loads the model once for all of its parts.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from calibench.core.errors import ParameterError
from calibench.core.settings import DEFAULTS


@dataclass
class BuildContext:
    tokenizer: Any
    model: Any = None  # a model spec (name, directory, hub id) or a loaded causal LM
    dtype: str = DEFAULTS.dtype
    device: str = DEFAULTS.device
    max_seq_len: int | None = None
    _loaded: Any = field(default=None, repr=False)

    @property
    def model_spec(self) -> str | None:
        return str(self.model) if isinstance(self.model, (str, os.PathLike)) else None

    @property
    def model_name(self) -> str:
        if self.model_spec is not None:
            return self.model_spec
        config = getattr(self.model, "config", None)
        return str(getattr(config, "_name_or_path", "") or getattr(self.tokenizer, "name_or_path", "") or "model")

    def load_model(self) -> Any:
        """The causal LM, loaded once in the context's dtype and device."""
        if self._loaded is None:
            if self.model is None:
                raise ParameterError("model", "is needed by this builder (it runs the model): pass model=")
            if self.model_spec is None:
                self._loaded = self.model
            else:
                from calibench.models import load_model

                self._loaded = load_model(self.model_spec, dtype=self.dtype, device=self.device)
        return self._loaded
