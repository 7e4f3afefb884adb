"""Compression through llm-compressor: methods registry, validation, the compress() entry point.

The names below load on first use (PEP 562), so that reading the method
parameters' model (:class:`MethodParams`, from which the CLI derives its
options) does not import torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from calibench.compress.api import RECORD_FILE, CompressionResult, compress
    from calibench.compress.methods import METHODS, Method, MethodParams, register_method

__all__ = ["METHODS", "RECORD_FILE", "CompressionResult", "Method", "MethodParams", "compress", "register_method"]

_HOME = {
    "RECORD_FILE": "calibench.compress.api",
    "CompressionResult": "calibench.compress.api",
    "compress": "calibench.compress.api",
    "METHODS": "calibench.compress.methods",
    "Method": "calibench.compress.methods",
    "MethodParams": "calibench.compress.methods",
    "register_method": "calibench.compress.methods",
}


def __getattr__(name: str) -> Any:
    if name in _HOME:
        return getattr(importlib.import_module(_HOME[name]), name)
    raise AttributeError(f"module 'calibench.compress' has no attribute {name!r}")
