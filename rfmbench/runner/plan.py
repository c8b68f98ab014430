"""Plan a run (load tasks, list jobs) and execute it, appending one row per finished job.

A rerun with the same run id resumes: rows already ``ok`` are skipped; ``failed`` and ``timeout``
rows are retried only when asked.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import socket
import sys
from dataclasses import dataclass, field, replace
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from rfmbench import __version__
from rfmbench.config import RESUME_SETTINGS, RunConfig
from rfmbench.devices import resolve_device
from rfmbench.errors import BadOption, ResultsFileError
from rfmbench.files import check_out_dir, check_run_id, write_atomic
from rfmbench.models.registry import get_model
from rfmbench.results import (
    append_row,
    feature_matrix_path,
    read_run,
    run_path,
    write_feature_matrix,
    write_metadata,
)
from rfmbench.runner.executors import Executor, SerialExecutor
from rfmbench.runner.jobs import (
    FEATURE_MATRIX,
    SHARED_TUNING,
    Job,
    JobConfig,
    OnResult,
    OnStart,
)
from rfmbench.runner.protocols import get_protocol
from rfmbench.sources import LoadContext, get_loader
from rfmbench.suites import get_suite
from rfmbench.tasks import Task
from rfmbench.tuning import TuningResult


@dataclass
class Plan:
    """Everything a run needs: its settings, its tasks, its jobs in order, and what workers get."""

    config: RunConfig
    tasks: dict[str, Task]
    jobs: list[Job]
    job_config: JobConfig
    settings: dict = field(default_factory=dict)  # config.record() with what was resolved


def default_run_id() -> str:
    return dt.datetime.now().strftime("run-%Y%m%d-%H%M%S")


def make_plan(config: RunConfig | None = None, **changes: Any) -> Plan:
    """Check every setting, resolve the device, load the tasks and list the jobs.

    ``changes`` override fields of ``config`` (default: ``RunConfig()``), so
    ``make_plan(datasets=["iris"], folds=2)`` works too. Every setting is checked before the
    device is probed or any data is read, so a mistake never costs a finished benchmark.
    """
    config = (config or RunConfig()).replace(**changes).check()
    protocol = get_protocol(config.protocol)
    for name in config.models:
        spec = get_model(name)
        if not spec.available():
            raise BadOption(
                f"model '{name}' needs packages that are not installed: {', '.join(spec.requires)}"
            )
    context = LoadContext(
        folds=config.folds,
        seed=config.seed,
        cache_dir=config.cache_dir,
        data_dir=config.data_dir,
        offline=config.offline,
    ).check()
    chosen = get_suite(config.suite) if config.data is None else None
    resolved = str(resolve_device(config.device))
    if chosen is None:
        from rfmbench.sources.local import file_ref

        categorical = list(config.categorical) if config.categorical is not None else None
        refs: tuple = (file_ref(config.data, config.target, categorical, config.kind),)
        suite, source = f"file:{Path(config.data).name}", "local"
    else:
        from rfmbench.datasets import suite_refs

        datasets = list(config.datasets) if config.datasets is not None else None
        refs, suite, source = suite_refs(chosen, datasets, context), config.suite, chosen.source
    protocol.check_source(source, suite)
    load = get_loader(source)
    tasks = {ref.name: load(ref, context) for ref in refs}
    protocol.check_tasks(tasks)
    jobs = [
        Job(name, split.fold, model)
        for name, task in tasks.items()
        for split in task.splits
        for model in config.models
    ]
    config = config.replace(run_id=config.run_id or default_run_id())
    job_config = JobConfig(
        run_id=config.run_id,
        seed=config.seed,
        inner_folds=config.inner_folds,
        budget=config.budget,
        device=resolved,
        threads=config.threads,
        protocol=protocol,
        precision=config.precision,
    )
    settings = {
        **config.record(),
        "suite": suite,
        "datasets": list(tasks),
        "device_requested": config.device,
        "device": resolved,
    }
    return Plan(config, tasks, protocol.order(jobs, tasks), job_config, settings)


def done_keys(path: Path, retry_failed: bool) -> set[tuple[str, int, str]]:
    """Keys of the rows a resumed run skips: ``ok`` ones, plus failed/timeout unless retried."""
    if not path.exists():
        return set()
    rows = read_run(path)
    keep = ("ok",) if retry_failed else ("ok", "failed", "timeout")
    rows = rows[rows["status"].isin(keep)]
    return {(r.dataset, int(r.fold), r.model) for r in rows.itertuples()}


def check_resumable(metadata_path: Path, plan: Plan) -> None:
    """Refuse to append to an earlier run whose rows were made with different settings."""
    if not metadata_path.exists():
        return
    try:
        earlier = json.loads(metadata_path.read_text()).get("settings", {})
    except (OSError, json.JSONDecodeError):
        return  # a damaged metadata file is rewritten below; the rows themselves are checked
    changed = [
        f"{key} {earlier[key]!r} -> {plan.settings[key]!r}"
        for key in RESUME_SETTINGS
        if key in earlier and earlier[key] != plan.settings.get(key)
    ]
    if changed:
        raise ResultsFileError(
            f"run '{plan.config.run_id}' exists with other settings ({'; '.join(changed)})",
            hint="use a new --run-id, or the earlier settings to resume it",
        )


def run_plan(
    plan: Plan,
    *,
    executor: Executor | None = None,
    on_start: OnStart | None = None,
    on_done: OnResult | None = None,
) -> Path:
    """Run every job not already done, appending each row as it finishes; return the CSV path.

    Only this driver writes. Under a protocol that shares tuning, the first job of each
    (dataset, model) runs first and hands its tuning back in its row; the driver stores it in
    ``OUT/RUN_ID-selection/`` (a resumed run reads it there) and gives it to the other jobs. A
    row's learned feature matrix (tasks with known features) goes to ``OUT/RUN_ID-features/``.
    """
    out = check_out_dir(plan.config.out)
    path = run_path(out, check_run_id(plan.config.run_id))
    check_resumable(path.with_suffix(".json"), plan)
    write_metadata(path.with_suffix(".json"), run_metadata(plan))
    shared = SharedTunings(out / f"{plan.config.run_id}-selection", plan.config.seed)

    def record(job: Job, row: dict) -> None:
        tuning = row.pop(SHARED_TUNING, None)
        if tuning is not None:
            shared.store(job, tuning)  # before the row: a row on disk means its tuning is too
        matrix = row.pop(FEATURE_MATRIX, None)
        if matrix is not None:  # the learned features (features suite): OUT/RUN_ID-features/
            where = feature_matrix_path(out, plan.config.run_id, job.dataset, job.model, job.fold)
            write_feature_matrix(where, matrix)
        append_row(path, row)
        if on_done:
            on_done(job, row)

    executor = executor or SerialExecutor()
    pending = pending_jobs(plan)
    if plan.job_config.protocol.shares_tuning:
        first, rest = shared.split(pending)
        if first:
            executor.run(first, plan.tasks, plan.job_config, on_start or _nothing, record)
        pending = [replace(job, tuning=shared.get(job)) for job in rest]
    executor.run(pending, plan.tasks, plan.job_config, on_start or _nothing, record)
    return path


def _nothing(job: Job) -> None:
    return None


class SharedTunings:
    """The tunings shared by the jobs of one (dataset, model), kept by the driver in ``folder``."""

    def __init__(self, folder: Path, seed: int) -> None:
        self.folder, self.seed = folder, seed
        self._known: dict[tuple[str, str], TuningResult] = {}

    def _path(self, dataset: str, model: str) -> Path:
        return self.folder / f"{dataset}--{model}--seed{self.seed}.json"

    def get(self, job: Job) -> TuningResult | None:
        key = (job.dataset, job.model)
        if key not in self._known:
            path = self._path(*key)
            if not path.exists():
                return None
            self._known[key] = TuningResult.from_dict(json.loads(path.read_text()))
        return self._known[key]

    def store(self, job: Job, tuning: TuningResult) -> None:
        self._known[(job.dataset, job.model)] = tuning
        self.folder.mkdir(parents=True, exist_ok=True)
        text = json.dumps(tuning.to_dict(), default=_plain_number)
        write_atomic(self._path(job.dataset, job.model), text)

    def split(self, jobs: list[Job]) -> tuple[list[Job], list[Job]]:
        """(the first job of each group with no stored tuning, the others), in planned order."""
        first, rest, seen = [], [], set()
        for job in jobs:
            key = (job.dataset, job.model)
            if key not in seen and self.get(job) is None:
                first.append(job)
                seen.add(key)
            else:
                rest.append(job)
        return first, rest


def _plain_number(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot store {type(value).__name__} in a tuning result")


def pending_jobs(plan: Plan) -> list[Job]:
    """The jobs a ``run_plan`` call would run now."""
    skip = done_keys(run_path(plan.config.out, plan.config.run_id), plan.config.retry_failed)
    return [job for job in plan.jobs if job.key not in skip]


def run_metadata(plan: Plan) -> dict:
    """The configuration and environment of a run, enough to reproduce it."""
    packages = {}
    for name in ("numpy", "scipy", "pandas", "scikit-learn", "torch", "openml"):
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            packages[name] = None
    return {
        "run_id": plan.config.run_id,
        "rfmbench_version": __version__,
        "settings": plan.settings,
        "command": sys.argv,
        "python": sys.version.split()[0],
        "packages": packages,
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "written_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
