"""Compression through llm-compressor: methods registry, validation, the compress() entry point."""

from calibench.compress.api import RECORD_FILE, CompressionResult, compress
from calibench.compress.methods import METHODS, Method, MethodParams, register_method

__all__ = ["METHODS", "RECORD_FILE", "CompressionResult", "Method", "MethodParams", "compress", "register_method"]
