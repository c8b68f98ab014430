"""The pinned OpenML suites (``datasets/suites/NAME.lock.toml``) against copies of the published task
lists in tests/data, offline: every pinned task is in the list with the same dataset, size and
classes, the suite file's filters were applied, and no dataset name means two things."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from rfmbench.cli import app
from rfmbench.suites import all_suites, get_suite, lock_path, suite_settings

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

DATA = Path(__file__).parent / "data"

# suite -> (copy of its published task list, the source the lock must name)
PINNED = {
    "cc18": (
        DATA / "openml_cc18_tasks.csv",
        (
            "openml/benchmark-suites",
            "paper_sources/main.tex",
            "3ede17ca5dbddeae59f5bef89ad64cd050b0f1b6",
        ),
    ),
}


def published(suite: str) -> pd.DataFrame:
    return pd.read_csv(PINNED[suite][0], comment="#").set_index("task_id")


def lock_header(suite: str) -> dict:
    data = tomllib.loads(lock_path(get_suite(suite).path).read_text())
    return {k: v for k, v in data.items() if k != "datasets"}


def passes_filters(row: pd.Series, settings: dict) -> bool:
    max_rows, max_features = settings.get("max_rows"), settings.get("max_features")
    return (max_rows is None or row["rows"] <= max_rows) and (
        max_features is None or row["features"] <= max_features
    )


@pytest.mark.parametrize("suite", sorted(PINNED))
def test_the_lock_pins_exactly_the_published_tasks_that_pass_the_filters(suite: str) -> None:
    expected = published(suite)
    settings = suite_settings(get_suite(suite))
    refs = get_suite(suite).datasets
    pinned = {ref.params["task_id"]: ref for ref in refs}
    assert len(pinned) == len(refs)  # no task pinned twice
    kept = {task_id for task_id, row in expected.iterrows() if passes_filters(row, settings)}
    assert set(pinned) == kept
    for task_id, ref in pinned.items():
        row = expected.loc[task_id]
        params = ref.params
        assert params["dataset"] == row["name"], ref.name
        assert params["dataset_id"] == row["dataset_id"], ref.name
        assert (params["rows"], params["features"]) == (row["rows"], row["features"]), ref.name
        assert params["classes"] == row["classes"], ref.name
        # The published name, or that name prefixed with the suite where another suite has it.
        assert ref.name in (row["name"], f"{suite}-{row['name']}"), ref.name


def test_cc18_keeps_53_of_the_73_published_tasks() -> None:
    expected = published("cc18")
    assert len(expected) == 73 and expected.index.is_unique
    refs = get_suite("cc18").datasets
    assert len(refs) == 53
    # The filters dropped what they should: over 10,000 rows (adult) or 500 features (isolet).
    pinned = {ref.params["task_id"] for ref in refs}
    assert 7592 not in pinned and 3481 not in pinned
    assert max(ref.params["rows"] for ref in refs) <= 10000
    assert max(ref.params["features"] for ref in refs) <= 500


@pytest.mark.parametrize("suite", sorted(PINNED))
def test_the_lock_records_its_source_and_filters(suite: str) -> None:
    header = lock_header(suite)
    settings = suite_settings(get_suite(suite))
    repo, path, commit = PINNED[suite][1]
    assert (header["source_repo"], header["source_path"], header["source_commit"]) == (
        repo,
        path,
        commit,
    )
    assert header["suite"] == suite and header["openml_suite"] == settings["openml_suite"]
    assert header.get("max_rows") == settings.get("max_rows")
    assert header.get("max_features") == settings.get("max_features")
    assert header["tasks"] == len(get_suite(suite).datasets)


def test_no_two_suites_give_one_name_to_different_data() -> None:
    """A dataset name means one thing across suites: suites may share a name only for the same
    data (same source, same parameters), as `reproduce` reuses `embedded`'s datasets."""
    seen: dict[str, tuple[str, str, dict]] = {}
    clashes = []
    for suite in all_suites().values():
        for ref in suite.datasets:
            meaning = (suite.source, ref.params)
            if ref.name in seen and seen[ref.name][1:] != meaning:
                clashes.append((ref.name, seen[ref.name][0], suite.name))
            seen.setdefault(ref.name, (suite.name, *meaning))
    # Known before the pinned suites: `diabetes` is scikit-learn's regression set in `embedded`
    # and OpenML's Pima classification task 37 in `tabular` (reported, not renamed here).
    assert {name for name, *_ in clashes} <= {"diabetes"}, clashes


@pytest.mark.parametrize("suite", sorted(PINNED))
def test_no_pinned_name_is_used_by_another_suite(suite: str) -> None:
    ours = {ref.name for ref in get_suite(suite).datasets}
    for name, other in all_suites().items():
        if name != suite:
            assert not ours & {ref.name for ref in other.datasets}, name


@pytest.mark.parametrize("suite", sorted(PINNED))
def test_datasets_list_shows_the_pinned_tasks_offline(suite: str, tmp_path: Path) -> None:
    # An empty cache and no server: listing a pinned suite needs neither.
    env = {"RFMBENCH_OPENML_SERVER": "http://127.0.0.1:9/api/v1/xml", "COLUMNS": "250"}
    result = CliRunner().invoke(
        app, ["datasets", "list", "--suite", suite, "--cache-dir", str(tmp_path)], env=env
    )
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    for ref in get_suite(suite).datasets:
        line = next(line for line in lines if f" {ref.name} " in line)
        assert f"task_id={ref.params['task_id']}," in line and line.rstrip("│ ").endswith("no")
