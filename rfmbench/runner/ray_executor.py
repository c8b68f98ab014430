"""Run the grid on a Ray cluster (or a Ray runtime started on this machine); only the driver writes.

Ray is optional: this module is imported only when ``--executor ray`` is asked for, and
``import_ray`` turns its absence into one clear error. Each task is put in the object store once;
each job is a Ray task asking for ``config.threads`` CPUs (its fixed thread count) and, on CUDA, one
GPU. At most as many jobs are in flight as the cluster has room for, so a job's clock starts about
when it starts running: a job over the time limit is cancelled (its worker killed) and becomes a
``timeout`` row. A worker that dies is retried once by Ray, then its job becomes a ``failed`` row
with Ray's reason. Ctrl-C cancels every job still in flight; rows already handed over stay written.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from rfmbench.errors import BadOption, one_line
from rfmbench.runner.jobs import (
    Job,
    JobConfig,
    OnResult,
    OnStart,
    failure_row,
    job_threads,
    run_job,
)
from rfmbench.tasks import Task

log = logging.getLogger(__name__)

# How long one ray.wait blocks: short enough to notice a job over its time limit promptly.
_POLL_SECONDS = 0.25
# How often the cluster's size is read again (nodes may join or leave during a run).
_RESIZE_SECONDS = 10.0


def import_ray() -> Any:
    """The ``ray`` module, or a BadOption saying how to install it."""
    try:
        import ray
    except ImportError:
        raise BadOption(
            "--executor ray needs Ray, which is not installed",
            hint="pip install 'rfmbench[ray]'",
        ) from None
    return ray


def run_remote_job(job: Job, task: Task, config: JobConfig) -> dict[str, Any]:
    """The body of one Ray task: run the job with its fixed thread count on the GPU Ray gave it.

    Ray sets ``CUDA_VISIBLE_DEVICES`` to the GPU it assigned, so inside the task that GPU is
    ``cuda:0``; the row records the node's own id of it (``cuda:N``).
    """
    import ray

    gpu_ids = ray.get_gpu_ids() if config.device.startswith("cuda") else []
    if gpu_ids:
        config = replace(config, device="cuda:0")
    with job_threads(config.threads):
        row = run_job(job, task, config)
    if gpu_ids and row["device"].startswith("cuda"):
        row["device"] = f"cuda:{gpu_ids[0]}"
    return row


@dataclass
class _InFlight:
    job: Job
    submitted: float


class RayExecutor:
    """Run jobs as Ray tasks.

    Parameters
    ----------
    address : str or None
        A running cluster (``HEAD:6379``, ``auto`` or ``ray://HEAD:10001``). None starts a local
        Ray runtime with ``num_cpus`` CPUs and shuts it down at the end.
    time_limit : float or None
        Seconds per job, counted from its submission; a job over it becomes a ``timeout`` row.
    num_cpus : int or None
        CPUs of the local runtime (default: all of this machine's); ignored with ``address``.
    max_retries : int
        Times Ray reruns a job whose worker process died, before it becomes a ``failed`` row.
    body : callable
        What each Ray task runs, ``(job, task, config) -> row`` (tests swap in one that crashes).
    """

    def __init__(
        self,
        address: str | None = None,
        time_limit: float | None = None,
        num_cpus: int | None = None,
        max_retries: int = 1,
        body: Callable[[Job, Task, JobConfig], dict[str, Any]] = run_remote_job,
    ) -> None:
        self.address = address
        self.time_limit = time_limit
        self.num_cpus = num_cpus
        self.max_retries = max_retries
        self.body = body

    def run(
        self,
        jobs: Sequence[Job],
        tasks: dict[str, Task],
        config: JobConfig,
        on_start: OnStart,
        on_result: OnResult,
    ) -> None:
        if not jobs:
            return
        ray = import_ray()
        started_here = self._connect(ray)
        in_flight: dict[Any, _InFlight] = {}
        try:
            self._run(ray, list(jobs), tasks, config, on_start, on_result, in_flight)
        finally:
            for ref in in_flight:  # Ctrl-C or an error: stop what is still running
                ray.cancel(ref, force=True)
            if started_here:
                ray.shutdown()

    def _connect(self, ray: Any) -> bool:
        """Join the cluster or start a local runtime; True when this call started one."""
        if ray.is_initialized():
            return False
        if self.address:
            try:
                ray.init(address=self.address, log_to_driver=False, configure_logging=False)
            except (ConnectionError, ValueError, RuntimeError) as exc:
                raise BadOption(
                    f"cannot connect to the Ray cluster at {self.address}: {exc}",
                    hint="start it with `ray start --head` and pass HEAD:6379",
                ) from None
            return False
        ray.init(
            num_cpus=self.num_cpus,
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
        )
        return True

    def _resources(self, config: JobConfig) -> dict[str, float]:
        gpus = 1 if config.device.startswith("cuda") else 0
        return {"num_cpus": max(1, config.threads), "num_gpus": gpus}

    def _capacity(self, ray: Any, resources: dict[str, float]) -> int:
        """How many jobs the cluster can run at once (at least one)."""
        total = ray.cluster_resources()
        slots = int(total.get("CPU", 0) // resources["num_cpus"])
        if resources["num_gpus"]:
            slots = min(slots, int(total.get("GPU", 0)))
        return max(1, slots)

    def _run(self, ray, pending, tasks, config, on_start, on_result, in_flight) -> None:
        resources = self._resources(config)
        if resources["num_gpus"] and not ray.cluster_resources().get("GPU"):
            raise BadOption(
                f"device {config.device} asked for, but the Ray cluster has no GPU",
                hint="use --device cpu, or add GPU nodes to the cluster",
            )
        largest = max((n["Resources"].get("CPU", 0) for n in ray.nodes() if n["Alive"]), default=0)
        if resources["num_cpus"] > largest:  # such a job would wait for a node forever
            raise BadOption(
                f"--threads {config.threads} is more than any Ray node's {largest:g} CPUs",
                hint="use fewer --threads",
            )
        remote = ray.remote(self.body).options(
            **resources, max_retries=self.max_retries, retry_exceptions=False
        )
        refs = {name: ray.put(tasks[name]) for name in dict.fromkeys(j.dataset for j in pending)}
        capacity, sized_at = self._capacity(ray, resources), time.monotonic()
        while pending or in_flight:
            if time.monotonic() - sized_at > _RESIZE_SECONDS:
                capacity, sized_at = self._capacity(ray, resources), time.monotonic()
            while pending and len(in_flight) < capacity:
                job = pending.pop(0)
                on_start(job)
                ref = remote.remote(job, refs[job.dataset], config)
                in_flight[ref] = _InFlight(job, time.monotonic())
            ready, _ = ray.wait(list(in_flight), num_returns=1, timeout=_POLL_SECONDS)
            # Collect everything that is ready now, not only the first.
            if ready:
                ready, _ = ray.wait(list(in_flight), num_returns=len(in_flight), timeout=0)
            for ref in ready:
                entry = in_flight.pop(ref)
                on_result(entry.job, self._row(ray, ref, entry.job, tasks, config))
            self._police(ray, in_flight, tasks, config, on_result)

    def _row(self, ray, ref, job: Job, tasks, config: JobConfig) -> dict[str, Any]:
        """The job's row, or a ``failed`` row saying why Ray could not produce it."""
        try:
            return ray.get(ref)
        except ray.exceptions.RayError as exc:
            reason = _reason(exc, self.max_retries)
            log.warning("%s fold %s %s: %s", job.dataset, job.fold, job.model, reason)
            return failure_row(job, tasks[job.dataset], config, "failed", reason)

    def _police(self, ray, in_flight, tasks, config: JobConfig, on_result) -> None:
        """Cancel the jobs over the time limit; each becomes a ``timeout`` row."""
        if self.time_limit is None:
            return
        now = time.monotonic()
        for ref, entry in list(in_flight.items()):
            if now - entry.submitted <= self.time_limit:
                continue
            ray.cancel(ref, force=True)
            del in_flight[ref]
            job = entry.job
            reason = f"exceeded the time limit of {self.time_limit:g} s"
            log.warning("%s fold %s %s: %s", job.dataset, job.fold, job.model, reason)
            on_result(job, failure_row(job, tasks[job.dataset], config, "timeout", reason))


def _reason(exc: BaseException, retries: int) -> str:
    """One line naming what went wrong on the cluster (worker crash, lost node, task error)."""
    import ray

    if isinstance(exc, ray.exceptions.WorkerCrashedError):
        text = f"Ray worker died ({retries} retries): {exc}"
    elif isinstance(exc, ray.exceptions.RayTaskError):
        cause = exc.cause if getattr(exc, "cause", None) is not None else exc
        text = f"Ray task error: {type(cause).__name__}: {cause}"
    else:
        text = f"{type(exc).__name__}: {exc}"
    return one_line(text)
