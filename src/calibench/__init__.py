"""calibench: calibration data for post-training LLM compression.

The public API is imported lazily so that ``import calibench`` (and the CLI's
``--help``) stay fast; torch and transformers load only when used.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

_API = {
    "CalibrationSet": "calibench.data.calibset",
    "build_calibration_set": "calibench.data.draw",
    "build_calibration_sets": "calibench.data.draw",
    "get_source": "calibench.data.sources",
    "list_sources": "calibench.data.sources",
    "register_source": "calibench.data.sources",
    "load_model": "calibench.models",
    "load_tokenizer": "calibench.models",
    "CalibenchError": "calibench.core.errors",
}

__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module 'calibench' has no attribute {name!r}")
    return getattr(import_module(module), name)
