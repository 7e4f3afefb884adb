"""An empty held-out file is refused while the texts are read, before the model loads (it was refused after)."""

from __future__ import annotations

import pytest

from calibench.core.errors import CalibenchError
from calibench.evaluation import evaluate


def test_an_empty_heldout_file_is_refused_before_the_model_loads(tiny_model_dir, tmp_path, monkeypatch):
    import calibench.models as models

    def no_load(*args, **kwargs):
        raise AssertionError("the model was loaded for an empty held-out text")

    monkeypatch.setattr(models, "load_model", no_load)
    empty = tmp_path / "empty.txt"
    empty.write_text("  \n\n")
    with pytest.raises(CalibenchError, match="the held-out text is empty"):
        evaluate(str(tiny_model_dir), f"ppl:{empty}", offline=True)
