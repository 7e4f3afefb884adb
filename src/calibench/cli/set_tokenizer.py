"""The tokenizer a saved calibration set was built with, for commands that read a set without ``--model``.

``data stats`` and ``data card`` can describe a set on its own: the
manifest names its tokenizer, and loading that name (then checking the
set's recorded tokenizer fingerprint against it) decodes the very tokens
the set holds.  When the name no longer loads, the fix is the user's:
say which tokenizer and ask for ``--model``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from calibench.core.errors import CalibenchError
from calibench.models import load_tokenizer


def recorded_tokenizer(calib: Any, path: Path) -> Any:

    name = calib.manifest.tokenizer.get("name", "")
    try:
        tokenizer = load_tokenizer(name)
    except CalibenchError:
        raise CalibenchError(f"cannot load the tokenizer '{name}' recorded in {path}: pass --model") from None
    calib.check_tokenizer(tokenizer)
    return tokenizer
