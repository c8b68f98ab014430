"""Data sources: each turns a dataset reference from a suite into a Task.

A source module exposes ``load(ref: DatasetRef, ctx: LoadContext) -> Task``; ``SOURCES`` maps the
``source = "..."`` of a suite file to it. Sources are the only place that reads data files or the
network.
"""

from __future__ import annotations

from collections.abc import Callable

from rfmbench.sources.base import DatasetRef, LoadContext
from rfmbench.tasks import Task

__all__ = ["DatasetRef", "LoadContext", "Loader", "get_loader"]


Loader = Callable[[DatasetRef, LoadContext], Task]


def get_loader(source: str) -> Loader:
    """The ``load`` function of a source, imported lazily so optional sources cost nothing."""
    from rfmbench.errors import unknown

    if source == "embedded":
        from rfmbench.sources.embedded import load
    elif source == "openml":
        from rfmbench.sources.openml import load
    elif source == "uci121":
        from rfmbench.sources.uci121 import load
    elif source == "local":
        from rfmbench.sources.local import load
    elif source == "features":
        from rfmbench.sources.features import load
    else:
        raise unknown("source", source, ["embedded", "openml", "uci121", "local", "features"])
    return load
