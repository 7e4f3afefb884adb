"""Predicting a calibration set's effect before compressing, and choosing a set within a budget.

* :mod:`.signals`: the registry of cheap signals (reconstruction error of the
  first k layers, activation coverage, outliers, set statistics);
* :mod:`.validate`: Spearman with a bootstrap CI, and held-out validation;
* :mod:`.study_signals`: the signals of a finished study (``calibench study signals``);
* :mod:`.report`: the study report's "which signals predict" sections;
* :mod:`.recommend` and :mod:`.card`: ``calibench recommend``.

    >>> from calibench.predict import recommend                          # doctest: +SKIP
    >>> result = recommend("smollm2-135m", "gptq", params={"bits": 4, "group_size": 64},
    ...                    candidates="wiki,code,self", budget=20, out="choice")  # doctest: +SKIP
    >>> result.chosen.label, result.comparison                           # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

from calibench.predict.recommend import recommend as run


def recommend(*args: Any, **kwargs: Any) -> Any:
    """See :func:`calibench.predict.recommend.recommend` (imported lazily: it pulls in torch)."""

    return run(*args, **kwargs)


__all__ = ["recommend"]
