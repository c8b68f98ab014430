"""Results on disk: one tidy CSV row per (dataset, fold, model), appended crash-safe.

Each finished job is one complete line, written with a single ``write`` under a file lock and
flushed with ``fsync`` before the next job starts, so a kill leaves at worst no line, never half of
one, and two runs writing the same file cannot interleave rows. Derived files (leaderboards, run
metadata) are written to a temporary file and moved into place (``files.write_atomic``, re-exported
here), with the mode the umask gives any other file.
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from filelock import FileLock

from rfmbench.errors import ResultsFileError
from rfmbench.files import write_atomic as write_atomic  # re-exported: the one writer
from rfmbench.metrics import ALL_METRICS

COLUMNS: tuple[str, ...] = (
    "run_id",
    "dataset",
    "task_kind",
    "fold",
    "model",
    "status",
    "error",
    *ALL_METRICS,
    "params",
    # How the refit's kernel systems were solved (RFM, kernel ridge): exact, exact+repaired (the
    # residual check refined or re-solved in float64), pcg(steps=N), partitioned(leaves=N; ...).
    "solver",
    "inner_cv_score",
    # Tasks with known relevant features (the features suite), models that expose features: see
    # rfmbench.features (1 = all of the learned feature matrix where the truth is).
    "feature_recovery",
    # The MLP's Neural Feature Ansatz on those tasks: correlation of W1^T W1 with its AGOP.
    "nfa_correlation",
    # RFM: JSON lists, one score per iteration (0 = M = I) of the final fit, as its validation
    # score (accuracy, or -MSE on the standardized target): on its validation rows (empty when the
    # refit had none), and on the test fold, recorded only, never used to select anything.
    "iteration_val_scores",
    "iteration_test_scores",
    "n_candidates",
    "n_failed_candidates",
    "fit_seconds",
    "predict_seconds",
    "tuning_seconds",
    "tuning_reused",  # True when the job used a tuning another job made (a shared protocol)
    "peak_memory_mb",
    "n_train",
    "n_test",
    "n_features",
    "n_classes",
    "device",
    "seed",
    "source",
    "rfmbench_version",
    "started_at",
)
STATUSES = ("ok", "failed", "timeout")


def run_path(out: Path, run_id: str) -> Path:
    return Path(out) / f"{run_id}.csv"


def feature_matrix_path(out: Path, run_id: str, dataset: str, model: str, fold: int) -> Path:
    """Where the driver keeps a job's learned feature matrix (d x d, ``.npy``)."""
    name = f"{dataset}--{model}--fold{fold}.npy".replace("/", "_")  # uci121/abalone: one file
    return Path(out) / f"{run_id}-features" / name


def write_feature_matrix(path: Path, matrix: np.ndarray) -> None:
    """Write one feature matrix atomically (``numpy.load`` reads it back)."""
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(matrix, dtype=np.float64))
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, buffer.getvalue())


def _lock(path: Path) -> FileLock:
    return FileLock(str(path) + ".lock", timeout=60)


def append_row(path: Path, row: dict[str, Any]) -> None:
    """Append one complete row (and the header when the file is new), durably."""
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, extrasaction="raise", lineterminator="\n")
    with _lock(path):
        _repair_torn_tail(path)
        if not path.exists() or path.stat().st_size == 0:
            writer.writeheader()
        else:
            _check_header(path)
        writer.writerow({**dict.fromkeys(COLUMNS, ""), **row})  # a key not in COLUMNS raises
        with open(path, "a", encoding="utf-8", newline="") as handle:
            handle.write(buffer.getvalue())
            handle.flush()
            os.fsync(handle.fileno())


def _check_header(path: Path) -> None:
    """Refuse to append rows under another version's columns: they would land in wrong ones."""
    with open(path, encoding="utf-8", newline="") as handle:
        header = next(csv.reader(handle), [])
    if tuple(header) != COLUMNS:
        raise ResultsFileError(
            f"{path} has other columns than this version of rfmbench writes",
            hint="resume it with the version that wrote it, or use a new --run-id",
        )


def _torn_tail(data: bytes) -> int:
    """Length of the unfinished row a killed writer left at the end of ``data`` (0 if none).

    An unterminated last line with fewer fields than the header is unfinished; one with all its
    fields (a file edited by hand) is kept.
    """
    if not data or data.endswith(b"\n"):
        return 0
    start = data.rfind(b"\n") + 1

    def fields(line: bytes) -> int:
        return len(next(csv.reader([line.decode("utf-8", errors="replace")])))

    if start and fields(data[start:]) >= fields(data.split(b"\n", 1)[0]):
        return 0
    return len(data) - start


def _repair_torn_tail(path: Path) -> None:
    """Cut an unfinished last row, or end a whole one, so the next row starts on its own line."""
    if not path.exists() or path.stat().st_size == 0:
        return
    with open(path, "rb+") as handle:
        handle.seek(-1, os.SEEK_END)
        if handle.read(1) == b"\n":
            return
        handle.seek(0)
        data = handle.read()  # the whole file, only after a kill
        torn = _torn_tail(data)
        if torn:
            handle.truncate(len(data) - torn)
        else:
            handle.write(b"\n")


def read_run(path: Path) -> pd.DataFrame:
    """Read a results CSV, dropping malformed lines (a torn last line after a kill)."""
    path = Path(path)
    if not path.exists():
        raise ResultsFileError(f"results file not found: {path}")
    try:
        data = path.read_bytes()
        data = data[: len(data) - _torn_tail(data)]
        names = {"run_id": str, "dataset": str, "model": str, "error": str}  # "007" stays "007"
        frame = pd.read_csv(
            io.BytesIO(data), on_bad_lines="skip", keep_default_na=True, dtype=names
        )
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise ResultsFileError(f"cannot read results file {path}: {exc}") from None
    missing = {"dataset", "fold", "model", "status"} - set(frame.columns)
    if missing:
        raise ResultsFileError(
            f"{path} is not an rfmbench results file (missing {', '.join(sorted(missing))})"
        )
    frame = frame[frame["status"].isin(STATUSES)]
    return frame.reset_index(drop=True)


def write_frame(path: Path, frame: pd.DataFrame) -> None:
    """Write a data frame as CSV atomically."""
    write_atomic(path, frame.to_csv(index=False))


def write_metadata(path: Path, metadata: dict[str, Any]) -> None:
    """Write the run's configuration and environment as JSON atomically."""
    write_atomic(path, json.dumps(metadata, indent=2, sort_keys=True, default=str) + "\n")


def expand_paths(patterns: list[str]) -> list[Path]:
    """Paths as given, with glob patterns the shell left alone expanded (sorted, no repeats).

    Files that look like ours but are not results (``*-leaderboard.csv``) are skipped when they
    come from a pattern; named outright, they are read and rejected with a clear message.
    """
    import glob

    paths: list[Path] = []
    for pattern in patterns:
        if Path(pattern).exists() or not glob.has_magic(pattern):
            if not Path(pattern).is_file():
                raise ResultsFileError(f"results file not found: {pattern}")
            paths.append(Path(pattern))
            continue
        matches = sorted(p for p in glob.glob(pattern) if not p.endswith("-leaderboard.csv"))
        if not matches:
            raise ResultsFileError(f"no results file matches {pattern}")
        paths += [Path(p) for p in matches]
    return list(dict.fromkeys(paths))
