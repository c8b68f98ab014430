"""Executors: the same rows whichever runs them; dead workers and slow jobs become rows, not hangs.

The reference is an in-process (``--jobs 1``) run of the real CLI; ``--jobs 2`` and
``--executor ray`` must give the same statuses, hyperparameters and metrics (accuracy-type metrics
exactly, continuous ones to a relative 1e-9: each job runs on a fixed thread count). Ray tests are
skipped when Ray is not installed; they share one local Ray runtime (2 CPUs).
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import signal
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from rfmbench.cli import app
from rfmbench.metrics import ALL_METRICS
from rfmbench.results import read_run
from rfmbench.runner.executors import LocalExecutor, SerialExecutor, make_executor
from rfmbench.runner.jobs import run_job
from rfmbench.runner.plan import make_plan, run_plan

runner = CliRunner()

KEYS = ["dataset", "fold", "model"]
EXACT = ["status", "params", "accuracy", "balanced_accuracy"]
CONTINUOUS = [m for m in ALL_METRICS if m not in EXACT] + ["inner_cv_score"]
GRID = [
    "--datasets", "iris,diabetes", "--models", "rfm,random-forest", "--folds", "2",
    "--inner-folds", "2", "--budget", "1", "--seed", "3", "--device", "cpu",
]  # fmt: skip


def cli_run(out: Path, run_id: str, *options: str) -> pd.DataFrame:
    result = runner.invoke(app, ["run", *GRID, "--out", str(out), "--run-id", run_id, *options])
    assert result.exit_code == 0, result.output
    frame = read_run(out / f"{run_id}.csv")
    return frame.sort_values(KEYS).reset_index(drop=True)


def assert_same_rows(reference: pd.DataFrame, other: pd.DataFrame) -> None:
    assert len(reference) == 8 and (reference["status"] == "ok").all(), reference
    assert other[KEYS].equals(reference[KEYS])
    pd.testing.assert_frame_equal(other[EXACT], reference[EXACT], check_exact=True)
    pd.testing.assert_frame_equal(
        other[CONTINUOUS], reference[CONTINUOUS], check_exact=False, rtol=1e-9, atol=0.0
    )


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    """The grid run in this process, one job after another."""
    return cli_run(tmp_path_factory.mktemp("serial"), "serial")


@pytest.fixture(scope="module")
def ray_runtime():
    """One local Ray runtime for the module (an executor reuses it and leaves it running)."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


def test_two_worker_processes_give_the_same_rows(reference, tmp_path: Path) -> None:
    assert_same_rows(reference, cli_run(tmp_path, "local2", "--jobs", "2"))


def test_ray_gives_the_same_rows(reference, ray_runtime, tmp_path: Path) -> None:
    frame = cli_run(tmp_path, "ray", "--executor", "ray")
    assert_same_rows(reference, frame)
    assert set(frame["device"]) == {"cpu"}


# -- dead workers and time limits ------------------------------------------------------------


def small_plan(tmp_path: Path, datasets: str, models: list[str], **options):
    return make_plan(
        suite="embedded",
        datasets=datasets.split(","),
        models=models,
        folds=2,
        inner_folds=2,
        budget=1,
        device="cpu",
        run_id="r",
        out=tmp_path,
        **options,
    )


def test_a_killed_worker_process_becomes_a_failed_row(tmp_path: Path) -> None:
    plan = small_plan(tmp_path, "iris", ["kernel-ridge", "rfm"])
    killed: list[int] = []

    def kill_a_busy_worker() -> None:
        # Both workers got a job in the same round, so whichever is killed is busy (importing
        # or fitting): its job must come back as a failed row.
        children = [p for p in multiprocessing.active_children() if p.pid]
        os.kill(children[0].pid, signal.SIGKILL)
        killed.append(children[0].pid)

    started: list = []

    def on_start(job) -> None:
        started.append(job)
        if len(started) == 2:
            threading.Timer(0.3, kill_a_busy_worker).start()

    path = run_plan(plan, executor=LocalExecutor(jobs=2), on_start=on_start)
    rows = read_run(path)
    assert killed
    assert sorted(map(tuple, rows[KEYS].values.tolist())) == sorted(j.key for j in plan.jobs)
    failed = rows[rows["status"] == "failed"]
    assert len(failed) == 1 and failed["error"].iloc[0].startswith("worker died"), failed
    assert (rows["status"] != "failed").sum() == len(plan.jobs) - 1


def test_a_job_over_the_time_limit_becomes_a_timeout_row(tmp_path: Path) -> None:
    # The MLP on digits tunes for far longer than 1 s; kernel ridge takes a fraction of it.
    # The clock starts when the worker takes the job, so a worker's start-up is not counted.
    result = runner.invoke(
        app,
        [
            "run", "--datasets", "digits", "--models", "kernel-ridge,mlp", "--folds", "2",
            "--inner-folds", "2", "--budget", "2", "--device", "cpu", "--time-limit", "1",
            "--out", str(tmp_path), "--run-id", "slow",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = read_run(tmp_path / "slow.csv")
    assert len(rows) == 4
    mlp = rows[rows["model"] == "mlp"]
    assert (mlp["status"] == "timeout").all(), mlp
    assert mlp["error"].str.contains("time limit of 1 s").all()
    kernel_ridge = rows[rows["model"] == "kernel-ridge"]
    assert (kernel_ridge["status"] == "ok").all(), kernel_ridge


def crash_once_then_run(marker: Path):
    """A Ray task body that kills its worker on the first attempt of each job, then runs it."""
    from rfmbench.runner.ray_executor import run_remote_job

    def body(job, task, config):
        flag = marker / f"{job.dataset}-{job.fold}-{job.model}"
        if not flag.exists():
            flag.touch()
            os._exit(1)
        return run_remote_job(job, task, config)

    return body


def always_crash(job, task, config):
    os._exit(1)


def sleep_long(job, task, config):
    time.sleep(120)


@pytest.mark.slow
def test_ray_retries_a_dead_worker_once_then_fails_the_job(ray_runtime, tmp_path: Path) -> None:
    from rfmbench.runner.ray_executor import RayExecutor

    plan = small_plan(tmp_path, "iris", ["kernel-ridge"])
    once = dataclasses.replace(plan, config=plan.config.replace(out=tmp_path / "once"))
    path = run_plan(once, executor=RayExecutor(body=crash_once_then_run(tmp_path)))
    assert set(read_run(path)["status"]) == {"ok"}  # each job died once and was retried

    always = dataclasses.replace(plan, config=plan.config.replace(out=tmp_path / "always"))
    path = run_plan(always, executor=RayExecutor(body=always_crash))
    rows = read_run(path)
    assert len(rows) == len(plan.jobs) and set(rows["status"]) == {"failed"}
    assert rows["error"].str.startswith("Ray worker died").all(), rows["error"]


def test_ray_time_limit_gives_timeout_rows(ray_runtime, tmp_path: Path) -> None:
    from rfmbench.runner.ray_executor import RayExecutor

    plan = small_plan(tmp_path, "iris", ["kernel-ridge"])
    start = time.monotonic()
    path = run_plan(plan, executor=RayExecutor(time_limit=1.5, body=sleep_long))
    rows = read_run(path)
    assert len(rows) == len(plan.jobs) and set(rows["status"]) == {"timeout"}
    assert time.monotonic() - start < 60


# -- options ---------------------------------------------------------------------------------


def test_executor_ray_without_ray_is_one_line_and_exit_2(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now raises ImportError
    result = runner.invoke(app, ["run", *GRID, "--out", str(tmp_path), "--executor", "ray"])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: --executor ray needs Ray, which is not installed"), lines
    assert "pip install 'rfmbench[ray]'" in lines[0]
    assert "Traceback" not in result.output
    assert not list(tmp_path.glob("*.csv"))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"executor": "dask"}, "--executor must be one of local, ray"),
        ({"workers": -1}, "--jobs must be at least 1"),
        ({"ray_address": "head:6379"}, "--ray-address needs --executor ray"),
    ],
)
def test_bad_executor_options(options: dict, message: str) -> None:
    from rfmbench.config import RunConfig
    from rfmbench.errors import BadOption

    with pytest.raises(BadOption, match=message):
        RunConfig(**options).check()


def test_make_executor_chooses() -> None:
    assert isinstance(make_executor(), SerialExecutor)
    assert isinstance(make_executor(workers=1, time_limit=5), LocalExecutor)
    auto = make_executor(workers=0, threads=1)
    expected = len(os.sched_getaffinity(0))
    if expected == 1:
        assert isinstance(auto, SerialExecutor)
    else:
        assert isinstance(auto, LocalExecutor) and auto.jobs == expected


@pytest.mark.parametrize(("cores", "threads", "workers"), [({0}, 1, 1), ({0, 1, 2, 3}, 2, 2)])
def test_jobs_0_counts_the_cores_this_process_may_use(monkeypatch, cores, threads, workers):
    """A container pinned to fewer cores than the machine has gets that many workers, not more."""
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: cores)
    auto = make_executor(workers=0, threads=threads)
    if workers == 1:
        assert isinstance(auto, SerialExecutor)
    else:
        assert isinstance(auto, LocalExecutor) and auto.jobs == workers


def test_the_thread_count_is_the_jobs_own(monkeypatch, tmp_path: Path) -> None:
    """A job sees config.threads torch threads under the serial executor, then the old count."""
    import torch

    from rfmbench.runner import executors

    seen = []

    def spy(job, task, config):
        seen.append(torch.get_num_threads())
        return run_job(job, task, config)

    plan = small_plan(tmp_path, "iris", ["kernel-ridge"], threads=1)
    torch.set_num_threads(2)
    monkeypatch.setattr(executors, "run_job", spy)
    run_plan(plan)
    assert seen == [1, 1] and torch.get_num_threads() == 2


def test_ray_refuses_more_threads_than_any_node_has(ray_runtime, tmp_path: Path) -> None:
    from rfmbench.errors import BadOption
    from rfmbench.runner.ray_executor import RayExecutor

    plan = small_plan(tmp_path, "iris", ["kernel-ridge"], threads=64)
    with pytest.raises(BadOption, match="--threads 64 is more than any Ray node's 2 CPUs"):
        run_plan(plan, executor=RayExecutor())


# -- memory and GPUs per worker ------------------------------------------------------------------


def test_parallel_workers_plan_their_fits_on_their_share_of_the_memory(tmp_path, monkeypatch):
    """The driver measures the memory once and hands each worker its share: with 1 KiB to share,
    every kernel fit in the workers is refused by its memory plan (a failed row naming the budget),
    while the random forest, which plans nothing, runs."""
    from rfmbench.runner import executors

    monkeypatch.setattr(executors, "available_bytes", lambda device: 2048)
    plan = small_plan(tmp_path, "iris", ["kernel-ridge", "random-forest"])
    rows = read_run(run_plan(plan, executor=LocalExecutor(jobs=2)))
    kernel = rows[rows["model"] == "kernel-ridge"]
    assert (kernel["status"] == "failed").all(), kernel
    assert kernel["error"].str.contains("GiB available on the device").all()
    assert (rows.loc[rows["model"] == "random-forest", "status"] == "ok").all()


def test_worker_env_pins_gpus_or_shares_the_memory(monkeypatch):
    from rfmbench.models.memory import CPU_SHARE_ENV
    from rfmbench.runner.executors import worker_env

    assert worker_env(1, (), 4096) == ({CPU_SHARE_ENV: "4096"}, None)
    assert worker_env(0, (), None) == ({}, None)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert worker_env(3, (1,), None) == ({"CUDA_VISIBLE_DEVICES": "1"}, "cuda:1")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,6")
    assert worker_env(1, (0, 1), None) == ({"CUDA_VISIBLE_DEVICES": "6"}, "cuda:1")


def test_a_named_gpu_pins_every_worker_to_it(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    executor = make_executor(workers=0, time_limit=60, device="cuda:1")
    assert isinstance(executor, LocalExecutor)
    assert executor.gpus == (1,) and executor.jobs == 1
    both = make_executor(workers=0, time_limit=60, device="cuda")
    assert both.gpus == (0, 1) and both.jobs == 2
