"""One job = one (task, outer fold, model): preprocess, tune, refit, test. ``run_job`` never raises."""

from __future__ import annotations

import datetime as dt
import json
import math
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from filelock import FileLock

from rfmbench import __version__
from rfmbench.errors import UnknownName
from rfmbench.metrics import classification_metrics, regression_metrics
from rfmbench.models.registry import get_model
from rfmbench.models.spec import ModelSpec
from rfmbench.preprocessing import prepare_fold
from rfmbench.results import write_atomic
from rfmbench.tasks import Task
from rfmbench.tuning import TuningResult, tune


@dataclass(frozen=True)
class JobConfig:
    """Settings shared by every job of a run."""

    run_id: str
    seed: int = 0
    inner_folds: int = 3
    budget: int = 6
    device: str = "cpu"  # resolved: "cpu" or "cuda:N"
    n_jobs: int = 1
    protocol: str = "default"  # or "paper": tune on the task's fixed selection split
    precision: str | None = None  # "float32" / "float64" for models that have one; None: theirs
    # Where paper-protocol tuning results are kept (set by run_plan): workers share them, and a
    # resumed run does not tune again.
    selection_dir: str | None = None


@dataclass(frozen=True)
class Job:
    """A cell of the grid. Its key is stable, so a resumed run and any worker agree on what is done."""

    dataset: str
    fold: int
    model: str

    @property
    def key(self) -> tuple[str, int, str]:
        return (self.dataset, self.fold, self.model)


def job_seed(seed: int, dataset: str, fold: int) -> int:
    """A seed per (dataset, fold), the same for every model so all see the same inner splits."""
    return zlib.crc32(f"{seed}/{dataset}/{fold}".encode()) % (2**31)


def _base_row(job: Job, task: Task, config: JobConfig) -> dict[str, Any]:
    """The columns every row has, whatever happened to the job."""
    split = task.splits[job.fold]
    return {
        "run_id": config.run_id,
        "dataset": job.dataset,
        "task_kind": task.kind,
        "fold": job.fold,
        "model": job.model,
        "n_train": len(split.train),
        "n_test": len(split.test),
        "n_classes": task.n_classes,
        "device": model_device(job.model, config.device),
        "seed": config.seed,
        "source": task.source,
        "rfmbench_version": __version__,
        "started_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }


def failure_row(
    job: Job, task: Task, config: JobConfig, status: str, reason: str
) -> dict[str, Any]:
    """The row of a job that did not finish (``failed`` or ``timeout``) for ``reason``."""
    return {**_base_row(job, task, config), "status": status, "error": reason}


def model_device(model: str, device: str) -> str:
    """Where ``model`` runs when the run asks for ``device``: models without torch stay on the CPU."""
    try:
        return device if get_model(model).uses_device else "cpu"
    except UnknownName:  # the job fails with that error in its own row
        return device


def run_job(job: Job, task: Task, config: JobConfig) -> dict[str, Any]:
    """Run one job and return its results row; an exception becomes a ``failed`` row."""
    row = _base_row(job, task, config)
    baseline = _reset_peak_memory(row["device"])
    try:
        row.update(_evaluate(job, task, config))
        row["status"] = "ok"
    except Exception as exc:  # one model failing on one dataset is a result, not a crash
        row["status"] = "failed"
        row["error"] = " ".join(f"{type(exc).__name__}: {exc}".split())[:500]
    row["peak_memory_mb"] = round(_peak_memory_mb(row["device"], baseline), 1)
    return row


def _evaluate(job: Job, task: Task, config: JobConfig) -> dict[str, Any]:
    spec = get_model(job.model)
    split = task.splits[job.fold]
    fold = prepare_fold(task.X, task.y, task.categorical, task.kind, split.train, split.test)
    seed = job_seed(config.seed, job.dataset, job.fold)

    start = time.perf_counter()
    tuned_here = True
    if config.protocol == "paper":
        tuning, tuned_here = _tune_on_selection(spec, task, config)
    else:
        tuning = tune(
            spec,
            task.kind,
            fold.X_train,
            fold.y_train,
            inner_folds=config.inner_folds,
            budget=config.budget,
            seed=seed,
            device=config.device,
            n_jobs=config.n_jobs,
            precision=config.precision,
        )
    # A job that reused another job's selection tuning spent no time tuning (waiting is not tuning).
    tuning_seconds = time.perf_counter() - start if tuned_here else 0.0

    params = {**tuning.best_params, **tuning.refit_params}
    model = spec.make(
        task.kind,
        params,
        device=config.device,
        seed=seed,
        n_jobs=config.n_jobs,
        precision=config.precision,
    )
    start = time.perf_counter()
    model.fit(fold.X_train, fold.y_train)
    fit_seconds = time.perf_counter() - start

    start = time.perf_counter()
    if task.kind == "classification":
        encoded = np.asarray(model.predict(fold.X_test)).astype(int)
        proba = model.predict_proba(fold.X_test) if hasattr(model, "predict_proba") else None
        predict_seconds = time.perf_counter() - start
        metrics = classification_metrics(
            fold.y_test_raw, fold.classes[encoded], proba, fold.classes
        )
    else:
        predicted = fold.target_to_original(model.predict(fold.X_test))
        predict_seconds = time.perf_counter() - start
        metrics = regression_metrics(fold.y_test_raw, predicted)

    return {
        **metrics,
        "error": "",
        "params": json.dumps(params, sort_keys=True),
        "inner_cv_score": tuning.best_score,
        "n_candidates": len(tuning.candidates),
        "n_failed_candidates": tuning.n_failed,
        "n_features": fold.X_train.shape[1],
        "fit_seconds": round(fit_seconds, 4),
        "predict_seconds": round(predict_seconds, 4),
        "tuning_seconds": round(tuning_seconds, 4),
    }


# The selection split is the same for every outer fold: tune once per (task, model, seed).
_selection_results: dict[tuple[str, str, int], TuningResult] = {}


def _tune_on_selection(spec: ModelSpec, task: Task, config: JobConfig) -> tuple[TuningResult, bool]:
    """The RFM paper's protocol: choose hyperparameters on the task's fixed train/validation split.

    Preprocessing is fitted on the selection's training rows. As in the paper, those rows may
    overlap the outer test folds; the refit on each outer fold then learns M afresh. The result is
    kept in memory and, with ``config.selection_dir``, in a JSON file there, written under a lock:
    a worker that needs a tuning another worker is running waits for it instead of repeating it.
    Returns the result and whether this call computed it.
    """
    key = (task.name, spec.name, config.seed)
    if key in _selection_results:
        return _selection_results[key], False
    # Keep only this task's results in memory; with a selection_dir, the files hold the others.
    for other in [k for k in _selection_results if k[0] != task.name]:
        del _selection_results[other]
    if config.selection_dir is None:
        result, tuned = _tune_selection_split(spec, task, config), True
    else:
        result, tuned = _stored_selection(spec, task, config)
    _selection_results[key] = result
    return result, tuned


def _stored_selection(spec: ModelSpec, task: Task, config: JobConfig) -> tuple[TuningResult, bool]:
    folder = Path(config.selection_dir)
    folder.mkdir(parents=True, exist_ok=True)  # for the lock file
    path = folder / f"{task.name}--{spec.name}--seed{config.seed}.json"
    with FileLock(str(path) + ".lock"):
        if path.exists():
            return TuningResult.from_dict(json.loads(path.read_text())), False
        result = _tune_selection_split(spec, task, config)
        write_atomic(path, json.dumps(result.to_dict(), default=_plain_number))
    return result, True


def _plain_number(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot store {type(value).__name__} in a tuning result")


def _tune_selection_split(spec: ModelSpec, task: Task, config: JobConfig) -> TuningResult:
    seed = job_seed(config.seed, task.name, -1)
    if task.selection is None:
        raise ValueError(f"--protocol paper needs a selection split, which {task.name} lacks")
    selection = task.selection
    fold = prepare_fold(
        task.X, task.y, task.categorical, task.kind, selection.train, selection.test
    )
    if task.kind == "classification":  # labels unseen in training count as wrong predictions
        known = np.isin(fold.y_test_raw, fold.classes)
        y_valid = np.where(known, np.searchsorted(fold.classes, fold.y_test_raw), -1)
    else:
        y_valid = (fold.y_test_raw - fold.y_mean) / fold.y_scale
    X = np.vstack([fold.X_train, fold.X_test])
    y = np.concatenate([fold.y_train, y_valid])
    n_train = len(fold.y_train)
    splits = [(np.arange(n_train), np.arange(n_train, len(y)))]
    return tune(
        spec,
        task.kind,
        X,
        y,
        inner_folds=config.inner_folds,
        budget=config.budget,
        seed=seed,
        device=config.device,
        n_jobs=config.n_jobs,
        splits=splits,
        paper=True,
        precision=config.precision,
    )


def _reset_peak_memory(device: str) -> float:
    """Start measuring this job's peak memory; return the baseline to subtract (MiB)."""
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats(device)
        return torch.cuda.memory_allocated(device) / 2**20
    try:  # "5" resets the peak resident set size (VmHWM) to the current one
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return _proc_status_mb("VmRSS")
    except OSError:
        return 0.0


def _peak_memory_mb(device: str, baseline: float) -> float:
    """Peak memory this job added: GPU memory on CUDA, else resident memory (Linux)."""
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated(device) / 2**20 - baseline
    return max(_proc_status_mb("VmHWM") - baseline, 0.0)


def _proc_status_mb(field: str) -> float:
    """A memory figure of this process from /proc/self/status, in MiB (NaN where unavailable)."""
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return math.nan
