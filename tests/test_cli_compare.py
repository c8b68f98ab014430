"""`rfmbench compare` through the real CLI on results files written with append_row."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from rfmbench.cli import app
from rfmbench.results import append_row

runner = CliRunner()
REPO = Path(__file__).resolve().parents[1]
MODELS = {"rfm": 0.9, "kernel-ridge": 0.8, "random-forest": 0.85}


def write_run(path: Path, datasets: list[str], offset: float = 0.0, fail: tuple = ()) -> Path:
    """A small results CSV: 2 folds per (dataset, model); (dataset, model) in ``fail`` failed."""
    rng = np.random.default_rng(len(datasets))
    for dataset in datasets:
        kind = "regression" if dataset.startswith("reg") else "classification"
        for model, base in MODELS.items():
            for fold in range(2):
                row = {
                    "run_id": path.stem,
                    "dataset": dataset,
                    "task_kind": kind,
                    "fold": fold,
                    "model": model,
                    "status": "ok",
                }
                if (dataset, model) in fail:
                    row.update(status="failed", error="RuntimeError: boom")
                elif kind == "classification":
                    row["accuracy"] = base + offset + rng.normal(0, 0.02)
                else:
                    row.update(r2=base + offset + rng.normal(0, 0.02), rmse=1 - base)
                append_row(path, row)
    return path


@pytest.fixture
def two_runs(tmp_path: Path) -> tuple[Path, Path]:
    first = write_run(
        tmp_path / "run1.csv", [f"d{i}" for i in range(5)] + ["reg1", "reg2"], fail=(("d0", "rfm"),)
    )
    second = write_run(tmp_path / "run2.csv", ["d0", "d5"], offset=0.01)
    return first, second


def test_compare_prints_tables_writes_csv_and_png(two_runs, tmp_path: Path):
    out, plot = tmp_path / "out" / "leaderboard.csv", tmp_path / "out" / "cd.png"
    result = runner.invoke(
        app,
        ["compare", *map(str, two_runs), "--out", str(out), "--plot", str(plot)],
        terminal_width=200,
    )
    assert result.exit_code == 0, result.output
    assert "classification: accuracy (higher is better), 6 datasets" in result.stdout
    assert "regression: r2 (higher is better), 2 datasets" in result.stdout
    assert "Friedman test on 6 datasets, 3 models" in result.stdout
    assert "win rate" in result.stdout and "Wilcoxon" in result.stdout
    # Second run's d0 rows (rfm ok there) replaced the first run's 6 d0 rows.
    assert "warning: 6 rows of earlier files were replaced" in result.stderr
    board = pd.read_csv(out)
    assert {
        "task_kind",
        "rank",
        "model",
        "mean_rank",
        "mean_metric",
        "ci_low",
        "ci_high",
        "mean_normalized_score",
        "wins",
        "datasets_completed",
        "failures",
    } <= set(board)
    assert len(board) == 6 and set(board["task_kind"]) == {"classification", "regression"}
    for kind in ("classification",):  # regression has 2 datasets: Friedman runs too
        png = plot.with_name(f"cd-{kind}.png").read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000


def test_one_kind_writes_the_plot_at_the_path_given_and_all_figures_to_plot_dir(tmp_path: Path):
    path = write_run(tmp_path / "run.csv", [f"d{i}" for i in range(4)])
    plot, figs = tmp_path / "cd.png", tmp_path / "figs"
    result = runner.invoke(
        app,
        [
            "compare",
            str(tmp_path / "*.csv"),
            "--plot",
            str(plot),
            "--plot-dir",
            str(figs),
            "--pair",
            "rfm,kernel-ridge",
        ],
    )
    assert result.exit_code == 0, result.output
    assert path.exists() and plot.read_bytes()[:4] == b"\x89PNG"
    assert sorted(p.name for p in figs.iterdir()) == [
        "cd-classification.png",
        "pair-rfm-vs-kernel-ridge-classification.png",
        "ranks-classification.png",
    ]
    assert "warning" not in result.stderr


def test_failed_model_is_marked_and_counted(tmp_path: Path):
    path = write_run(tmp_path / "run.csv", ["d0", "d1", "d2"], fail=(("d0", "rfm"),))
    result = runner.invoke(
        app, ["compare", str(path), "--out", str(tmp_path / "b.csv")], terminal_width=200
    )
    assert result.exit_code == 0, result.output
    board = pd.read_csv(tmp_path / "b.csv").set_index("model")
    assert board.loc["rfm", "failures"] == 2 and board.loc["rfm", "datasets_completed"] == 2
    assert "2/3" in result.stdout and "2 !" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["missing.csv"], "results file not found: missing.csv"),
        (["nothing-*.csv"], "no results file matches nothing-*.csv"),
        (["{run}", "--metric", "rmse"], "--metric rmse is a regression metric"),
        (["{run}", "--metric", "f1"], "unknown metric 'f1'"),
        (["{run}", "--pair", "rfm"], "--pair needs two different comma-separated models"),
        (["{run}", "--pair", "rfm,zzz", "--plot-dir", "figs"], "no results for model 'zzz'"),
        (["{run}", "--plot", "cd.nope"], "cannot write a figure as '.nope'"),
        (["{bad}"], "is not an rfmbench results file"),
    ],
)
def test_user_errors_exit_2_with_one_line(tmp_path: Path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    run = write_run(tmp_path / "run.csv", ["d0", "d1", "d2"])
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
    args = [a.format(run=run, bad=tmp_path / "bad.csv") for a in args]
    result = runner.invoke(app, ["compare", *args])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]


def test_a_real_subprocess_exits_2_without_traceback(tmp_path: Path):
    result = subprocess.run(
        [sys.executable, "-m", "rfmbench", "compare", str(tmp_path / "none.csv")],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.strip().startswith("error: results file not found")
    assert "Traceback" not in result.stderr
