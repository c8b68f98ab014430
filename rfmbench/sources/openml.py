"""The OpenML source: OpenML *tasks* (data, target and official train/test splits), cached locally.

A suite entry names a task id (``task_id = 31``) and optionally ``repeat`` (default 0) and
``repeats`` (default 1). The outer folds are the first ``--folds`` official folds (all of them when
the task has fewer) of each of the ``repeats`` repeats from ``repeat`` on: one repeat by default,
every repeat TabArena scores where its suite says ``repeats = 10`` (or 3). The folds are numbered
repeat by repeat (``fold = (repeat - first) * folds + fold_in_repeat``: TabArena's r1f0 is fold 3
of a 3-fold task), so a results row's ``fold`` names one split and the leaderboard's mean per
dataset runs over every repeat and fold; ``Split.repeat`` keeps the repeat.

Each fetched task is stored once under ``CACHE/openml/<server>/task-<id>/`` as
``data.parquet`` (features and target, categoricals as pandas categories), ``splits.parquet``
(repeat, fold, row, test) and ``meta.json`` (task id, dataset id and name, target, kind,
categorical columns, sizes, URLs). Loading reads only that folder when it exists; ``offline``
never goes further. The ``openml`` client's own download cache sits in ``CACHE/openml-client``.
The server is the ``openml`` client's (``openml.config.server``) unless ``$RFMBENCH_OPENML_SERVER``
names another.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import urllib.parse
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from rfmbench.errors import DataSourceError, one_line
from rfmbench.sources.base import DatasetRef, LoadContext
from rfmbench.sources.cache import cache_root, probe, write_dir_atomically
from rfmbench.tasks import Split, Task

SERVER_ENV = "RFMBENCH_OPENML_SERVER"  # e.g. https://test.openml.org/api/v1/xml
CLIENT_RETRIES = 3  # the client sleeps 1 s, then 2 s between tries ("human" policy)
FETCH_HINT = "check the network, or load from a cache with --cache-dir / $RFMBENCH_CACHE_DIR"


@dataclass(frozen=True)
class CachedTask:
    """One task as stored in our cache: the data (features + target), the splits and metadata."""

    frame: pd.DataFrame
    splits: pd.DataFrame
    meta: dict[str, Any]


def current_server() -> str:
    """The OpenML server: ``$RFMBENCH_OPENML_SERVER``, else the ``openml`` client's setting."""
    import openml

    return os.environ.get(SERVER_ENV) or str(openml.config.server)


def server_key(server: str) -> str:
    """A folder name for a server: its host (and port), e.g. ``www.openml.org``."""
    netloc = urllib.parse.urlsplit(server).netloc or server
    return netloc.replace(":", "_")


def task_dir(root: Path, task_id: int, server: str | None = None) -> Path:
    """Where our cache keeps ``task_id`` of ``server`` (the configured one by default)."""
    return root / "openml" / server_key(server or current_server()) / f"task-{task_id}"


def task_id_of(ref: DatasetRef) -> int:
    """The OpenML task id of a suite entry."""
    value = ref.params.get("task_id")
    try:
        return int(value)
    except (TypeError, ValueError):
        raise DataSourceError(
            f"dataset '{ref.name}' has no valid OpenML task id (got {value!r})",
            hint="write `task_id = <int>` in its suite entry",
        ) from None


def read_cached(root: Path, task_id: int) -> CachedTask | None:
    """The cached task, or None when it is not (completely) in the cache."""
    folder = task_dir(root, task_id)
    paths = [folder / name for name in ("meta.json", "data.parquet", "splits.parquet")]
    if not all(path.is_file() for path in paths):
        return None
    try:
        meta = json.loads(paths[0].read_text())
        return CachedTask(pd.read_parquet(paths[1]), pd.read_parquet(paths[2]), meta)
    except (OSError, ValueError) as exc:
        raise DataSourceError(
            f"cached OpenML task {task_id} in {folder} is unreadable: {exc}",
            hint=f"delete {folder} and fetch it again",
        ) from None


def is_cached(root: Path, task_id: int) -> bool:
    return all(
        (task_dir(root, task_id) / name).is_file()
        for name in ("meta.json", "data.parquet", "splits.parquet")
    )


def load(ref: DatasetRef, ctx: LoadContext) -> Task:
    """Load an OpenML task from the cache, fetching it first unless ``ctx.offline``."""
    task_id = task_id_of(ref)
    root = cache_root(ctx.cache_dir)
    stored = read_cached(root, task_id)
    if stored is None:
        if ctx.offline:
            raise DataSourceError(
                f"OpenML task {task_id} ('{ref.name}') is not in the cache "
                f"{task_dir(root, task_id)} and --offline forbids the network",
                hint=f"run `rfmbench datasets fetch --suite SUITE --datasets {ref.name}` "
                "(or without --offline) where OpenML is reachable, with the same --cache-dir",
            )
        stored = fetch_task(task_id, root)
    return to_task(ref, stored, ctx)


def to_task(ref: DatasetRef, stored: CachedTask, ctx: LoadContext) -> Task:
    """Turn a cached task into a Task: the first ``ctx.folds`` folds of each chosen repeat."""
    meta = stored.meta
    target = meta["target"]
    X = stored.frame.drop(columns=[target])
    y = np.asarray(stored.frame[target])
    if meta["kind"] == "classification":
        y = y.astype(object)
    repeats = chosen_repeats(ref, meta)
    n_folds = min(ctx.folds, meta["n_folds"])
    by_split = stored.splits.groupby(["repeat", "fold"], sort=False)
    outer = []
    for repeat in repeats:
        for fold in range(n_folds):
            rows = by_split.get_group((repeat, fold))
            test = np.sort(rows.loc[rows["test"], "row"].to_numpy(dtype=np.int64))
            train = np.sort(rows.loc[~rows["test"], "row"].to_numpy(dtype=np.int64))
            outer.append(Split(len(outer), train, test, repeat))
    categorical = tuple(c for c in meta["categorical"] if c in X.columns)
    if len(repeats) == 1:  # the wording every single-repeat results row has always carried
        which = f"repeat {repeats[0]}, folds 0-{n_folds - 1} of {meta['n_folds']}"
    else:
        which = (
            f"repeats {repeats[0]}-{repeats[-1]} x folds 0-{n_folds - 1} of {meta['n_folds']}, "
            f"fold = (repeat - {repeats[0]}) * {n_folds} + fold in repeat"
        )
    return Task(
        name=ref.name,
        kind=meta["kind"],
        X=X,
        y=y,
        categorical=categorical,
        splits=tuple(outer),
        source=(
            f"openml task {meta['task_id']} (dataset {meta['dataset_id']} "
            f"'{meta['dataset_name']}', {which}) {meta['url']}"
        ),
    )


def chosen_repeats(ref: DatasetRef, meta: dict[str, Any]) -> list[int]:
    """The repeats a suite entry asks for: ``repeats`` of them from ``repeat`` (defaults 0 and 1)."""
    try:
        first = int(ref.params.get("repeat", 0))
        count = int(ref.params.get("repeats", 1))
    except (TypeError, ValueError):
        raise DataSourceError(
            f"dataset '{ref.name}': `repeat` and `repeats` must be whole numbers "
            f"(got {ref.params.get('repeat')!r}, {ref.params.get('repeats')!r})"
        ) from None
    available = int(meta["n_repeats"])
    if count < 1:
        raise DataSourceError(f"dataset '{ref.name}': `repeats = {count}` must be at least 1")
    if not 0 <= first < available:
        raise DataSourceError(
            f"OpenML task {meta['task_id']} has {available} repeat(s); "
            f"repeat {first} does not exist"
        )
    if first + count > available:
        raise DataSourceError(
            f"OpenML task {meta['task_id']} has {available} repeat(s); dataset '{ref.name}' "
            f"asks for {count} from repeat {first}"
        )
    return list(range(first, first + count))


@contextlib.contextmanager
def client(root: Path) -> Iterator[Any]:
    """The ``openml`` module set up to cache under ``root`` with few retries; restored after."""
    import openml

    config = openml.config
    saved = (
        config._root_cache_directory,
        config.retry_policy,
        config.connection_n_retries,
        config.server,
    )
    config.server = current_server()
    config.set_root_cache_directory(root / "openml-client")
    config.set_retry_policy("human", CLIENT_RETRIES)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            yield openml
    finally:
        config.set_root_cache_directory(saved[0])
        config.set_retry_policy(saved[1], saved[2])
        config.server = saved[3]


def fetch_task(task_id: int, root: Path) -> CachedTask:
    """Download ``task_id`` through the ``openml`` client and store it in our cache."""
    import requests

    with client(root) as openml:
        server = openml.config.server
        client_task_xml = Path(openml.config.get_cache_directory(), "tasks", str(task_id))
        if not (client_task_xml / "task.xml").is_file():
            probe(server, what="the OpenML server", hint=FETCH_HINT)
        try:
            task = openml.tasks.get_task(task_id, download_data=True, download_splits=True)
            kind = _kind(task, openml)
            dataset = task.get_dataset()
            X, y, categorical_mask, names = dataset.get_data(target=task.target_name)
            split = task.download_split()
        except (openml.exceptions.PyOpenMLError, requests.exceptions.RequestException) as exc:
            message = one_line(str(exc))
            raise DataSourceError(
                f"cannot fetch OpenML task {task_id} from {server}: {message}", hint=FETCH_HINT
            ) from None
    frame = X.copy()
    frame[task.target_name] = y
    categorical = [name for name, is_cat in zip(names, categorical_mask, strict=True) if is_cat]
    splits = _split_frame(split)
    base = server.split("/api/")[0]
    meta = {
        "task_id": task_id,
        "dataset_id": int(dataset.dataset_id),
        "dataset_name": dataset.name,
        "dataset_version": dataset.version,
        "target": task.target_name,
        "kind": kind,
        "categorical": categorical,
        "class_labels": list(getattr(task, "class_labels", None) or []),
        "n_rows": int(len(frame)),
        "n_features": int(X.shape[1]),
        "n_repeats": int(split.repeats),
        "n_folds": int(split.folds),
        "estimation_procedure": task.estimation_procedure.get("type"),
        "server": server,
        "url": f"{base}/t/{task_id}",
        "data_url": dataset.url,
        "fetched_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "openml_version": metadata.version("openml"),
    }

    def fill(folder: Path) -> None:
        frame.to_parquet(folder / "data.parquet", index=False)
        splits.to_parquet(folder / "splits.parquet", index=False)
        (folder / "meta.json").write_text(json.dumps(meta, indent=2, default=str) + "\n")

    write_dir_atomically(task_dir(root, task_id, server), fill)
    stored = read_cached(root, task_id)
    assert stored is not None  # just written
    return stored


def _kind(task: Any, openml: Any) -> str:
    kinds = {
        openml.tasks.TaskType.SUPERVISED_CLASSIFICATION: "classification",
        openml.tasks.TaskType.SUPERVISED_REGRESSION: "regression",
    }
    if task.task_type_id not in kinds:
        raise DataSourceError(
            f"OpenML task {task.task_id} is a '{task.task_type}' task; rfmbench needs "
            "supervised classification or regression"
        )
    return kinds[task.task_type_id]


def _split_frame(split: Any) -> pd.DataFrame:
    """OpenML's nested split (repeat -> fold -> sample 0 -> (train, test)) as a long table."""
    parts = []
    for repeat in range(split.repeats):
        for fold in range(split.folds):
            train, test = split.get(repeat=repeat, fold=fold, sample=0)
            rows = np.concatenate([train, test]).astype(np.int32)
            parts.append(
                pd.DataFrame(
                    {
                        "repeat": np.int16(repeat),
                        "fold": np.int16(fold),
                        "row": rows,
                        "test": np.r_[np.zeros(len(train), bool), np.ones(len(test), bool)],
                    }
                )
            )
    return pd.concat(parts, ignore_index=True)


def resolve_suite(
    suite_id: int | str,
    root: Path,
    *,
    max_rows: int | None = None,
    max_features: int | None = None,
) -> list[dict[str, Any]]:
    """The tasks of OpenML benchmark suite ``suite_id`` that pass the size filters (needs network).

    Returns one record per kept task: task_id, dataset, dataset_id, rows, features (the target not
    counted), classes (0 for regression), in the suite's order.
    """
    import requests

    with client(root) as openml:
        server = openml.config.server
        probe(server, what="the OpenML server", hint=FETCH_HINT)
        try:
            task_ids = list(openml.study.get_suite(suite_id).tasks or [])
            listing = openml.tasks.list_tasks(task_id=task_ids, output_format="dataframe")
        except (openml.exceptions.PyOpenMLError, requests.exceptions.RequestException) as exc:
            message = one_line(str(exc))
            raise DataSourceError(
                f"cannot resolve OpenML suite {suite_id} on {server}: {message}", hint=FETCH_HINT
            ) from None
    by_id = {int(row["tid"]): row for _, row in listing.iterrows()}
    records = []
    for task_id in task_ids:
        row = by_id.get(int(task_id))
        if row is None:
            continue
        rows = _int_or_none(row.get("NumberOfInstances"))
        features = _int_or_none(row.get("NumberOfFeatures"))
        features = None if features is None else features - 1  # OpenML counts the target
        if max_rows is not None and (rows is None or rows > max_rows):
            continue
        if max_features is not None and (features is None or features > max_features):
            continue
        records.append(
            {
                "task_id": int(task_id),
                "dataset": str(row["name"]),
                "dataset_id": int(row["did"]),
                "rows": rows,
                "features": features,
                "classes": _int_or_none(row.get("NumberOfClasses")) or 0,
            }
        )
    return records


def _int_or_none(value: Any) -> int | None:
    try:
        return None if value is None or pd.isna(value) else int(value)
    except (TypeError, ValueError):
        return None
