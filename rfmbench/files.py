"""Files and folders we write: one atomic-write helper, and the checks on paths a user names.

Every derived file (leaderboard, run metadata, stored tuning, lock file, figure, cached dataset)
is written to a temporary sibling and moved into place with ``os.replace``, so a reader sees the
old file or the new one, never half of one. The temporary file is created with ``os.open(...,
0o666)``, so the kernel applies the umask exactly as for any other file (0644 under umask 022);
``tempfile.mkstemp`` would force 0600 and hide results from a group that shares them.

This module imports nothing of the package but ``errors``, so sources, suites and results can all
use it.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

from rfmbench.errors import BadOption

# A run id names files (RUN_ID.csv, RUN_ID.json, RUN_ID-leaderboard.csv): a plain file name that
# means the same on every file system and in a shell, so no separators, no leading dot, no spaces.
RUN_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.+=@")
# RUN_ID-leaderboard.csv, RUN_ID-selection/ and RUN_ID-features/ belong to run RUN_ID; a run
# named "x-leaderboard" would write its rows where run "x" writes its leaderboard.
RESERVED_ENDINGS = ("-leaderboard", "-selection", "-features")
RUN_ID_MAX = 200  # leaves room for "-leaderboard.csv" and ".lock" within NAME_MAX (255 bytes)


def _create_sibling(path: Path, suffix: str = ".tmp") -> Path:
    """Create a new, empty, uniquely named file beside ``path`` (mode from the umask)."""
    for _ in range(100):
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}{suffix}")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        return tmp
    raise FileExistsError(f"cannot create a temporary file beside {path}")  # pragma: no cover


@contextlib.contextmanager
def atomic_path(path: Path, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path beside ``path`` to write; on success move it onto ``path``.

    ``suffix`` ends the temporary name (writers that choose a format by suffix need the real
    one). On any error the temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _create_sibling(path, suffix)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_atomic(path: Path, data: str | bytes) -> None:
    """Write ``data`` (text as UTF-8) to ``path`` through a temporary file, synced, then move it."""
    if not isinstance(data, str | bytes):
        raise TypeError(f"write_atomic needs str or bytes, got {type(data).__name__}")
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            handle.write(data.encode("utf-8") if isinstance(data, str) else data)
            handle.flush()
            os.fsync(handle.fileno())


@contextlib.contextmanager
def atomic_dir(final: Path) -> Iterator[Path]:
    """Yield a new temporary folder beside ``final`` to fill, then move it onto ``final``.

    If another process creates ``final`` meanwhile, its copy is kept and ours removed. The
    folder is made with ``os.mkdir`` (mode from the umask), not ``tempfile.mkdtemp``'s 0700.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(100):
        tmp = final.with_name(f".{final.name}-{secrets.token_hex(6)}")
        try:
            os.mkdir(tmp, 0o777)
            break
        except FileExistsError:
            continue
    else:  # pragma: no cover
        raise FileExistsError(f"cannot create a temporary folder beside {final}")
    try:
        yield tmp
        if final.exists():  # another process finished first; keep its copy
            shutil.rmtree(tmp)
        else:
            os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def check_run_id(run_id: str) -> str:
    """Return ``run_id`` if it is a plain file name, else raise BadOption.

    Checked before any work: a run id with a separator would write outside the results folder,
    one starting with '.' or blank makes hidden or nameless files.
    """
    if not isinstance(run_id, str):
        raise BadOption(f"--run-id must be a name, got {run_id!r}")
    problem = None
    if not run_id:
        problem = "is empty"
    elif run_id != run_id.strip():
        problem = "starts or ends with white space"
    elif "/" in run_id or "\\" in run_id or os.sep in run_id:
        problem = "contains a path separator"
    elif run_id.startswith("."):
        problem = "starts with '.'"
    elif len(run_id) > RUN_ID_MAX:
        problem = f"is longer than {RUN_ID_MAX} characters"
    elif run_id.endswith(RESERVED_ENDINGS):
        problem = f"ends like a run's derived files ({', '.join(RESERVED_ENDINGS)})"
    elif not set(run_id) <= RUN_ID_CHARS:
        bad = next(c for c in run_id if c not in RUN_ID_CHARS)
        problem = f"contains {bad!r}"
    if problem:
        raise BadOption(
            f"--run-id must be a plain file name (letters, digits and -_.+=@, not starting "
            f"with '.'); {run_id!r} {problem}"
        )
    return run_id


def _nearest_existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_out_dir(path: Path, option: str = "--out") -> Path:
    """Return ``path`` if it is, or can become, a writable folder; else raise BadOption.

    Nothing is created here: the folder is made when the first file is written.
    """
    path = check_dir_option(path, option)
    base = _nearest_existing(path)
    if not os.access(base, os.W_OK | os.X_OK):
        raise BadOption(f"{option} '{path}' is not writable (no write permission on '{base}')")
    return path


def check_out_file(path: Path, option: str = "--out") -> Path:
    """Return ``path`` if a file can be written there; else raise BadOption."""
    path = Path(path).expanduser()
    if path.is_dir() or not path.name:
        raise BadOption(f"{option} must be a file name, but '{path}' is a folder")
    check_out_dir(path.parent, option)
    if path.exists() and not os.access(path, os.W_OK):
        raise BadOption(f"{option} '{path}' is not writable")
    return path


def check_dir_option(path: Path | None, option: str) -> Path | None:
    """Return ``path`` if it is None, a folder, or could become one; else raise BadOption."""
    if path is None:
        return None
    path = Path(path).expanduser()
    base = _nearest_existing(path)
    if not base.is_dir():
        what = "is a file" if base == path else f"is inside '{base}', a file"
        raise BadOption(f"{option} must be a folder, but '{path}' {what}")
    return path
