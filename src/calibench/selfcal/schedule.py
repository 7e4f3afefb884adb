"""The temperature schedule of self-calibration, as pure math.

For the i-th generated token of a generation (i = 0 for the first token after
the start token), the sampling temperature is

    t_i = t_init + (i / n) * (t_final - t_init)   for i < n
    t_i = t_final                                 for i >= n

with n = ``schedule_tokens``.  n = 0 means a constant ``t_final``.  A
temperature of 0 means greedy decoding (argmax) at that step.
"""

from __future__ import annotations

from collections.abc import Sequence

from calibench.core.errors import ParameterError


def check_schedule(t_init: float, t_final: float, schedule_tokens: int) -> None:
    """Refuse temperatures below zero and a negative schedule length (one-line user errors)."""
    for name, value in (("t_init", t_init), ("t_final", t_final)):
        if not value >= 0.0:  # also catches NaN
            raise ParameterError(name, f"must be zero or above (0 means greedy), got {value}")
        if value == float("inf"):
            raise ParameterError(name, f"must be finite, got {value}")
    if schedule_tokens < 0:
        raise ParameterError("schedule_tokens", f"must be zero or above, got {schedule_tokens}")


def temperature_at(i: int, t_init: float, t_final: float, schedule_tokens: int) -> float:
    """Temperature of generated token ``i`` (0-based index within its generation)."""
    if i < 0:
        raise ValueError(f"token index must be >= 0, got {i}")
    if i >= schedule_tokens:
        return float(t_final)
    return float(t_init) + (i / schedule_tokens) * (float(t_final) - float(t_init))


def temperatures(steps: Sequence[int], t_init: float, t_final: float, schedule_tokens: int) -> list[float]:
    """``temperature_at`` for each index in ``steps``."""
    return [temperature_at(int(i), t_init, t_final, schedule_tokens) for i in steps]
