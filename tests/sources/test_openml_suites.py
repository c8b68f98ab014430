"""OpenML suites pinned by lock files: resolving through the real client against the loopback server,
then reading the lock (and the cache) with no server at all."""

from __future__ import annotations

from pathlib import Path

import pytest

from rfmbench.datasets import fetch, suite_refs
from rfmbench.errors import DataSourceError
from rfmbench.sources import LoadContext
from rfmbench.sources import openml as source
from rfmbench.suites import all_suites, get_suite, lock_path, read_lock

SUITE = """name = "mini"
source = "openml"
description = "a suite resolved from the loopback server"
openml_suite = 99
max_rows = 5000
"""


@pytest.fixture
def suites_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "suites"
    folder.mkdir()
    (folder / "mini.toml").write_text(SUITE)
    monkeypatch.setenv("RFMBENCH_SUITES_DIR", str(folder))
    return folder


def test_unresolved_suite_says_how_to_resolve(suites_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(DataSourceError, match="not resolved yet") as info:
        suite_refs(get_suite("mini"), None, LoadContext(cache_dir=tmp_path))
    assert "rfmbench datasets fetch --suite mini" in info.value.hint


def test_fetch_resolves_locks_and_caches(
    openml_config, openml_server, suites_dir: Path, tmp_path: Path
) -> None:
    openml_config.server = openml_server.api
    ctx = LoadContext(cache_dir=tmp_path / "cache", folds=3)
    records = fetch("mini", None, ctx)
    assert [r["status"] for r in records] == ["resolved", "fetched"]

    lock = lock_path(suites_dir / "mini.toml")
    entries = read_lock(lock)
    assert [(e["name"], e["task_id"], e["rows"], e["features"]) for e in entries] == [
        ("anneal", 1882, 898, 38)
    ]  # task 9999 is over max_rows
    assert "mini.lock" not in all_suites()

    openml_server.stop()
    refs = suite_refs(get_suite("mini"), None, ctx)
    assert [r.name for r in refs] == ["anneal"]
    task = source.load(refs[0], LoadContext(cache_dir=tmp_path / "cache", offline=True))
    assert task.X.shape == (898, 38)
    assert [r["status"] for r in fetch("mini", None, ctx)] == ["cached"]


REPEATED = """name = "repeated"
source = "openml"
description = "task 1882 on two repeats of its official cross-validation"

[[datasets]]
name = "anneal"
task_id = 1882
repeats = 2
"""


def test_a_suite_asking_for_repeats_runs_and_scores_every_repeat(
    openml_config, sample_cache: Path, suites_dir: Path, tmp_path: Path, monkeypatch
) -> None:
    """`repeats = 2` with --folds 3: six jobs, folds 0-5 in the results, one mean over all six."""
    import pandas as pd
    from typer.testing import CliRunner

    from rfmbench.cli import app
    from rfmbench.comparison.leaderboard import task_set
    from tests.sources.conftest import TEST_SERVER

    (suites_dir / "repeated.toml").write_text(REPEATED)
    monkeypatch.setenv("RFMBENCH_OPENML_SERVER", TEST_SERVER)  # the sample is the test server's
    out = tmp_path / "out"
    args = ["run", "--suite", "repeated", "--models", "kernel-ridge", "--folds", "3"]
    args += ["--budget", "1", "--inner-folds", "2", "--jobs", "1", "--run-id", "r"]
    result = CliRunner().invoke(app, [*args, "--out", str(out), "--cache-dir", str(sample_cache)])
    assert result.exit_code == 0, result.output

    rows = pd.read_csv(out / "r.csv")
    assert sorted(rows["fold"]) == [0, 1, 2, 3, 4, 5] and set(rows["status"]) == {"ok"}
    assert rows["source"].str.contains("repeats 0-1 x folds 0-2 of 10").all()
    assert (rows["n_train"] + rows["n_test"] == 898).all()
    # Per repeat, the first 3 of the task's 10 official folds (90 test rows each).
    assert rows.groupby(rows["fold"] // 3)["n_test"].sum().tolist() == [270, 270]

    tasks = task_set(rows)
    assert tasks.n_folds == 6
    assert tasks.metrics["anneal"] == "log_loss"  # TabArena's metric for a multiclass task
    expected = rows["log_loss"].mean()
    assert tasks.scores.loc["anneal", "kernel-ridge"] == pytest.approx(expected)


def test_every_tabarena_task_runs_tabarenas_own_splits() -> None:
    """Each tabarena entry, on an OpenML task with 10 repeats x 3 folds (as TabArena's tasks have),
    gives exactly the (repeat, fold) splits TabArena's metadata lists for it, numbered in order."""
    import numpy as np
    import pandas as pd

    metadata = pd.read_csv(
        Path(__file__).parents[1] / "comparison" / "data" / "tabarena_v0.1_tasks_metadata.csv",
        comment="#",
    )
    n = 30  # a stand-in task: 30 rows, row r tested in fold r % 3 (repeat 0), then shifted
    frame = pd.DataFrame({"x": np.arange(n, dtype=float), "y": np.arange(n) % 2})
    splits = pd.DataFrame(
        [
            {"repeat": r, "fold": f, "row": row, "test": (row + r) % 3 == f}
            for r in range(10)
            for f in range(3)
            for row in range(n)
        ]
    )
    meta = {"task_id": 1, "dataset_id": 1, "dataset_name": "stand-in", "target": "y"}
    meta |= {"kind": "classification", "categorical": [], "n_repeats": 10, "n_folds": 3, "url": ""}
    stored = source.CachedTask(frame, splits, meta)

    for ref in get_suite("tabarena").datasets:
        task = source.to_task(ref, stored, LoadContext(folds=5))  # the default --folds
        rows = metadata[metadata["dataset_name"] == ref.params.get("tabarena_name", ref.name)]
        expected = list(zip(rows["repeat"], rows["fold"], strict=True))
        assert [(s.repeat, s.fold % 3) for s in task.splits] == expected, ref.name
        assert [s.fold for s in task.splits] == list(range(len(expected))), ref.name
        for split in task.splits:  # the stored split of that repeat and fold, not another
            assert ((split.test + split.repeat) % 3 == split.fold % 3).all(), ref.name
