"""rfmbench.run: a whole benchmark as one library call, the same rows as the CLI's."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

import rfmbench
from rfmbench.cli import app
from rfmbench.errors import BadOption, ResultsFileError
from rfmbench.results import read_run

SMALL = dict(datasets=("iris", "diabetes"), models=("kernel-ridge", "random-forest"), folds=2,
             inner_folds=2, budget=2, device="cpu", workers=1)  # fmt: skip


def test_run_writes_rows_and_leaderboard_and_resumes(tmp_path: Path) -> None:
    planned = []
    result = rfmbench.run(
        rfmbench.RunConfig(**SMALL, out=tmp_path, run_id="lib"),
        on_planned=lambda plan, n: planned.append((len(plan.jobs), n)),
    )
    assert planned == [(8, 8)] and (result.n_jobs, result.n_run) == (8, 8)
    assert result.results_path == tmp_path / "lib.csv"
    assert result.leaderboard_path == tmp_path / "lib-leaderboard.csv"
    pd.testing.assert_frame_equal(result.rows, read_run(tmp_path / "lib.csv"))
    assert set(result.rows["status"]) == {"ok"} and len(result.rows) == 8
    assert set(pd.read_csv(result.leaderboard_path)["model"]) == {"kernel-ridge", "random-forest"}

    again = rfmbench.run(result.config)  # the resolved run id: resumed, nothing left to run
    assert again.n_run == 0 and len(again.rows) == 8


def test_the_cli_gives_the_rows_of_the_library_call(tmp_path: Path) -> None:
    library = rfmbench.run(rfmbench.RunConfig(**SMALL, out=tmp_path, run_id="lib")).rows
    args = ["run", "--datasets", "iris,diabetes", "--models", "kernel-ridge,random-forest",
            "--folds", "2", "--inner-folds", "2", "--budget", "2", "--device", "cpu",
            "--jobs", "1", "--out", str(tmp_path), "--run-id", "cli"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    cli = read_run(tmp_path / "cli.csv")
    columns = ["dataset", "fold", "model", "status", "params", "accuracy", "r2"]
    pd.testing.assert_frame_equal(cli[columns], library[columns])


def test_settings_are_checked_before_anything_is_written(tmp_path: Path) -> None:
    with pytest.raises(BadOption, match="--folds must be at least 2"):
        rfmbench.run(rfmbench.RunConfig(**{**SMALL, "folds": 1}, out=tmp_path / "new"))
    with pytest.raises(BadOption, match="RunConfig has no setting 'fold'"):
        rfmbench.run(out=tmp_path, fold=3)
    assert not list(tmp_path.iterdir())


def test_a_run_id_resumed_with_other_settings_is_refused(tmp_path: Path) -> None:
    rfmbench.run(rfmbench.RunConfig(**SMALL, out=tmp_path, run_id="r"))
    with pytest.raises(ResultsFileError, match=r"threads 1 -> 2"):
        rfmbench.run(rfmbench.RunConfig(**SMALL, out=tmp_path, run_id="r", threads=2))


def test_compare_is_one_library_call_with_the_cli_table(tmp_path: Path) -> None:
    """rfmbench.compare merges, ranks and writes what `rfmbench compare` writes."""
    rfmbench.run(rfmbench.RunConfig(**SMALL, out=tmp_path, run_id="a"))
    result = rfmbench.compare(
        [str(tmp_path / "a*.csv")], out=tmp_path / "lib.csv", plot_dir=tmp_path / "figs"
    )
    assert result.paths == [tmp_path / "a.csv"]  # the glob, leaderboards left out
    assert result.replaced == 0 and len(result.rows) == 8
    assert [c.kind for c in result.comparisons] == ["classification", "regression"]
    assert result.table_path == tmp_path / "lib.csv" and result.figures
    assert all(path.is_file() and path.stat().st_size > 0 for path in result.figures)
    cli = CliRunner().invoke(
        app, ["compare", str(tmp_path / "a.csv"), "--out", str(tmp_path / "cli.csv")]
    )
    assert cli.exit_code == 0, cli.output
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "cli.csv"), pd.read_csv(result.table_path))
    pd.testing.assert_frame_equal(
        result.summary().reset_index(drop=True),
        pd.read_csv(result.table_path),
        check_dtype=False,
    )


def test_compare_checks_options_before_reading(tmp_path: Path) -> None:
    with pytest.raises(BadOption, match="--pair needs two different"):
        rfmbench.compare(["missing.csv"], pair="rfm")
    with pytest.raises(ResultsFileError, match="results file not found: missing.csv"):
        rfmbench.compare(["missing.csv"])
