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
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from importlib import metadata
from pathlib import Path

from rfmbench import __version__
from rfmbench.devices import resolve_device
from rfmbench.errors import BadOption, ResultsFileError, check_seed
from rfmbench.files import check_out_dir, check_run_id
from rfmbench.models.registry import get_model
from rfmbench.results import append_row, read_run, run_path, write_metadata
from rfmbench.runner.executors import Executor, SerialExecutor
from rfmbench.runner.jobs import Job, JobConfig
from rfmbench.sources import LoadContext, get_loader
from rfmbench.sources.local import check_file_options
from rfmbench.suites import get_suite
from rfmbench.tasks import Task

PROTOCOLS = ("default", "paper")
PRECISIONS = ("float32", "float64")


@dataclass
class Plan:
    """Everything a run needs: its tasks, its jobs in order, and the settings shared by all jobs."""

    suite: str
    tasks: dict[str, Task]
    jobs: list[Job]
    config: JobConfig
    settings: dict = field(default_factory=dict)


def default_run_id() -> str:
    return dt.datetime.now().strftime("run-%Y%m%d-%H%M%S")


def make_plan(
    *,
    suite: str = "embedded",
    datasets: list[str] | None = None,
    models: list[str] | None = None,
    folds: int = 5,
    inner_folds: int = 3,
    budget: int = 6,
    seed: int = 0,
    device: str = "auto",
    run_id: str | None = None,
    n_jobs: int | None = None,
    protocol: str = "default",
    precision: str | None = None,
    context: LoadContext | None = None,
    data: Path | None = None,
    target: str | None = None,
    categorical: list[str] | None = None,
    kind: str | None = None,
) -> Plan:
    """Check every option, resolve the device, load the tasks and list the jobs.

    With ``data`` (a CSV / Parquet / ARFF file) and ``target``, the run has that one dataset
    instead of a suite; ``categorical`` and ``kind`` override what is detected. ``n_jobs`` is
    each job's thread count (default 1), the same under every executor so the rows are too.
    ``precision`` ("float32" / "float64") sets the float precision of the models that have one
    (default: each model's own).
    """
    # Every option is checked here, before the device is probed or any data is read, so a
    # mistake never costs a finished benchmark (a bad run id used to fail at the leaderboard).
    seed = check_seed(seed)  # a plain int, also in the metadata JSON
    if run_id is not None:
        check_run_id(run_id)
    if folds < 2:
        raise BadOption(f"--folds must be at least 2, got {folds}")
    if inner_folds < 2:
        raise BadOption(f"--inner-folds must be at least 2, got {inner_folds}")
    if n_jobs is not None and n_jobs < 1:
        raise BadOption(f"--threads must be at least 1, got {n_jobs}")
    if budget < 1:
        raise BadOption(f"--budget must be at least 1, got {budget}")
    if protocol not in PROTOCOLS:
        raise BadOption(f"--protocol must be one of {', '.join(PROTOCOLS)}, got '{protocol}'")
    if precision is not None and precision not in PRECISIONS:
        raise BadOption(f"--precision must be one of {', '.join(PRECISIONS)}, got '{precision}'")
    if data is None and datasets is not None and not datasets:
        raise BadOption("--datasets names no dataset", hint="see `rfmbench datasets list`")
    if data is not None and datasets is not None:
        raise BadOption("--datasets cannot be used with --data (the file is the one dataset)")
    check_file_options(data, target, categorical, kind)
    if models is not None and not models:
        raise BadOption("--models names no model", hint="see `rfmbench models`")
    models = list(models or ["rfm", "kernel-ridge", "random-forest", "mlp"])
    for name in models:
        if not get_model(name).available():
            raise BadOption(
                f"model '{name}' needs packages that are not installed: "
                f"{', '.join(get_model(name).requires)}"
            )
    context = context or LoadContext()
    context = LoadContext(**{**asdict(context), "folds": folds, "seed": seed, "protocol": protocol})
    context.check()
    chosen = get_suite(suite) if data is None else None
    resolved = str(resolve_device(device))
    if chosen is None:
        from rfmbench.sources.local import file_ref

        refs: tuple = (file_ref(data, target, categorical, kind),)
        suite, source = f"file:{Path(data).name}", "local"
    else:
        from rfmbench.datasets import suite_refs

        refs, source = suite_refs(chosen, datasets, context), chosen.source
    if protocol == "paper" and source != "uci121":  # only that source has selection splits
        raise BadOption(
            f"--protocol paper needs datasets with a fixed selection split; '{suite}' has none",
            hint="use it with --suite uci121",
        )
    load = get_loader(source)
    tasks = {ref.name: load(ref, context) for ref in refs}
    if protocol == "paper":
        lacking = [name for name, task in tasks.items() if task.selection is None]
        if lacking:
            raise BadOption(
                f"--protocol paper needs datasets with a fixed selection split; "
                f"'{lacking[0]}' has none",
                hint="use it with --suite uci121",
            )
    jobs = [
        Job(name, split.fold, model)
        for name, task in tasks.items()
        for split in task.splits
        for model in models
    ]
    if protocol == "paper":
        # Each (dataset, model) is tuned once, by its first job; the others wait for that tuning.
        # Running every first fold before the rest keeps parallel workers on distinct tunings.
        jobs.sort(key=lambda job: job.fold != tasks[job.dataset].splits[0].fold)
    config = JobConfig(
        run_id=run_id or default_run_id(),
        seed=seed,
        inner_folds=inner_folds,
        budget=budget,
        device=resolved,
        # Threads per job, fixed whatever the executor: the thread count changes float sums.
        n_jobs=n_jobs or 1,
        protocol=protocol,
        precision=precision,
    )
    settings = {
        "suite": suite,
        "datasets": list(tasks),
        "models": models,
        "folds": folds,
        "inner_folds": inner_folds,
        "budget": budget,
        "seed": seed,
        "device_requested": device,
        "device": resolved,
        "protocol": protocol,
        "threads": n_jobs or 1,
        "precision": precision,
    }
    return Plan(suite=suite, tasks=tasks, jobs=jobs, config=config, settings=settings)


def done_keys(path: Path, retry_failed: bool) -> set[tuple[str, int, str]]:
    """Keys of the rows a resumed run skips: ``ok`` ones, plus failed/timeout unless retried."""
    if not path.exists():
        return set()
    rows = read_run(path)
    keep = ("ok",) if retry_failed else ("ok", "failed", "timeout", "skipped")
    rows = rows[rows["status"].isin(keep)]
    return {(r.dataset, int(r.fold), r.model) for r in rows.itertuples()}


# Settings that change what a row means: a run may only be resumed with the same values.
# Threads and precision belong here too: they change float sums, and with them tuning choices.
RESUME_SETTINGS = (
    "suite",
    "folds",
    "inner_folds",
    "budget",
    "seed",
    "protocol",
    "threads",
    "precision",
)


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
    out: Path,
    *,
    executor: Executor | None = None,
    retry_failed: bool = False,
    on_start: Callable[[Job], None] | None = None,
    on_done: Callable[[Job, dict], None] | None = None,
) -> Path:
    """Run every job not already done, appending each row as it finishes; return the CSV path."""
    out = check_out_dir(out)
    path = run_path(out, check_run_id(plan.config.run_id))
    check_resumable(path.with_suffix(".json"), plan)
    write_metadata(path.with_suffix(".json"), run_metadata(plan))

    def record(job: Job, row: dict) -> None:
        append_row(path, row)
        if on_done:
            on_done(job, row)

    config = plan.config
    if config.protocol == "paper":  # tuned once per (dataset, model), shared by workers and resumes
        config = replace(config, selection_dir=str(out / f"{config.run_id}-selection"))
    (executor or SerialExecutor()).run(
        pending_jobs(plan, out, retry_failed),
        plan.tasks,
        config,
        on_start or (lambda job: None),
        record,
    )
    return path


def pending_jobs(plan: Plan, out: Path, retry_failed: bool = False) -> list[Job]:
    """The jobs a ``run_plan`` call would run now."""
    skip = done_keys(run_path(out, plan.config.run_id), retry_failed)
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
        "n_jobs": plan.config.n_jobs,
        "written_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
