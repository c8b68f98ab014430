"""Where downloaded data lives, how it is written safely, and a quick check that a host answers.

The cache root is ``--cache-dir``, else ``$RFMBENCH_CACHE_DIR``, else ``datasets/cache`` of the
repository (an editable install), else ``~/.cache/rfmbench``.
"""

from __future__ import annotations

import os
import socket
import threading
import urllib.parse
from collections.abc import Callable
from pathlib import Path

from rfmbench.errors import DataSourceError
from rfmbench.files import atomic_dir

CACHE_ENV = "RFMBENCH_CACHE_DIR"
PROBE_SECONDS = 8.0  # a reachable host answers a TCP connect well within this


def cache_root(cache_dir: Path | None = None) -> Path:
    """The cache root: the argument, ``$RFMBENCH_CACHE_DIR``, the repo's datasets/cache, ~/.cache."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    repo = Path(__file__).resolve().parents[2]
    if (repo / "datasets" / "suites").is_dir():
        return repo / "datasets" / "cache"
    return Path.home() / ".cache" / "rfmbench"


def write_dir_atomically(final: Path, fill: Callable[[Path], None]) -> None:
    """Let ``fill`` write a folder's files into a temporary sibling, then move it into place.

    A reader sees either no folder or a complete one, even if the writer is killed half-way.
    """
    with atomic_dir(final) as tmp:
        fill(tmp)


def probe(url: str, *, what: str, hint: str, seconds: float = PROBE_SECONDS) -> None:
    """Raise DataSourceError within about ``seconds`` if ``url``'s host does not accept a connection.

    The DNS lookup and the connect run in a daemon thread so that neither can hang the caller
    (HTTP clients here have no timeout of their own).
    """
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    outcome: list[BaseException | None] = []

    def connect() -> None:
        try:
            socket.create_connection((host, port), timeout=seconds).close()
            outcome.append(None)
        except OSError as exc:
            outcome.append(exc)

    thread = threading.Thread(target=connect, daemon=True)
    thread.start()
    thread.join(seconds + 1.0)
    if not outcome:
        raise DataSourceError(f"cannot reach {what} at {host}:{port}: no answer", hint=hint)
    if outcome[0] is not None:
        reason = (
            getattr(outcome[0], "strerror", None) or str(outcome[0]) or type(outcome[0]).__name__
        )
        raise DataSourceError(f"cannot reach {what} at {host}:{port}: {reason}", hint=hint)
