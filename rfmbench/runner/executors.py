"""Executors run a list of jobs and hand back each row as it finishes; only the driver writes rows.

- ``SerialExecutor``: in this process, one job after another (no time limit).
- ``LocalExecutor``: ``jobs`` worker processes on this machine. A job over its time limit becomes a
  ``timeout`` row and its worker is replaced; a worker that dies turns its job into a ``failed`` row.
  With a CUDA device, each worker is pinned to one GPU.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import queue
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from rfmbench.errors import BadOption
from rfmbench.runner.jobs import Job, JobConfig, failure_row, run_job
from rfmbench.tasks import Task

log = logging.getLogger(__name__)

OnStart = Callable[[Job], None]
OnResult = Callable[[Job, dict], None]


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
            on_result(job, run_job(job, tasks[job.dataset], config))


def _worker(inbox: Any, outbox: Any, threads: int, env: dict[str, str]) -> None:
    os.environ.update(env)
    import torch

    torch.set_num_threads(threads)
    while True:
        item = inbox.get()
        if item is None:
            return
        job, task, config = item
        outbox.put((job.key, run_job(job, task, config)))


@dataclass
class _Slot:
    """One worker process and the job it is running, if any."""

    index: int
    process: Any = None
    inbox: Any = None
    job: Job | None = None
    started: float = 0.0


class LocalExecutor:
    """Run jobs on ``jobs`` worker processes, with an optional per-job time limit in seconds."""

    def __init__(self, jobs: int = 1, time_limit: float | None = None, gpus: int = 0) -> None:
        self.jobs = jobs
        self.time_limit = time_limit
        self.gpus = gpus
        self._context = mp.get_context("spawn")  # fork is unsafe once torch has started threads

    def _start(self, slot: _Slot, outbox: Any) -> None:
        threads = max(1, (os.cpu_count() or 1) // self.jobs)
        env = {"CUDA_VISIBLE_DEVICES": str(slot.index % self.gpus)} if self.gpus else {}
        slot.inbox = self._context.Queue()
        slot.process = self._context.Process(
            target=_worker, args=(slot.inbox, outbox, threads, env), daemon=True
        )
        slot.process.start()
        slot.job = None

    def run(self, jobs, tasks, config, on_start, on_result) -> None:
        if self.gpus:
            config = replace(config, device="cuda:0")  # each worker sees only its own GPU
        outbox = self._context.Queue()
        slots = [_Slot(i) for i in range(min(self.jobs, len(jobs)) or 1)]
        pending = list(jobs)
        try:
            for slot in slots:
                self._start(slot, outbox)
            while pending or any(slot.job for slot in slots):
                for slot in slots:
                    if slot.job is None and pending:
                        slot.job, slot.started = pending.pop(0), time.monotonic()
                        on_start(slot.job)
                        slot.inbox.put((slot.job, tasks[slot.job.dataset], config))
                self._collect(slots, outbox, on_result)
                self._police(slots, outbox, config, tasks, on_result)
        finally:
            for slot in slots:
                if slot.process is not None and slot.process.is_alive():
                    slot.process.kill()

    def _collect(self, slots, outbox, on_result) -> None:
        """Hand over every row that has arrived (waiting briefly for the first)."""
        timeout = 0.2
        while True:
            try:
                key, row = outbox.get(timeout=timeout)
            except queue.Empty:
                return
            timeout = 0.0
            for slot in slots:
                if slot.job is not None and slot.job.key == key:
                    job, slot.job = slot.job, None
                    on_result(job, row)

    def _police(self, slots, outbox, config, tasks, on_result) -> None:
        """Replace workers that died or ran past the time limit; their jobs become rows."""
        for slot in slots:
            if slot.job is None:
                continue
            elapsed = time.monotonic() - slot.started
            over = self.time_limit is not None and elapsed > self.time_limit
            if not over and slot.process.is_alive():
                continue
            if over:
                slot.process.kill()
                status, reason = "timeout", f"exceeded the time limit of {self.time_limit:g} s"
            else:
                status, reason = "failed", f"worker died (exit code {slot.process.exitcode})"
            slot.process.join(timeout=5)
            job = slot.job
            log.warning("%s fold %s %s: %s", job.dataset, job.fold, job.model, reason)
            on_result(job, failure_row(job, tasks[job.dataset], config, status, reason))
            self._start(slot, outbox)


def make_executor(
    *, jobs: int = 1, time_limit: float | None = None, device: str = "cpu"
) -> Executor:
    """The executor for these options: in-process when nothing asks for worker processes."""
    if jobs < 1:
        raise BadOption(f"--jobs must be at least 1, got {jobs}")
    if time_limit is not None and time_limit <= 0:
        raise BadOption(f"--time-limit must be a positive number of seconds, got {time_limit:g}")
    if jobs == 1 and time_limit is None:
        return SerialExecutor()
    gpus = 0
    if device.startswith("cuda"):
        import torch

        gpus = torch.cuda.device_count()
        jobs = min(jobs, gpus)  # one worker per visible GPU
    return LocalExecutor(jobs=jobs, time_limit=time_limit, gpus=gpus)
