"""A benchmark run end to end, as one call: plan, resume check, execution, results, leaderboard.

``rfmbench run`` is this function with its options parsed into a RunConfig::

    import rfmbench

    result = rfmbench.run(rfmbench.RunConfig(datasets=("iris", "wine"), folds=3))
    print(result.leaderboard)
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from rfmbench.config import RunConfig
from rfmbench.devices import resolve_device
from rfmbench.results import read_run, run_path, write_frame
from rfmbench.runner.executors import make_executor
from rfmbench.runner.jobs import OnResult, OnStart
from rfmbench.runner.plan import Plan, check_resumable, make_plan, pending_jobs, run_plan

# total jobs to run -> a context giving (on_start, on_done) callbacks, e.g. a progress bar.
Progress = Callable[[int], AbstractContextManager[tuple[OnStart, OnResult]]]


@dataclass
class RunResult:
    """What a run produced: its settings (run id resolved), its rows and its leaderboard."""

    config: RunConfig
    results_path: Path
    leaderboard_path: Path
    rows: pd.DataFrame
    leaderboard: pd.DataFrame
    n_jobs: int  # in the plan
    n_run: int  # run by this call (the others were done by an earlier call with this run id)


def run(
    config: RunConfig | None = None,
    *,
    on_planned: Callable[[Plan, int], None] | None = None,
    progress: Progress | None = None,
    **changes: Any,
) -> RunResult:
    """Run the benchmark ``config`` describes (``changes`` override its fields).

    Every setting is checked before anything is loaded or run. A run id that exists is resumed
    (when its settings match); ``on_planned(plan, n_to_run)`` is called once the plan and the
    jobs still to run are known, ``progress(n_to_run)`` wraps the execution.
    """
    from rfmbench.compare.leaderboard import leaderboard

    config = (config or RunConfig()).replace(**changes).check()
    executor = make_executor(
        workers=config.workers,
        time_limit=config.time_limit,
        device=str(resolve_device(config.device)),
        executor=config.executor,
        ray_address=config.ray_address,
        threads=config.threads,
    )
    plan = make_plan(config)
    check_resumable(run_path(config.out, plan.config.run_id).with_suffix(".json"), plan)
    pending = pending_jobs(plan)
    if on_planned is not None:
        on_planned(plan, len(pending))
    with (progress or _no_progress)(len(pending)) as (on_start, on_done):
        path = run_plan(plan, executor=executor, on_start=on_start, on_done=on_done)
    rows = read_run(path)
    board = leaderboard(rows)
    board_path = path.with_name(f"{plan.config.run_id}-leaderboard.csv")
    write_frame(board_path, board)
    return RunResult(plan.config, path, board_path, rows, board, len(plan.jobs), len(pending))


@contextlib.contextmanager
def _no_progress(total: int):
    yield (lambda job: None), (lambda job, row: None)
