"""Errors a user can cause.

Everything the user can get wrong (a bad path, an unknown name, impossible
sizes, a corrupt artifact) raises :class:`CalibenchError`.  The CLI turns it into
one line on stderr and exit code 2; library users catch it like any exception.
Anything else escaping is a bug and keeps its traceback.
"""

from __future__ import annotations

from collections.abc import Callable


class CalibenchError(Exception):
    """A problem with the user's input: the message says what is wrong and what to do."""


class UnknownNameError(CalibenchError):
    """A name (source, model, asset, method...) that no registry knows."""


class CorruptArtifactError(CalibenchError):
    """An artifact on disk failed its integrity check."""


class TokenizerMismatchError(CalibenchError):
    """A calibration set used with a tokenizer other than the one it was made for."""


class CorpusTooShortError(CalibenchError):
    """A source cannot supply the requested number of windows."""


def did_you_mean(name: str, known: list[str]) -> str:
    """A short hint listing the known names, closest first."""
    import difflib

    close = difflib.get_close_matches(name, known, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return f"{hint}; known: {', '.join(sorted(known))}"


class ParameterError(CalibenchError):
    """A bad value for a named parameter of the Python API.

    The message names the parameter as the API spells it (``seq_len``); the
    CLI shows the same problem under its flag (``--seq-len``) by mapping
    ``param`` in one place (:func:`calibench.cli.flags.flag_for`).
    """

    def __init__(self, param: str, problem: str, allowed: list[str] | None = None):
        self.param = param
        self.problem = problem
        self.allowed = allowed  # the parameters that would have been accepted, when that is the problem
        super().__init__(self.render(str))

    def render(self, name: Callable[[str], str]) -> str:
        """The message with every parameter name passed through ``name`` (the CLI gives flags).

        A parameter that is not among ``allowed`` gets the closest allowed name as a did-you-mean hint.
        """
        if not self.allowed:
            return f"{name(self.param)} {self.problem}"
        import difflib

        close = difflib.get_close_matches(self.param, self.allowed, n=1) if self.param not in self.allowed else []
        hint = f" (did you mean '{name(close[0])}'?)" if close else ""
        return f"{name(self.param)} {self.problem}{hint} (its parameters: {', '.join(name(a) for a in self.allowed)})"
