"""The errors a user can cause. The CLI turns these, and only these, into one line and exit 2."""

from __future__ import annotations

import operator

# Longest error text kept in a results row or a message: enough for any exception's own line,
# short enough that one bad traceback cannot bloat a CSV.
MAX_ERROR_CHARS = 500


def one_line(error: BaseException | str, limit: int = MAX_ERROR_CHARS) -> str:
    """An exception (``Type: message``) or a text on one line, white space collapsed, capped."""
    text = f"{type(error).__name__}: {error}" if isinstance(error, BaseException) else error
    return " ".join(str(text).split())[:limit]


class RfmbenchError(Exception):
    """Base of every user-facing error; ``hint`` says how to fix it."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


class UnknownName(RfmbenchError):
    """An unknown suite, model, dataset or metric name."""


class BadOption(RfmbenchError):
    """An option value that cannot be used."""


class DeviceError(RfmbenchError):
    """The requested device does not exist here (e.g. ``cuda`` with no GPU)."""


class DataSourceError(RfmbenchError):
    """A dataset could not be read or fetched (bad file, no network, cache miss)."""


class ResultsFileError(RfmbenchError):
    """A results file is unreadable or belongs to an incompatible run."""


def unknown(kind: str, name: str, known: list[str]) -> UnknownName:
    """Build the standard 'unknown X' error listing the valid names."""
    return UnknownName(f"unknown {kind} '{name}'; choose from: {', '.join(sorted(known))}")


SEED_MAX = 2**32 - 1  # numpy's and scikit-learn's seeds are unsigned 32-bit integers


def check_seed(seed: int, option: str = "--seed") -> int:
    """Return ``seed`` if it is an integer in 0..2**32-1, else raise BadOption."""
    try:
        value = operator.index(seed)  # int or a numpy integer; not a float, not a bool's text
    except TypeError:
        value = None
    if value is None or isinstance(seed, bool) or not 0 <= value <= SEED_MAX:
        raise BadOption(f"{option} must be an integer from 0 to {SEED_MAX}, got {seed}")
    return int(value)
