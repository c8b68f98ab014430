"""The library's two commands, each one call: a benchmark run and a comparison of runs.

``rfmbench run`` is `run` with its options parsed into a RunConfig (plan, resume check,
execution, results, leaderboard); ``rfmbench compare`` is `compare` (merge results files, rank on
TabArena's terms, tests, table and figures); the CLI only renders what they return::

    import rfmbench

    result = rfmbench.run(rfmbench.RunConfig(datasets=("iris", "wine"), folds=3))
    print(result.leaderboard)
    comparison = rfmbench.compare([result.results_path], plot_dir="figures")
    print(comparison.summary())
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from rfmbench.config import RunConfig
from rfmbench.devices import resolve_device
from rfmbench.results import read_run, run_path, write_frame
from rfmbench.runner.executors import make_executor
from rfmbench.runner.jobs import OnResult, OnStart
from rfmbench.runner.plan import Plan, check_resumable, make_plan, pending_jobs, run_plan

if TYPE_CHECKING:
    from rfmbench.comparison.stats import KindComparison

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
    from rfmbench.comparison.leaderboard import leaderboard

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


@dataclass
class CompareResult:
    """What a comparison produced: the merged rows, one comparison per task kind, files written."""

    paths: list[Path]  # the results files read, globs expanded
    rows: pd.DataFrame  # merged: a later file's row for the same (dataset, fold, model) wins
    replaced: int  # rows of earlier files replaced that way
    comparisons: list[KindComparison]
    table_path: Path | None = None
    figures: list[Path] = field(default_factory=list)
    skipped_figures: list[str] = field(default_factory=list)  # why a figure asked for was not drawn

    def summary(self) -> pd.DataFrame:
        """One row per (task kind, model): the table ``--out`` writes."""
        from rfmbench.comparison.stats import summary_frame

        return summary_frame(self.comparisons)


def compare(
    files: Sequence[str | Path],
    *,
    metric: str | None = None,
    impute_with: str | None = "auto",
    elo_reference: str | None = "auto",
    out: Path | str | None = None,
    plot: Path | str | None = None,
    plot_dir: Path | str | None = None,
    pair: str | Sequence[str] | None = None,
    seed: int = 0,
) -> CompareResult:
    """Compare the runs in ``files`` (glob patterns allowed) per task kind.

    Every option is checked before a file is read (`rfmbench.comparison.stats.check_options`).
    The files are merged (a later file's row for the same job wins), the models ranked on
    TabArena's terms (Elo with a bootstrap interval from ``seed``, improvability, win rate, mean
    rank, failures imputed by ``impute_with``) with Friedman / Nemenyi / Wilcoxon-Holm tests on
    ``metric`` (None: TabArena's per task). ``out`` receives the table as CSV; ``plot`` the
    critical-difference diagram, ``plot_dir`` every figure (``pair``: the two models of the
    scatter).
    """
    from rfmbench.comparison.plots import write_feature_plots, write_plots
    from rfmbench.comparison.stats import check_options, merge_runs, summary_frame
    from rfmbench.comparison.stats import compare as compare_rows
    from rfmbench.results import expand_paths

    out, plot, plot_dir = (None if p is None else Path(p) for p in (out, plot, plot_dir))
    chosen_pair = check_options(
        metric=metric,
        out=out,
        plot=plot,
        plot_dir=plot_dir,
        pair=pair,
        seed=seed,
        impute_with=impute_with,
        elo_reference=elo_reference,
    )
    paths = expand_paths([str(f) for f in files])
    rows, replaced = merge_runs([read_run(path) for path in paths])
    comparisons = compare_rows(
        rows, metric, seed=seed, impute_with=impute_with, elo_reference=elo_reference
    )
    if out is not None:
        write_frame(out, summary_frame(comparisons))
    figures, skipped = write_plots(comparisons, plot=plot, plot_dir=plot_dir, pair=chosen_pair)
    if plot_dir is not None:  # RFM's score per iteration and the learned feature matrices
        figures += write_feature_plots(rows, paths, plot_dir)
    return CompareResult(paths, rows, replaced, comparisons, out, figures, skipped)
