"""Local files: CSV (also .tsv, .csv.gz), Parquet and ARFF, with a named target column.

Categorical columns are detected (text, booleans, ARFF nominals, pandas categories, and integer
columns with at most ``LOW_CARDINALITY`` distinct values) unless the user names them. The task kind
is classification when the target is not numeric or is integer-valued with at most
``CLASS_LIMIT`` distinct values, regression otherwise, unless the user says. Rows with a missing
target are dropped. Outer splits are seeded K-fold, as for the embedded source.

A suite entry (``source = "local"``) or ``run --data FILE`` gives ``path``, ``target`` and optionally
``categorical`` (a list of column names) and ``kind``.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from rfmbench.errors import BadOption, DataSourceError, one_line
from rfmbench.sources.base import DatasetRef, LoadContext
from rfmbench.tasks import Task, TaskKind, kfold_splits

log = logging.getLogger(__name__)

LOW_CARDINALITY = 10  # an integer feature with this many distinct values or fewer is categorical
CLASS_LIMIT = 20  # an integer target with this many distinct values or fewer is a class label
SUFFIXES = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".txt": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".arff": "arff",
}
KINDS = ("classification", "regression")


def file_format(path: Path) -> str:
    """'csv', 'tsv', 'parquet' or 'arff' from the file name (a trailing .gz/.bz2/.zip/.xz is ok)."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in (".gz", ".bz2", ".zip", ".xz", ".zst"):
        suffixes = suffixes[:-1]
    if suffixes and suffixes[-1] in SUFFIXES:
        return SUFFIXES[suffixes[-1]]
    raise DataSourceError(
        f"cannot tell the format of {path}: expected a name ending in {', '.join(sorted(SUFFIXES))}"
    )


def read_table(path: Path) -> tuple[pd.DataFrame, set[str]]:
    """Read a data file -> (frame, columns its own schema calls categorical)."""
    if not path.is_file():
        raise DataSourceError(f"data file {path} does not exist")
    if path.stat().st_size == 0:
        raise DataSourceError(f"data file {path} is empty")
    fmt = file_format(path)
    try:
        if fmt == "arff":
            return _read_arff(path)
        if fmt == "parquet":
            frame = pd.read_parquet(path)
        else:
            frame = pd.read_csv(path, sep="\t" if fmt == "tsv" else ",")
    except pd.errors.EmptyDataError:
        raise DataSourceError(f"data file {path} is empty") from None
    except DataSourceError:
        raise
    except Exception as exc:  # parsers raise many types (ArrowInvalid, UnicodeDecodeError, ...)
        reason = one_line(str(exc)) or type(exc).__name__
        raise DataSourceError(f"cannot read {path} as {fmt.upper()}: {reason}") from None
    return frame, {c for c in frame.columns if isinstance(frame[c].dtype, pd.CategoricalDtype)}


def _read_arff(path: Path) -> tuple[pd.DataFrame, set[str]]:
    import arff

    opener = _open_text(path)
    with opener as handle:
        data = arff.load(handle)
    names = [name for name, _ in data["attributes"]]
    frame = pd.DataFrame(data["data"], columns=names)
    nominal = set()
    for name, kind in data["attributes"]:
        if isinstance(kind, list):  # nominal: the list of its values
            nominal.add(name)
            frame[name] = pd.Categorical(frame[name], categories=kind)
        elif str(kind).upper() in ("NUMERIC", "REAL", "INTEGER"):
            frame[name] = pd.to_numeric(frame[name], errors="coerce")
    return frame, nominal


def _open_text(path: Path) -> Any:
    if path.suffix.lower() == ".gz":
        import gzip

        return gzip.open(path, "rt", encoding="utf-8")
    return path.open(encoding="utf-8")


def detect_categorical(X: pd.DataFrame, declared: set[str]) -> tuple[str, ...]:
    """Columns treated as categorical: declared ones, text/bool, and low-cardinality integers."""
    found = []
    for column in X.columns:
        values = X[column]
        if column in declared or not pd.api.types.is_numeric_dtype(values):
            found.append(column)
        elif pd.api.types.is_bool_dtype(values):
            found.append(column)
        elif _integer_valued(values) and values.nunique(dropna=True) <= LOW_CARDINALITY:
            found.append(column)
    return tuple(found)


def infer_kind(y: pd.Series) -> TaskKind:
    """Classification for a non-numeric target or an integer one with few distinct values."""
    if pd.api.types.is_bool_dtype(y) or not pd.api.types.is_numeric_dtype(y):
        return "classification"
    if _integer_valued(y) and y.nunique(dropna=True) <= CLASS_LIMIT:
        return "classification"
    return "regression"


def _integer_valued(values: pd.Series) -> bool:
    if pd.api.types.is_integer_dtype(values):
        return True
    if not pd.api.types.is_float_dtype(values):
        return False
    present = values.dropna().to_numpy(dtype=np.float64)
    return bool(len(present)) and bool(
        np.all(np.isfinite(present) & (present == np.round(present)))
    )


def check_file_options(
    data: Path | None,
    target: str | None,
    categorical: list[str] | None = None,
    kind: str | None = None,
) -> None:
    """Check ``--data`` and its companions before anything is read: named together, the file
    there, its format known, the kind one of ``KINDS``."""
    if data is None:
        for option, value in (
            ("--target", target),
            ("--categorical", categorical),
            ("--kind", kind),
        ):
            if value is not None:
                raise BadOption(f"{option} needs --data FILE")
        return
    path = Path(data).expanduser()
    if not path.is_file():
        what = "is a folder" if path.is_dir() else "does not exist"
        raise DataSourceError(f"--data: data file {data} {what}")
    try:
        file_format(path)
    except DataSourceError as exc:
        raise DataSourceError(f"--data: {exc}") from None
    if target is None or not target.strip():
        raise BadOption("--data needs --target COLUMN", hint="pass the name of the target column")
    if kind is not None and kind not in KINDS:
        raise BadOption(f"--kind must be one of {', '.join(KINDS)}, got '{kind}'")


def file_ref(
    path: Path,
    target: str | None,
    categorical: list[str] | None = None,
    kind: str | None = None,
) -> DatasetRef:
    """The reference ``run --data FILE --target COL`` builds: named ``file:<file name>``."""
    params: dict[str, Any] = {"path": str(path), "target": target}
    if categorical is not None:
        params["categorical"] = list(categorical)
    if kind is not None:
        params["kind"] = kind
    return DatasetRef(name=f"file:{Path(path).name}", params=params)


def load(ref: DatasetRef, ctx: LoadContext) -> Task:
    """Read a local file into a Task with seeded outer folds."""
    params = ref.params
    path = Path(str(params.get("path", ""))).expanduser()
    if not path.is_absolute() and ctx.data_dir is not None:
        path = Path(ctx.data_dir).expanduser() / path
    target = params.get("target")
    if not target:
        raise BadOption(f"dataset '{ref.name}' needs a target column", hint="pass --target COLUMN")
    frame, declared = read_table(path)
    if len(frame) == 0 or frame.shape[1] == 0:
        raise DataSourceError(f"data file {path} is empty (no rows)")
    if target not in frame.columns:
        shown = ", ".join(map(str, list(frame.columns)[:12]))
        more = ", ..." if frame.shape[1] > 12 else ""
        raise DataSourceError(
            f"target column '{target}' is not in {path}; its columns are: {shown}{more}"
        )
    missing_target = frame[target].isna()
    if missing_target.all():
        raise DataSourceError(f"target column '{target}' of {path} has no values")
    if missing_target.any():
        log.warning("%s: dropping %d rows with no target", path, int(missing_target.sum()))
        frame = frame.loc[~missing_target].reset_index(drop=True)
    X = frame.drop(columns=[target])
    X.columns = [str(c) for c in X.columns]
    if X.shape[1] == 0:
        raise DataSourceError(f"{path} has no feature columns besides the target '{target}'")
    y_series = frame[target]
    kind = params.get("kind") or infer_kind(y_series)
    if kind not in KINDS:
        raise BadOption(f"--kind must be one of {', '.join(KINDS)}, got '{kind}'")
    categorical = _categorical(X, params.get("categorical"), declared)
    y = _target_values(y_series, kind, path, target, ctx.folds)
    if len(y) < ctx.folds:
        raise DataSourceError(f"{path} has {len(y)} rows, fewer than the {ctx.folds} outer folds")
    return Task(
        name=ref.name,
        kind=kind,
        X=X,
        y=y,
        categorical=categorical,
        splits=kfold_splits(y, kind, ctx.folds, ctx.seed),
        source=f"file {path.resolve()} sha256:{_sha256(path)[:16]}",
    )


def _target_values(
    y_series: pd.Series, kind: str, path: Path, target: str, folds: int
) -> np.ndarray:
    """The target column as the task's ``y``, checked for its kind."""
    if kind == "classification":
        if y_series.nunique() < 2:
            raise DataSourceError(
                f"target column '{target}' of {path} has a single class "
                f"({_plain(y_series.iloc[0])!r}); nothing to classify"
            )
        smallest = int(y_series.value_counts().min())
        if smallest < folds:
            log.warning(
                "%s: the rarest class has %d rows, fewer than %d folds", path, smallest, folds
            )
        return np.asarray(y_series.astype(object) if not _integer_valued(y_series) else y_series)
    if not pd.api.types.is_numeric_dtype(y_series) or pd.api.types.is_bool_dtype(y_series):
        raise DataSourceError(
            f"--kind regression needs a numeric target; column '{target}' of {path} is not"
        )
    return y_series.to_numpy(dtype=np.float64)


def _categorical(X: pd.DataFrame, chosen: Any, declared: set[str]) -> tuple[str, ...]:
    if chosen is None:
        return detect_categorical(X, {str(c) for c in declared})
    names = [chosen] if isinstance(chosen, str) else list(chosen)
    unknown_columns = [name for name in names if name not in X.columns]
    if unknown_columns:
        raise BadOption(
            f"--categorical names column '{unknown_columns[0]}', which is not a feature; "
            f"features are: {', '.join(list(X.columns)[:12])}"
        )
    return tuple(names)


def _plain(value: Any) -> Any:
    """A numpy scalar as the Python value it holds, so messages show ``2``, not ``np.int64(2)``."""
    return value.item() if isinstance(value, np.generic) else value


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
