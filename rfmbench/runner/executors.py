"""Executors run a list of jobs and hand back each row as it finishes; only the driver writes rows.

- ``SerialExecutor``: in this process, one job after another (no time limit).
- ``LocalExecutor``: ``jobs`` worker processes on this machine. A job over its time limit becomes a
  ``timeout`` row and its worker is replaced; a worker that dies turns its job into a ``failed`` row.
  With a CUDA device, each worker is pinned to one GPU (the one named, for ``cuda:N``); on the CPU,
  each plans its fits on its share of the memory (`worker_env`).
- ``RayExecutor`` (``rfmbench.runner.ray_executor``, imported only when asked for): Ray tasks.

Every executor runs each job with the same fixed thread count, ``config.threads`` (torch, BLAS and
the forest), whatever the number of workers: the order of float sums depends on the thread count,
so this is what makes a row the same under ``--jobs 1``, ``--jobs 8`` or Ray.
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing as mp
import os
import queue
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from rfmbench.models.memory import CPU_SHARE_ENV, available_bytes
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


class Executor(Protocol):
    def run(
        self,
        jobs: Sequence[Job],
        tasks: dict[str, Task],
        config: JobConfig,
        on_start: OnStart,
        on_result: OnResult,
    ) -> None: ...


class SerialExecutor:
    """Run jobs one by one in this process."""

    def run(self, jobs, tasks, config, on_start, on_result) -> None:
        for job in jobs:
            on_start(job)
            with job_threads(config.threads):
                row = run_job(job, tasks[job.dataset], config)
            on_result(job, row)


def _die_with_parent() -> None:
    """On Linux, have the kernel kill this worker when the driver dies (even by SIGKILL), so no
    orphan keeps computing a job nobody will record."""
    if not sys.platform.startswith("linux"):
        return
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _worker(inbox: Any, outbox: Any, env: dict[str, str], device: str | None) -> None:
    """A worker's loop; ``device`` is the GPU it was pinned to, as the driver numbers it."""
    os.environ.update(env)
    _die_with_parent()
    while True:
        item = inbox.get()
        if item is None:
            return
        job, task, config = item
        outbox.put((job.key, None))  # started: the time limit counts from here, not from spawn
        with job_threads(config.threads):
            row = run_job(job, task, config)
        if device is not None and row["device"].startswith("cuda"):
            row["device"] = device  # the worker sees its GPU as cuda:0; record which one it is
        outbox.put((job.key, row))


@dataclass
class _Slot:
    """One worker process and the job it is running, if any."""

    index: int
    process: Any = None
    inbox: Any = None
    job: Job | None = None
    started: float | None = None  # when the worker took the job (None: not yet)


def worker_env(
    index: int, gpus: Sequence[int], cpu_share: int | None
) -> tuple[dict[str, str], str | None]:
    """Worker ``index``'s environment, and the GPU it is pinned to as the driver numbers it.

    With ``gpus`` (the driver's GPU numbers to use), the worker sees only ``gpus[index % len]``.
    Without, its fits plan on ``cpu_share`` bytes (`rfmbench.models.memory.CPU_SHARE_ENV`): the
    workers of one run then never plan on the same memory.
    """
    if gpus:
        gpu = gpus[index % len(gpus)]
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        ids = visible.split(",") if visible else [str(i) for i in range(max(gpus) + 1)]
        return {"CUDA_VISIBLE_DEVICES": ids[gpu]}, f"cuda:{gpu}"
    return ({} if cpu_share is None else {CPU_SHARE_ENV: str(cpu_share)}), None


class LocalExecutor:
    """Run jobs on ``jobs`` worker processes, with an optional per-job time limit in seconds.

    ``gpus``: the GPUs (the driver's numbers) the workers are pinned to, one each in turn; none
    for the CPU.
    """

    def __init__(
        self, jobs: int = 1, time_limit: float | None = None, gpus: Sequence[int] = ()
    ) -> None:
        self.jobs = jobs
        self.time_limit = time_limit
        self.gpus = tuple(gpus)
        self._cpu_share: int | None = None
        self._context = mp.get_context("spawn")  # fork is unsafe once torch has started threads

    def _start(self, slot: _Slot, outbox: Any) -> None:
        env, device = worker_env(slot.index, self.gpus, self._cpu_share)
        slot.inbox = self._context.Queue()
        slot.process = self._context.Process(
            target=_worker, args=(slot.inbox, outbox, env, device), daemon=True
        )
        slot.process.start()
        slot.job = None

    def run(self, jobs, tasks, config, on_start, on_result) -> None:
        # config.threads (threads per job) is left as planned: changing it would change the rows.
        if self.gpus:
            config = replace(config, device="cuda:0")  # each worker sees only its own GPU
        outbox = self._context.Queue()
        slots = [_Slot(i) for i in range(min(self.jobs, len(jobs)) or 1)]
        if not self.gpus:  # measured once, before any worker allocates
            self._cpu_share = available_bytes("cpu") // len(slots)
        pending = list(jobs)
        try:
            for slot in slots:
                self._start(slot, outbox)
            while pending or any(slot.job for slot in slots):
                for slot in slots:
                    if slot.job is None and pending:
                        slot.job, slot.started = pending.pop(0), None
                        on_start(slot.job)
                        slot.inbox.put((slot.job, tasks[slot.job.dataset], config))
                self._collect(slots, outbox, on_result)
                self._police(slots, outbox, config, tasks, on_result)
        finally:
            for slot in slots:
                if slot.process is not None and slot.process.is_alive():
                    slot.process.kill()
                if slot.inbox is not None:
                    slot.inbox.cancel_join_thread()  # a job no dead worker will read must not block exit

    def _collect(self, slots, outbox, on_result) -> None:
        """Note jobs started and hand over every row that has arrived (waiting briefly)."""
        timeout = 0.2
        while True:
            try:
                key, row = outbox.get(timeout=timeout)
            except queue.Empty:
                return
            timeout = 0.0
            for slot in slots:
                if slot.job is None or slot.job.key != key:
                    continue
                if row is None:
                    slot.started = time.monotonic()
                else:
                    job, slot.job = slot.job, None
                    on_result(job, row)

    def _police(self, slots, outbox, config, tasks, on_result) -> None:
        """Replace workers that died or ran past the time limit; their jobs become rows."""
        for slot in slots:
            if slot.job is None:
                continue
            over = (
                self.time_limit is not None
                and slot.started is not None
                and time.monotonic() - slot.started > self.time_limit
            )
            if not over and slot.process.is_alive():
                continue
            if over:
                slot.process.kill()
                status, reason = "timeout", f"exceeded the time limit of {self.time_limit:g} s"
            else:
                status, reason = "failed", f"worker died (exit code {slot.process.exitcode})"
            slot.process.join(timeout=5)
            slot.inbox.cancel_join_thread()
            job = slot.job
            log.warning("%s fold %s %s: %s", job.dataset, job.fold, job.model, reason)
            on_result(job, failure_row(job, tasks[job.dataset], config, status, reason))
            self._start(slot, outbox)


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity where the OS tells it, else all)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def make_executor(
    *,
    workers: int = 1,
    time_limit: float | None = None,
    device: str = "cpu",
    executor: str = "local",
    ray_address: str | None = None,
    threads: int = 1,
) -> Executor:
    """The executor for these settings (checked by ``RunConfig.check``): in-process when nothing
    asks for worker processes.

    ``workers`` 0 means as many as fit: one per visible GPU on CUDA, else the cores divided by
    ``threads`` (each job's fixed thread count). With ``executor="ray"``, ``workers`` is ignored:
    the cluster's size decides (``ray_address`` None starts a Ray runtime on this machine).
    """
    if executor == "ray":
        from rfmbench.runner.ray_executor import RayExecutor, import_ray

        import_ray()  # a missing Ray is one clear line now, not a failure after planning
        return RayExecutor(address=ray_address, time_limit=time_limit)
    gpus: list[int] = []
    if device.startswith("cuda"):
        import torch

        named = torch.device(device).index
        gpus = list(range(torch.cuda.device_count())) if named is None else [named]
    if workers == 0:
        workers = len(gpus) or max(1, usable_cores() // max(1, threads))
    if gpus:
        workers = min(workers, len(gpus))  # one worker per GPU used
    if workers == 1 and time_limit is None:
        return SerialExecutor()
    return LocalExecutor(jobs=workers, time_limit=time_limit, gpus=gpus)
