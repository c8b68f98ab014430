"""`rfmbench compare` through the real CLI on results files written with append_row."""

from __future__ import annotations

import io
import json
import os
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
    # The fixture has no n_classes (TabArena's metric unknown): accuracy; regression: RMSE.
    assert "classification: accuracy (higher is better), 6 datasets" in result.stdout
    assert "regression: rmse (lower is better), 2 datasets" in result.stdout
    assert "Elo: random-forest = 1000" in " ".join(result.stdout.split())
    assert "Friedman test on 6 datasets, 3 models" in result.stdout
    assert "win rate" in result.stdout and "Wilcoxon" in result.stdout
    # Second run's d0 rows (rfm ok there) replaced the first run's 6 d0 rows.
    assert "warning: 6 rows of earlier files were replaced" in result.stderr
    board = pd.read_csv(out)
    assert {
        "task_kind",
        "rank",
        "model",
        "elo",
        "elo_low",
        "elo_high",
        "improvability",
        "win_rate",
        "mean_rank",
        "mean_metric",
        "ci_low",
        "ci_high",
        "mean_normalized_score",
        "mean_accuracy",
        "mean_r2",
        "wins",
        "imputed",
        "failed_datasets",
        "failed_folds",
        "datasets",
        "impute_with",
        "elo_reference",
    } <= set(board)
    assert set(board["impute_with"]) == {"random-forest"}
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


def test_a_failed_model_is_imputed_counted_and_averaged_over_the_same_tasks(tmp_path: Path):
    path = write_run(tmp_path / "run.csv", ["d0", "d1", "d2"], fail=(("d0", "rfm"),))
    out = tmp_path / "b.csv"
    result = runner.invoke(app, ["compare", str(path), "--out", str(out)])
    assert result.exit_code == 0, result.output
    board = pd.read_csv(out).set_index("model")
    assert board.loc["rfm", "failed_datasets"] == 1 and board.loc["rfm", "failed_folds"] == 2
    assert board.loc["rfm", "imputed"] == pytest.approx(1 / 3)
    assert set(board["datasets"]) == {3}
    # Independently: rfm's d0 folds take random-forest's, then the mean over datasets of the
    # mean over folds.
    rows = pd.read_csv(path)
    scores = rows[rows["status"] == "ok"].pivot_table(
        index=["dataset", "fold"], columns="model", values="accuracy"
    )
    scores["rfm"] = scores["rfm"].fillna(scores["random-forest"])
    expected = scores.groupby(level="dataset").mean().mean()
    assert board["mean_accuracy"].to_dict() == pytest.approx(expected.to_dict())
    assert "33.3%" in result.stdout and "1/3" in result.stdout
    assert "takes random-forest's result there" in " ".join(result.stdout.split())

    # On the common tasks instead: d0 is left out for every model.
    result = runner.invoke(
        app,
        [
            "compare",
            str(path),
            "--impute-with",
            "none",
            "--elo-reference",
            "rfm",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    board = pd.read_csv(out).set_index("model")
    assert set(board["datasets"]) == {2} and board.loc["rfm", "elo"] == 1000
    expected = scores.loc[["d1", "d2"]].groupby(level="dataset").mean().mean()
    assert board["mean_accuracy"].to_dict() == pytest.approx(expected.to_dict())
    text = " ".join(result.stdout.split())
    assert "2 of 3 datasets" in text and "common tasks" in text and "rfm = 1000" in text


def shown(value: float, kind: str) -> str:
    """A value as the terminal table prints it."""
    return {"pct": f"{100 * value:.1f}%", "rank": f"{value:.2f}", "metric": f"{value:.4f}"}[kind]


@pytest.mark.parametrize("columns", ["80", None])  # COLUMNS=80, or piped with no COLUMNS
def test_every_number_is_whole_in_80_columns(tmp_path: Path, columns: str | None):
    path = write_run(
        tmp_path / "run.csv", [f"d{i}" for i in range(6)] + ["reg1", "reg2"], fail=(("d0", "rfm"),)
    )
    out = tmp_path / "b.csv"
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    if columns:
        env["COLUMNS"] = columns
    result = subprocess.run(
        [sys.executable, "-m", "rfmbench", "compare", str(path), "--out", str(out)],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert "…" not in result.stdout
    board = pd.read_csv(out)
    for _, row in board.iterrows():
        # The first table of a kind has the Elo and its interval on the model's line.
        elo = f"{row['elo']:.0f} [{row['elo_low']:.0f}, {row['elo_high']:.0f}]"
        line = next(line for line in lines if f" {row['model']} " in line and elo in line)
        for column, kind in (
            ("improvability", "pct"),
            ("win_rate", "pct"),
            ("imputed", "pct"),
            ("mean_rank", "rank"),
            ("mean_accuracy" if row["task_kind"] == "classification" else "mean_r2", "metric"),
        ):
            assert shown(row[column], kind) in result.stdout, (column, line)
    assert "(continued)" in result.stdout  # the tables split rather than squeeze


def test_formats_csv_markdown_json_on_stdout(tmp_path: Path):
    path = write_run(tmp_path / "run.csv", ["d0", "d1", "d2", "reg1"], fail=(("d1", "rfm"),))
    out = tmp_path / "b.csv"
    result = runner.invoke(app, ["compare", str(path), "--format", "csv", "--out", str(out)])
    assert result.exit_code == 0, result.output
    printed = pd.read_csv(io.StringIO(result.stdout))
    pd.testing.assert_frame_equal(printed, pd.read_csv(out))
    assert "compared 1 file(s)" in result.stderr  # messages kept off stdout

    result = runner.invoke(app, ["compare", str(path), "--format", "json"])
    assert result.exit_code == 0, result.output
    documents = json.loads(result.stdout)
    assert [d["task_kind"] for d in documents] == ["classification", "regression"]
    classification = documents[0]
    assert classification["impute_with"] == "random-forest"
    assert classification["elo_reference"] == "random-forest"
    rows = {r["model"]: r for r in classification["table"]}
    assert rows["random-forest"]["elo"] == 1000 and rows["rfm"]["imputed"] == pytest.approx(1 / 3)
    assert documents[1]["metric"] == "rmse"

    result = runner.invoke(app, ["compare", str(path), "--format", "markdown"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert "### classification: accuracy (higher is better), 3 datasets" in lines
    table = [line for line in lines if line.startswith("|")]
    assert table[0].startswith("| rank | model | Elo [95% CI] | improvability | win rate |")
    assert sum(line.startswith("| 1 |") for line in table) == 2  # one table per kind
    first = table[: len(table) // 2]  # 3 models: header, rule, 3 rows per kind
    assert len(first) == 5 and all(line.count("|") == first[0].count("|") for line in first)
    assert "imputed" in first[0] and "33.3%" in "".join(first)

    result = runner.invoke(app, ["compare", str(path), "--format", "latex"])
    assert result.exit_code == 0, result.output
    latex = result.stdout
    assert latex.count(r"\begin{tabular}") == 2 and latex.count(r"\bottomrule") == 2
    rows = [line for line in latex.splitlines() if line.endswith(r"\\")]
    assert rows[0].startswith(r"rank & model & Elo [95\% CI] & improvability")
    assert len(rows) == 8  # a header and 3 models per kind
    assert all(line.count("&") == rows[0].count("&") for line in rows[:4])
    assert r"33.3\%" in latex and "33.3%" not in latex.replace(r"\%", "")


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
        (["{run}", "--format", "html"], "unknown format 'html'"),
        (["{run}", "--impute-with", "zzz"], "--impute-with zzz: no results for that model"),
        (["{run}", "--elo-reference", "zzz"], "--elo-reference zzz: no results for that model"),
        (["{run}", "--impute-with", " "], "--impute-with needs a model name"),
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
