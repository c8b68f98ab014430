"""Datasets across sources: which datasets a suite holds, fetching them, and describing one.

The functions behind ``rfmbench datasets list / fetch / info`` and the suite resolution of
``rfmbench run``. A suite's datasets are its ``[[datasets]]`` entries; a suite without entries is
resolved here: ``uci121`` by scanning the collection's directory, an OpenML suite
(``openml_suite = ID``) through its lock file, written by ``fetch``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from rfmbench.errors import BadOption, DataSourceError, unknown
from rfmbench.sources import DatasetRef, LoadContext, get_loader
from rfmbench.sources.cache import cache_root
from rfmbench.suites import Suite, all_suites, get_suite, lock_path, suite_settings, write_lock
from rfmbench.tasks import Task


def suite_refs(suite: Suite, names: list[str] | None, ctx: LoadContext) -> tuple[DatasetRef, ...]:
    """The datasets of ``suite`` named in ``names`` (all when None), resolving list-less suites."""
    if not suite.datasets:
        suite = dataclasses.replace(suite, datasets=_resolve_listless(suite, ctx))
    return suite.select(names)


def _resolve_listless(suite: Suite, ctx: LoadContext) -> tuple[DatasetRef, ...]:
    if suite.source == "uci121":
        from rfmbench.sources import uci121

        return uci121.list_refs(ctx)
    settings = suite_settings(suite)
    if suite.source == "openml" and "openml_suite" in settings:
        raise DataSourceError(
            f"suite '{suite.name}' (OpenML suite {settings['openml_suite']}) is not resolved yet: "
            f"no lock file {lock_path(suite.path)}",
            hint=f"run `rfmbench datasets fetch --suite {suite.name}` once where OpenML is "
            "reachable; it pins the task ids in that file",
        )
    raise DataSourceError(f"suite '{suite.name}' lists no datasets ({suite.path})")


def resolve_openml_suite(suite: Suite, ctx: LoadContext) -> Path:
    """Resolve an OpenML suite's task ids on the server and write its lock file (network)."""
    from rfmbench.sources.openml import current_server, resolve_suite

    settings = suite_settings(suite)
    if ctx.offline:
        raise DataSourceError(
            f"suite '{suite.name}' has no lock file yet and --offline forbids resolving it",
            hint=f"run `rfmbench datasets fetch --suite {suite.name}` without --offline",
        )
    max_rows, max_features = settings.get("max_rows"), settings.get("max_features")
    records = resolve_suite(
        settings["openml_suite"],
        cache_root(ctx.cache_dir),
        max_rows=max_rows,
        max_features=max_features,
    )
    seen: set[str] = set()
    entries = []
    for record in records:
        name = (
            record["dataset"]
            if record["dataset"] not in seen
            else f"{record['dataset']}-{record['task_id']}"
        )
        seen.add(name)
        entries.append({"name": name, **record})
    path = lock_path(suite.path)
    header = {
        "suite": suite.name,
        "openml_suite": settings["openml_suite"],
        "server": current_server(),
        "max_rows": max_rows,
        "max_features": max_features,
        "resolved_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "tasks": len(entries),
    }
    comment = (
        f"Written by `rfmbench datasets fetch --suite {suite.name}`: the OpenML tasks this suite\n"
        "resolved to. Commit it so that every rerun uses the same tasks; delete it to resolve again."
    )
    try:
        write_lock(path, header, entries, comment)
    except OSError as exc:
        raise DataSourceError(
            f"cannot write lock file {path}: {exc}",
            hint="copy the suite file into a writable folder named by $RFMBENCH_SUITES_DIR",
        ) from None
    return path


def fetch(
    suite_name: str,
    names: list[str] | None,
    ctx: LoadContext,
    on_item: Callable[[dict], None] | None = None,
) -> list[dict[str, Any]]:
    """Download what a suite needs into the cache (or ``ctx.data_dir``); one record per item."""
    ctx.check()
    if names is not None and not names:
        raise BadOption("--datasets names no dataset", hint="see `rfmbench datasets list`")
    suite = get_suite(suite_name)
    records: list[dict[str, Any]] = []

    def report(record: dict[str, Any]) -> None:
        records.append(record)
        if on_item:
            on_item(record)

    if suite.source == "uci121":
        from rfmbench.sources import uci121

        root = uci121.data_root(ctx)
        found = uci121.fetch_collection(root)
        report({"dataset": f"{len(found)} datasets", "status": "unpacked", "where": str(root)})
        return records
    if suite.source != "openml":
        report({"dataset": suite.name, "status": f"nothing to fetch ({suite.source} source)"})
        return records
    if not suite.datasets:
        path = resolve_openml_suite(suite, ctx)
        report({"dataset": suite.name, "status": "resolved", "where": str(path)})
        suite = get_suite(suite_name)
    from rfmbench.sources import openml as openml_source

    root = cache_root(ctx.cache_dir)
    for ref in suite.select(names):
        task_id = openml_source.task_id_of(ref)
        where = str(openml_source.task_dir(root, task_id))
        if openml_source.is_cached(root, task_id):
            report({"dataset": ref.name, "task_id": task_id, "status": "cached", "where": where})
            continue
        if ctx.offline:
            raise DataSourceError(
                f"OpenML task {task_id} ('{ref.name}') is not in the cache and --offline forbids "
                "fetching it",
                hint="drop --offline",
            )
        openml_source.fetch_task(task_id, root)
        report({"dataset": ref.name, "task_id": task_id, "status": "fetched", "where": where})
    return records


def list_datasets(suite_name: str | None, ctx: LoadContext) -> pd.DataFrame:
    """One row per dataset of a suite (every suite when None), without loading any data."""
    ctx.check()
    suites = [get_suite(suite_name)] if suite_name else list(all_suites().values())
    rows = []
    for suite in suites:
        try:
            refs = suite_refs(suite, None, ctx)
        except DataSourceError:
            if suite_name:
                raise
            note = (
                "needs --data-dir (the unpacked collection)"
                if suite.source == "uci121"
                else f"not resolved yet: `rfmbench datasets fetch --suite {suite.name}`"
            )
            rows.append(
                {
                    "suite": suite.name,
                    "dataset": "-",
                    "source": suite.source,
                    "details": note,
                    "cached": "-",
                }
            )
            continue
        for ref in refs:
            rows.append(
                {
                    "suite": suite.name,
                    "dataset": ref.name,
                    "source": suite.source,
                    "details": ", ".join(f"{k}={v}" for k, v in ref.params.items()),
                    "cached": _cached(suite.source, ref, ctx),
                }
            )
    return pd.DataFrame(rows, columns=["suite", "dataset", "source", "details", "cached"])


def _cached(source: str, ref: DatasetRef, ctx: LoadContext) -> str:
    if source == "openml":
        from rfmbench.sources import openml as openml_source

        return (
            "yes"
            if openml_source.is_cached(cache_root(ctx.cache_dir), openml_source.task_id_of(ref))
            else "no"
        )
    if source in ("embedded", "uci121"):
        return "local"
    return "-"


def find_dataset(name: str, suite_name: str | None, ctx: LoadContext) -> tuple[Suite, DatasetRef]:
    """The suite and reference for ``name`` (``SUITE/NAME`` or ``NAME``, searched in every suite)."""
    if suite_name is None and "/" in name:
        suite_name, name = name.split("/", 1)
    if suite_name is not None:
        suite = get_suite(suite_name)
        return suite, suite_refs(suite, [name], ctx)[0]
    candidates: list[str] = []
    for suite in all_suites().values():
        try:
            refs = suite_refs(suite, None, ctx)
        except DataSourceError:
            continue
        for ref in refs:
            if ref.name == name:
                return suite, ref
            candidates.append(ref.name)
    raise unknown("dataset", name, sorted(set(candidates)))


def dataset_info(
    name: str | None,
    ctx: LoadContext,
    *,
    suite: str | None = None,
    data: Path | None = None,
    target: str | None = None,
    categorical: list[str] | None = None,
    kind: str | None = None,
) -> dict[str, Any]:
    """Load one dataset (a suite's, or a local file) and describe it."""
    ctx.check()
    from rfmbench.sources.local import check_file_options

    check_file_options(data, target, categorical, kind)
    if data is not None and (name or suite):
        raise BadOption("name a dataset or pass --data FILE, not both")
    if data is not None:
        from rfmbench.sources.local import file_ref

        ref, source, suite_label = file_ref(data, target, categorical, kind), "local", "-"
        cached = "local file"
    else:
        if not name:
            raise DataSourceError("name a dataset, or pass --data FILE --target COLUMN")
        found_suite, ref = find_dataset(name, suite, ctx)
        source, suite_label = found_suite.source, found_suite.name
        cached = _cached(source, ref, ctx)
    task = get_loader(source)(ref, ctx)
    return describe(task, suite=suite_label, cached=cached)


def describe(task: Task, *, suite: str = "-", cached: str = "-") -> dict[str, Any]:
    """Sizes, classes, categoricals, missing values and provenance of a Task."""
    n_missing = int(task.X.isna().sum().sum())
    cells = task.X.size or 1
    info: dict[str, Any] = {
        "dataset": task.name,
        "suite": suite,
        "kind": task.kind,
        "rows": len(task.X),
        "features": task.X.shape[1],
        "categorical": len(task.categorical),
        "classes": task.n_classes if task.kind == "classification" else "-",
        "missing values": f"{n_missing} ({100 * n_missing / cells:.1f}% of cells)",
        "columns with missing": int(task.X.isna().any().sum()),
        "outer folds": len(task.splits),
        "test rows per fold": ", ".join(str(len(s.test)) for s in task.splits),
        "selection split": (
            f"{len(task.selection.train)} train / {len(task.selection.test)} validation"
            if task.selection is not None
            else "-"
        ),
        "source": task.source,
        "cached": cached,
    }
    if task.categorical:
        shown = ", ".join(task.categorical[:8]) + (", ..." if len(task.categorical) > 8 else "")
        info["categorical columns"] = shown
    if task.kind == "classification":
        counts = pd.Series(task.y).value_counts()
        info["class sizes"] = ", ".join(f"{k}: {v}" for k, v in counts.head(10).items()) + (
            ", ..." if len(counts) > 10 else ""
        )
    else:
        y = np.asarray(task.y, dtype=float)
        info["target range"] = f"{y.min():.4g} .. {y.max():.4g} (mean {y.mean():.4g})"
    return info
