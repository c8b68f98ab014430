"""Terminal output: the only module that imports rich (tables, progress bars, error lines)."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import pandas as pd
from rich.box import SIMPLE_HEAD
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

console = Console()
error_console = Console(stderr=True)


def error(message: str, hint: str | None = None) -> None:
    """One line on stderr: ``error: MESSAGE (hint: ...)``."""
    text = f"error: {message}" + (f" (hint: {hint})" if hint else "")
    error_console.print(text, markup=False, highlight=False, soft_wrap=True)


def warning(message: str) -> None:
    error_console.print(f"warning: {message}", markup=False, highlight=False, soft_wrap=True)


def info(message: str) -> None:
    console.print(message, markup=False, highlight=False, soft_wrap=True)


@contextlib.contextmanager
def job_progress(total: int) -> Iterator[tuple[Callable, Callable]]:
    """A progress bar over ``total`` jobs; yields (on_start(job), on_done(job, row)) callbacks."""
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[failures]}"),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=error_console, transient=False) as progress:
        bar = progress.add_task("starting", total=total, failures="")
        failed = 0

        def on_start(job: Any) -> None:
            progress.update(bar, description=f"{job.dataset} fold {job.fold} {job.model}")

        def on_done(job: Any, row: dict) -> None:
            nonlocal failed
            if row.get("status") != "ok":
                failed += 1
            progress.update(bar, advance=1, failures=f"{failed} failed" if failed else "")

        yield on_start, on_done
        progress.update(bar, description="done")


def _cell(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return escape(str(value))  # cells are data, not markup: keep "rfmbench[gbdt]" intact


def frame_table(
    frame: pd.DataFrame,
    title: str | None = None,
    columns: Sequence[str] | None = None,
    *,
    digits: Mapping[str, int] | None = None,
    **table_options: Any,
) -> Table:
    """A rich table of ``frame`` (all columns, or those named); ``digits`` per float column.

    ``table_options`` go to rich's Table (e.g. ``box``).
    """
    columns = list(columns or frame.columns)
    digits = digits or {}
    cells = {
        column: [_cell(value, digits.get(column, 4)) for value in frame[column]]
        for column in columns
    }
    table = Table(title=title, title_justify="left", **table_options)
    for column in columns:
        numeric = pd.api.types.is_numeric_dtype(frame[column])
        # Names and numbers are never cut (a narrow terminal wraps headers and text instead).
        whole = numeric or column in ("model", "dataset", "suite")
        table.add_column(
            column,
            justify="right" if numeric else "left",
            no_wrap=whole,
            min_width=max(map(len, cells[column]), default=0) if whole else None,
        )
    for i in range(len(frame)):
        table.add_row(*(cells[column][i] for column in columns))
    return table


def show_table(
    frame: pd.DataFrame,
    title: str | None = None,
    columns: Sequence[str] | None = None,
    **options: Any,
) -> None:
    console.print(frame_table(frame, title, columns, **options))


# Short headers, so the ranked table fits an 80-column terminal.
_LEADERBOARD_HEADERS = {
    "rank": "rank",
    "model": "model",
    "mean_rank": "mean\nrank",
    "mean_accuracy": "accuracy",
    "mean_r2": "R²",
    "mean_normalized_score": "norm.\nscore",
    "wins": "wins",
    "datasets_completed": "done",
    "failures": "failed",
}


def leaderboard(board: pd.DataFrame, title: str = "Leaderboard") -> None:
    """Print a leaderboard (see compare.leaderboard) as a ranked table."""
    columns = [c for c in _LEADERBOARD_HEADERS if c in board.columns]
    shown = board[columns].rename(columns=_LEADERBOARD_HEADERS)
    n = int(board["datasets"].max()) if len(board) else 0
    show_table(
        shown,
        title=f"{title} ({n} datasets; accuracy and R² are means over them)",
        digits={"mean\nrank": 2},
        # No vertical rules or edges: the nine columns fit an 80-character terminal.
        box=SIMPLE_HEAD,
        show_edge=False,
        collapse_padding=True,
    )


def comparison(result: Any) -> None:
    """Print one task kind's comparison (see compare.stats.KindComparison): table, wins, tests."""
    table = result.table.copy()
    better = "higher" if result.greater_is_better else "lower"
    table["mean metric [95% CI]"] = [
        f"{_cell(m)} [{_cell(lo)}, {_cell(hi)}]"
        for m, lo, hi in zip(table["mean_metric"], table["ci_low"], table["ci_high"], strict=True)
    ]
    # A model with any failed, timed-out or missing result is marked: its average is partial.
    table["failures"] = [
        f"{f} !" if f or c < n else str(f)
        for f, c, n in zip(
            table["failures"], table["datasets_completed"], table["datasets"], strict=True
        )
    ]
    table["datasets completed"] = [
        f"{c}/{n}" for c, n in zip(table["datasets_completed"], table["datasets"], strict=True)
    ]
    title = f"{result.kind}: {result.metric} ({better} is better), {result.n_datasets} datasets"
    show_table(
        table.rename(
            columns={"mean_rank": "mean rank", "mean_normalized_score": "normalized score"}
        ),
        title=title,
        columns=[
            "rank",
            "model",
            "mean rank",
            "mean metric [95% CI]",
            "normalized score",
            "wins",
            "datasets completed",
            "failures",
        ],
    )
    info(
        "  failed / missing on a dataset: ranked last, normalized score 0; "
        "mean metric over completed datasets only (! = partial)"
    )
    rates = result.win_rate.map(lambda v: "-" if math.isnan(v) else f"{v:.2f}")
    show_table(
        rates.rename_axis("row beats column").reset_index(),
        title=f"{result.kind}: win rate (ties count half)",
    )
    test = result.friedman
    if test.ran:
        info(
            f"{test.name} test on {test.n_datasets} datasets, {test.n_models} models: "
            f"chi2 = {test.statistic:.3f}, p = {test.p_value:.3g}: {test.note}"
        )
    else:
        info(f"{test.name} test: {test.note}")
    pairs = result.wilcoxon.copy()
    if result.nemenyi is not None:
        pairs["p_nemenyi"] = [
            result.nemenyi.loc[a, b]
            for a, b in zip(pairs["model_a"], pairs["model_b"], strict=True)
        ]
    pairs["verdict"] = ["significant" if s else "not significant" for s in pairs["significant"]]
    show_table(
        pairs,
        title=f"{result.kind}: pairwise tests (Wilcoxon signed-rank, Holm-corrected; "
        f"min_p = smallest p reachable with n datasets)",
        columns=[
            c
            for c in (
                "model_a",
                "model_b",
                "n",
                "median_difference",
                "p_value",
                "p_holm",
                "min_p",
                "p_nemenyi",
                "verdict",
            )
            if c in pairs.columns
        ],
    )
    unreachable = pairs["min_p"] >= 0.05
    if unreachable.any():
        info(
            f"  note: with {int(pairs.loc[unreachable, 'n'].max())} or fewer datasets a two-sided "
            f"Wilcoxon test cannot reach p < 0.05; those pairs cannot be significant"
        )
