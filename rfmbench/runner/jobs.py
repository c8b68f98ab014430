"""One job = one (task, outer fold, model): preprocess, tune, refit, test. ``run_job`` never raises."""

from __future__ import annotations

import contextlib
import datetime as dt
import inspect
import json
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from rfmbench import __version__
from rfmbench.errors import UnknownName, one_line
from rfmbench.features import feature_matrix, feature_scores
from rfmbench.metrics import classification_metrics, regression_metrics
from rfmbench.models.registry import get_model
from rfmbench.runner.protocols import DefaultProtocol, Protocol, job_seed
from rfmbench.tasks import Task
from rfmbench.tuning import TuningResult, iteration_curve


@dataclass(frozen=True)
class JobConfig:
    """What every job of a run needs besides its task (a worker gets it with each job)."""

    run_id: str
    seed: int = 0
    inner_folds: int = 3
    budget: int = 6
    device: str = "cpu"  # resolved: "cpu" or "cuda:N"
    threads: int = 1  # per job, whatever the executor: the thread count changes float sums
    protocol: Protocol = DefaultProtocol()
    precision: str | None = None  # "float32" / "float64" for models that have one; None: theirs


@dataclass(frozen=True)
class Job:
    """A cell of the grid. Its key is stable, so a resumed run and any worker agree on what is done.

    ``tuning`` is a choice made by another job that this one reuses (a protocol that shares
    tuning hands it over as data); it is not part of the job's identity.
    """

    dataset: str
    fold: int
    model: str
    tuning: TuningResult | None = field(default=None, compare=False, repr=False)

    @property
    def key(self) -> tuple[str, int, str]:
        return (self.dataset, self.fold, self.model)


OnStart = Callable[[Job], None]
OnResult = Callable[[Job, dict], None]
# The key of a row that carries a tuning the driver must store and share (popped before writing).
SHARED_TUNING = "_shared_tuning"
# The key of a row that carries the job's learned feature matrix (tasks with known features);
# the driver pops it and writes the file (`results.feature_matrix_path`): workers write nothing.
FEATURE_MATRIX = "_feature_matrix"


@contextlib.contextmanager
def job_threads(threads: int) -> Iterator[None]:
    """Run the block with ``threads`` threads in torch and the BLAS / OpenMP libraries."""
    from threadpoolctl import threadpool_limits

    threads = max(1, int(threads))
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with threadpool_limits(limits=threads):
            yield
    finally:
        torch.set_num_threads(before)


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
        row["error"] = one_line(exc)
    row["peak_memory_mb"] = round(_peak_memory_mb(row["device"], baseline), 1)
    return row


def _evaluate(job: Job, task: Task, config: JobConfig) -> dict[str, Any]:
    spec = get_model(job.model)
    split = task.splits[job.fold]
    fold = config.protocol.prepare(task, split.train, split.test)
    seed = job_seed(config.seed, job.dataset, job.fold)

    start = time.perf_counter()
    reused = job.tuning is not None
    tuning = job.tuning if reused else config.protocol.tune(spec, task, split, fold, config, seed)
    tuning_seconds = 0.0 if reused else time.perf_counter() - start

    params = {**tuning.best_params, **tuning.refit_params}  # the row's "params"
    model = spec.make(
        task.kind,
        {**params, **tuning.state},
        device=config.device,
        seed=seed,
        n_jobs=config.threads,
        precision=config.precision,
    )
    start = time.perf_counter()
    model.fit(fold.X_train, fold.y_train, **_monitor(model, task, fold))
    # Scoring the monitored test rows is not part of fitting.
    fit_seconds = time.perf_counter() - start - getattr(model, "monitor_seconds_", 0.0)

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
        **feature_scores(model, task.truth, _raw_scales(task, split.train), fold.X_train),
        **_iteration_scores(model, tuning),
        "error": "",
        "params": json.dumps(params, sort_keys=True),
        "solver": getattr(model, "solver_path_", ""),
        "inner_cv_score": tuning.best_score,
        "n_candidates": len(tuning.candidates),
        "n_failed_candidates": tuning.n_failed,
        "n_features": fold.X_train.shape[1],
        "fit_seconds": round(fit_seconds, 4),
        "predict_seconds": round(predict_seconds, 4),
        "tuning_seconds": round(tuning_seconds, 4),
        "tuning_reused": reused,
        **({SHARED_TUNING: tuning} if config.protocol.shares_tuning and not reused else {}),
        **_feature_matrix(model, task),
    }


def _monitor(model: Any, task: Task, fold: Any) -> dict[str, Any]:
    """``monitor=(X_test, y_test)`` for a model whose fit records every iteration's test score.

    The scores are recorded only (``iteration_test_scores``): nothing is selected on them and the
    fitted model is the same without them. Test labels are encoded as the training labels; one
    the training fold lacks (-1) is an error for every iteration.
    """
    if "monitor" not in inspect.signature(model.fit).parameters:
        return {}
    if task.kind == "classification":
        where = np.searchsorted(fold.classes, fold.y_test_raw).clip(0, len(fold.classes) - 1)
        y = np.where(fold.classes[where] == fold.y_test_raw, where, -1)
    else:
        y = (np.asarray(fold.y_test_raw, dtype=np.float64) - fold.y_mean) / fold.y_scale
    return {"monitor": (fold.X_test, y)}


def _iteration_scores(model: Any, tuning: Any) -> dict[str, str]:
    """RFM's per-iteration scores as JSON lists (NaN as null); nothing for other models.

    Validation: the final fit's own (when it held rows out), else the tuning's: the chosen
    configuration's curve on the inner folds (or the selection split), averaged over them. Test:
    the final fit on the test fold, recorded through ``monitor`` and never selected on.
    """

    def as_json(scores: list[float] | None) -> str:
        if scores is None:
            return ""
        return json.dumps([round(float(v), 6) if math.isfinite(v) else None for v in scores])

    columns = {}
    if getattr(model, "val_scores_", None) is not None:
        curve = iteration_curve(model)
        columns["iteration_val_scores"] = as_json(curve or tuning.iteration_scores)
    if getattr(model, "monitor_scores_", None) is not None:
        monitored = [float(v) for v in model.monitor_scores_]
        finite = any(math.isfinite(v) for v in monitored)
        columns["iteration_test_scores"] = as_json(monitored if finite else None)
    return columns


def _feature_matrix(model: Any, task: Task) -> dict[str, np.ndarray]:
    """The learned feature matrix on a task with known features (RFM's M, a network's W^T W)."""
    if task.truth is None:
        return {}
    matrix = feature_matrix(model)
    return {} if matrix is None else {FEATURE_MATRIX: matrix}


def _raw_scales(task: Task, train: np.ndarray) -> np.ndarray:
    """What preprocessing divides each raw numeric column by (its training rows' deviation)."""
    if task.truth is None or task.truth.basis is None:
        return np.ones(0)
    scales = task.X.iloc[train].to_numpy(dtype=np.float64).std(axis=0)
    return np.where(scales > 0, scales, 1.0)  # as StandardScaler: a constant column stays


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
