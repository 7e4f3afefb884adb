"""Where calibench keeps downloaded assets and caches.

One root, ``$CALIBENCH_HOME`` (default ``~/.cache/calibench``), so that a user
or CI can point every cache at a scratch disk with a single variable.
"""

from __future__ import annotations

import os
from pathlib import Path


def home() -> Path:
    """The cache root; created on first use."""
    root = Path(os.environ.get("CALIBENCH_HOME") or Path.home() / ".cache" / "calibench")
    root.mkdir(parents=True, exist_ok=True)
    return root


def assets_dir() -> Path:
    """Prepared assets (converted models, unpacked data packs)."""
    path = home() / "assets"
    path.mkdir(parents=True, exist_ok=True)
    return path


def token_cache_dir() -> Path:
    """Tokenized corpora, keyed by source fingerprint and tokenizer hash."""
    path = home() / "tokens"
    path.mkdir(parents=True, exist_ok=True)
    return path
