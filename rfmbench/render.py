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


def paragraph(message: str) -> None:
    """Text wrapped at word boundaries to the terminal's width (a note under a table)."""
    console.print(message, markup=False, highlight=False)


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
    whole: Sequence[str] = (),
    **table_options: Any,
) -> Table:
    """A rich table of ``frame`` (all columns, or those named); ``digits`` per float column.

    Numbers, model and dataset names, and the ``whole`` columns are never wrapped or cut.
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
        keep = numeric or column in ("model", "dataset", "suite") or column in whole
        table.add_column(
            column,
            justify="right" if numeric else "left",
            no_wrap=keep,
            min_width=max(map(len, cells[column]), default=0) if keep else None,
            # Text too long for its column breaks onto the next line rather than ending in "…".
            overflow="ellipsis" if keep else "fold",
        )
    for i in range(len(frame)):
        table.add_row(*(cells[column][i] for column in columns))
    return table


def _natural_width(table: Table) -> int:
    """The width ``table`` takes when nothing is squeezed."""
    options = console.options.update_width(1_000_000)
    return console.measure(table, options=options).maximum


def split_tables(
    frame: pd.DataFrame,
    title: str | None = None,
    columns: Sequence[str] | None = None,
    *,
    keys: Sequence[str] | None = None,
    width: int | None = None,
    **options: Any,
) -> list[Table]:
    """``frame`` as one table, or as several that each fit ``width`` (default: the console's).

    A narrow terminal never cuts a number: columns that do not fit go to a further table, which
    repeats the ``keys`` columns (default: rank and model, where present; else the first column).
    """
    columns = list(columns or frame.columns)
    width = width or console.width
    if keys is None:
        keys = [c for c in ("rank", "model") if c in columns] or columns[:1]
    keys = [c for c in keys if c in columns]
    rest = [c for c in columns if c not in keys]
    options = {"whole": columns, **options}
    groups: list[list[str]] = []
    for column in rest:
        candidate = [*groups[-1], column] if groups else [column]
        fits = _natural_width(frame_table(frame, None, [*keys, *candidate], **options)) <= width
        if groups and fits:
            groups[-1] = candidate
        else:
            groups.append([column])
    groups = groups or [[]]
    tables = []
    for i, group in enumerate(groups):
        part = title if i == 0 or title is None else f"{title.splitlines()[0]} (continued)"
        tables.append(frame_table(frame, part, [*keys, *group], **options))
    return tables


def show_table(
    frame: pd.DataFrame,
    title: str | None = None,
    columns: Sequence[str] | None = None,
    *,
    split: bool = False,
    **options: Any,
) -> None:
    """Print ``frame``; with ``split``, as several tables where the terminal is too narrow for
    every value to show whole (else long text columns wrap)."""
    if not split:
        console.print(frame_table(frame, title, columns, **options))
        return
    for table in split_tables(frame, title, columns, **options):
        console.print(table)


def _percent(value: float) -> str:
    return "-" if value is None or math.isnan(value) else f"{100 * value:.1f}%"


def _elo(value: float, low: float, high: float) -> str:
    if math.isnan(value):
        return "-"
    if math.isnan(low) or math.isnan(high):
        return f"{value:.0f}"
    return f"{value:.0f} [{low:.0f}, {high:.0f}]"


def board_view(board: pd.DataFrame) -> pd.DataFrame:
    """The columns of a model table (compare.leaderboard.model_table) as printed."""
    view = pd.DataFrame({"rank": board["rank"], "model": board["model"]})
    view["Elo [95% CI]"] = [
        _elo(*values)
        for values in zip(board["elo"], board["elo_low"], board["elo_high"], strict=True)
    ]
    view["improv-\nability"] = board["improvability"].map(_percent)
    view["win\nrate"] = board["win_rate"].map(_percent)
    view["mean\nrank"] = board["mean_rank"].map(lambda v: _cell(v, 2))
    view["norm.\nscore"] = board["mean_normalized_score"].map(lambda v: _cell(v, 3))
    for column, header in (("mean_accuracy", "accuracy"), ("mean_r2", "R²")):
        if column in board and board[column].notna().any():
            view[header] = board[column].map(_cell)
    if "mean_metric" in board and "metric" in board.attrs:
        view[f"{board.attrs['metric']} [95% CI]"] = [
            f"{_cell(m)} [{_cell(lo)}, {_cell(hi)}]"
            for m, lo, hi in zip(
                board["mean_metric"], board["ci_low"], board["ci_high"], strict=True
            )
        ]
    view["wins"] = board["wins"].astype(int).astype(str)
    view["imputed"] = board["imputed"].map(_percent)
    n_all = board.attrs.get("n_datasets_all", None)
    view["failed\ndatasets"] = [
        f"{f}/{n_all}" if n_all is not None else str(f) for f in board["failed_datasets"]
    ]
    return view


def leaderboard(board: pd.DataFrame, title: str = "Leaderboard") -> None:
    """Print a leaderboard (see compare.leaderboard.leaderboard) and, under it, which tasks."""
    n = int(board["datasets"].max()) if len(board) else 0
    show_table(board_view(board), title=f"{title} ({n} datasets)", split=True, **_BOARD_STYLE)
    if board.attrs.get("note"):
        paragraph(board.attrs["note"])


# No vertical rules or edges: more columns fit a narrow terminal before a table splits.
_BOARD_STYLE: dict[str, Any] = {"box": SIMPLE_HEAD, "show_edge": False}


def kind_title(result: Any) -> str:
    better = "higher" if result.greater_is_better else "lower"
    metric = result.metric
    if metric == "error":
        from rfmbench.comparison.leaderboard import describe_metrics

        metric = f"error of {describe_metrics(result.tasks.metrics)}"
    return f"{result.kind}: {metric} ({better} is better), {result.n_datasets} datasets"


def _kind_board(result: Any) -> pd.DataFrame:
    board = result.table.copy()
    board.attrs["n_datasets_all"] = result.tasks.n_datasets_all
    # The mean metric is shown when one metric scores every dataset and it is not accuracy or
    # R² (already a column).
    if result.metric not in ("error", "accuracy", "r2"):
        board.attrs["metric"] = result.metric
    return board


def comparison(result: Any) -> None:
    """Print one task kind's comparison (see compare.stats.KindComparison): table, wins, tests."""
    show_table(
        board_view(_kind_board(result)), title=kind_title(result), split=True, **_BOARD_STYLE
    )
    paragraph(result.note)
    rates = result.win_rate.map(lambda v: "-" if math.isnan(v) else f"{v:.2f}")
    show_table(
        rates.rename_axis("row beats column").reset_index(),
        title=f"{result.kind}: win rate (ties count half)",
        split=True,
    )
    test = result.friedman
    if test.ran:
        paragraph(
            f"{test.name} test on {test.n_datasets} datasets, {test.n_models} models: "
            f"chi2 = {test.statistic:.3f}, p = {test.p_value:.3g}: {test.note}"
        )
    else:
        paragraph(f"{test.name} test: {test.note}")
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
        keys=["model_a", "model_b"],
        split=True,
    )
    unreachable = pairs["min_p"] >= 0.05
    if unreachable.any():
        paragraph(
            f"note: with {int(pairs.loc[unreachable, 'n'].max())} or fewer datasets a two-sided "
            f"Wilcoxon test cannot reach p < 0.05; those pairs cannot be significant"
        )


def markdown_table(frame: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table of ``frame`` (headers on one line, pipes escaped)."""

    def text(value: Any) -> str:
        # Headers broken for the terminal ("improv-\nability") are whole again here.
        return _plain(value).replace("-\n", "").replace("\n", " ").replace("|", r"\|")

    # Numbers (also those already formatted as text) right-aligned; names left.
    left = [c in ("model", "dataset", "model_a", "model_b") for c in frame.columns]
    lines = [
        "| " + " | ".join(text(c) for c in frame.columns) + " |",
        "|" + "|".join("---" if name else "---:" for name in left) + "|",
    ]
    for _, row in frame.iterrows():
        lines.append("| " + " | ".join(text(v) for v in row) + " |")
    return "\n".join(lines)


def _plain(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def comparisons_markdown(results: Sequence[Any]) -> str:
    """Every kind's leaderboard as Markdown: a heading, the table, the note under it."""
    parts = []
    for result in results:
        parts.append(f"### {kind_title(result)}\n")
        parts.append(markdown_table(board_view(_kind_board(result))))
        parts.append(f"\n{result.note}\n")
    return "\n".join(parts)


_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}


def latex_escape(text: str) -> str:
    return "".join(_LATEX_SPECIAL.get(char, char) for char in text)


def latex_table(frame: pd.DataFrame, caption: str) -> str:
    """A LaTeX ``table`` with a ``tabular`` (booktabs rules) of ``frame``, numbers right-aligned."""

    def text(value: Any) -> str:
        return latex_escape(_plain(value).replace("-\n", "").replace("\n", " ")).replace(
            "R²", "R$^2$"
        )

    spec = "".join("l" if c in ("model", "dataset") else "r" for c in frame.columns)
    lines = [
        r"\begin{table}[t]",
        r"\centering",
        rf"\caption{{{latex_escape(caption)}}}",
        rf"\begin{{tabular}}{{{spec}}}",
        r"\toprule",
        " & ".join(text(c) for c in frame.columns) + r" \\",
        r"\midrule",
    ]
    lines += [" & ".join(text(v) for v in row) + r" \\" for _, row in frame.iterrows()]
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines)


def comparisons_latex(results: Sequence[Any]) -> str:
    """Every kind's leaderboard as a LaTeX table (needs ``booktabs``); the note is the caption."""
    return "\n\n".join(
        latex_table(board_view(_kind_board(result)), f"{kind_title(result)}. {result.note}")
        for result in results
    )


def print_text(text: str) -> None:
    """Machine-readable output (CSV, Markdown, JSON) on stdout, exactly as given."""
    console.file.write(text if text.endswith("\n") else text + "\n")
    console.file.flush()


def note(message: str) -> None:
    """A line on stderr, so stdout stays machine-readable (``--format csv|markdown|json``)."""
    error_console.print(message, markup=False, highlight=False, soft_wrap=True)
