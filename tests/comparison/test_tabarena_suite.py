"""The tabarena suite against TabArena-v0.1's own task metadata (a copy of its columns in
tests/comparison/data, one row per split), offline."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from typer.testing import CliRunner

from rfmbench.cli import app
from rfmbench.comparison.leaderboard import DEFAULT_METRIC
from rfmbench.suites import get_suite

METADATA = Path(__file__).parent / "data" / "tabarena_v0.1_tasks_metadata.csv"


def tasks_from_metadata() -> pd.DataFrame:
    splits = pd.read_csv(METADATA, comment="#")
    return splits.groupby("dataset_name").agg(
        task_id=("task_id_str", "first"),
        problem_type=("problem_type", "first"),
        metric=("eval_metric", "first"),
        rows=("num_instances", "first"),
        features=("num_features", "first"),
        classes=("num_classes", "first"),
        repeats=("repeat", "nunique"),
        folds=("fold", "nunique"),
    )


def test_the_suite_pins_tabarenas_51_tasks_splits_and_metrics():
    expected = tasks_from_metadata()
    suite = get_suite("tabarena")
    assert suite.source == "openml" and len(suite.datasets) == len(expected) == 51
    for ref in suite.datasets:
        row = expected.loc[ref.params.get("tabarena_name", ref.name)]
        params = ref.params
        assert params["task_id"] == row["task_id"], ref.name
        assert params["problem_type"] == row["problem_type"], ref.name
        assert params["metric"] == row["metric"], ref.name
        assert (params["rows"], params["features"]) == (row["rows"], row["features"]), ref.name
        assert params["repeats"] == row["repeats"] and row["folds"] == 3, ref.name
        if row["problem_type"] != "regression":
            assert params["classes"] == row["classes"], ref.name
        # The metric compare uses by default is TabArena's for the task's kind.
        assert ref.name == row.name or ref.name == f"tabarena-{row.name}"
        assert DEFAULT_METRIC[row["problem_type"]] == row["metric"], ref.name
    # 10 repeats for the small datasets, 3 for the others.
    small = expected["rows"] < 2500
    assert set(expected.loc[small, "repeats"]) == {10} and set(expected.loc[~small, "repeats"]) == {
        3
    }
    assert expected["problem_type"].value_counts().to_dict() == {
        "binary": 30,
        "regression": 13,
        "multiclass": 8,
    }


def test_datasets_list_shows_every_task_with_its_id_and_metric(tmp_path: Path):
    result = CliRunner().invoke(
        app,
        ["datasets", "list", "--suite", "tabarena", "--cache-dir", str(tmp_path)],
        env={"COLUMNS": "250"},
    )
    assert result.exit_code == 0, result.output
    expected = tasks_from_metadata()
    names = {r.params.get("tabarena_name", r.name): r.name for r in get_suite("tabarena").datasets}
    for name, row in expected.iterrows():
        line = next(line for line in result.stdout.splitlines() if f" {names[name]} " in line)
        assert f"task_id={row['task_id']}" in line and f"metric={row['metric']}" in line
        assert f"rows={row['rows']}" in line


def test_no_tabarena_name_names_another_suites_task():
    from rfmbench.suites import all_suites

    ours = {ref.name for ref in get_suite("tabarena").datasets}
    for name, suite in all_suites().items():
        if name != "tabarena":
            assert not ours & {ref.name for ref in suite.datasets}, name


def test_an_offline_run_without_the_cache_names_the_task(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("RFMBENCH_CACHE_DIR", str(tmp_path / "empty-cache"))
    args = ["run", "--suite", "tabarena", "--datasets", "anneal", "--offline"]
    result = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "out")])
    assert result.exit_code == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "OpenML task 363614 ('anneal') is not in the cache" in lines[0]
    result = CliRunner().invoke(app, ["datasets", "info", "tabarena-credit-g", "--offline"])
    assert result.exit_code == 2 and "OpenML task 363626" in result.stderr
