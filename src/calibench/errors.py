"""Errors a user can cause.

Everything the user can get wrong (a bad path, an unknown name, impossible
sizes, a corrupt artifact) raises :class:`CalibenchError`.  The CLI turns it into
one line on stderr and exit code 2; library users catch it like any exception.
Anything else escaping is a bug and keeps its traceback.
"""

from __future__ import annotations


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
