"""The errors a user can cause. The CLI turns these, and only these, into one line and exit 2."""

from __future__ import annotations


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
