"""Suite files: the embedded suite ships with the repo; $RFMBENCH_SUITES_DIR adds or overrides suites."""

from __future__ import annotations

from pathlib import Path

import pytest

from rfmbench.errors import RfmbenchError, UnknownName
from rfmbench.sources import DatasetRef
from rfmbench.sources.embedded import LOADERS
from rfmbench.suites import (
    SUITES_ENV,
    all_suites,
    get_suite,
    lock_path,
    read_lock,
    read_suite,
    suite_settings,
    write_lock,
)

EMBEDDED = ["iris", "wine", "breast_cancer", "digits", "diabetes"]


@pytest.fixture
def suites_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(SUITES_ENV, str(tmp_path))
    return tmp_path


def test_embedded_suite_lists_its_five_datasets() -> None:
    suite = get_suite("embedded")
    assert suite.source == "embedded"
    assert [ref.name for ref in suite.datasets] == EMBEDDED
    assert sorted(EMBEDDED) == sorted(LOADERS)  # every embedded dataset is in the suite
    assert suite.path.is_file()
    assert suite.description


def test_select_keeps_the_order_asked_for() -> None:
    suite = get_suite("embedded")
    assert suite.select(None) == suite.datasets
    assert suite.select([]) == suite.datasets
    assert [ref.name for ref in suite.select(["wine", "iris"])] == ["wine", "iris"]


def test_unknown_suite_lists_the_known_ones() -> None:
    with pytest.raises(UnknownName, match="unknown suite 'nope'.*embedded"):
        get_suite("nope")


def test_unknown_dataset_lists_the_suites_datasets() -> None:
    with pytest.raises(UnknownName, match="'nope'.*breast_cancer, diabetes, digits, iris, wine"):
        get_suite("embedded").select(["iris", "nope"])


def test_suites_dir_adds_a_suite(suites_dir: Path) -> None:
    (suites_dir / "mine.toml").write_text(
        'name = "mine"\nsource = "embedded"\ndescription = "two of them"\n'
        '[[datasets]]\nname = "wine"\n'
        '[[datasets]]\nname = "iris"\nweight = 2\ntags = ["small"]\n'
    )
    suite = get_suite("mine")
    assert suite.source == "embedded"
    assert suite.description == "two of them"
    assert suite.datasets == (
        DatasetRef("wine", {}),
        DatasetRef("iris", {"weight": 2, "tags": ["small"]}),
    )
    assert "embedded" in all_suites()  # the repo's suites are still found


def test_suites_dir_overrides_a_suite_of_the_same_name(suites_dir: Path) -> None:
    (suites_dir / "embedded.toml").write_text('source = "embedded"\n[[datasets]]\nname = "iris"\n')
    suite = get_suite("embedded")
    assert suite.path == suites_dir / "embedded.toml"
    assert [ref.name for ref in suite.datasets] == ["iris"]


def test_name_and_source_default_to_the_file_name(tmp_path: Path) -> None:
    path = tmp_path / "bare.toml"
    path.write_text("")
    suite = read_suite(path)
    assert (suite.name, suite.source, suite.datasets) == ("bare", "bare", ())


@pytest.mark.parametrize(
    "text",
    [
        "name = [unclosed",  # not TOML
        '[[datasets]]\nfile = "x.csv"\n',  # an entry without a name
        'datasets = "iris"\n',  # not a list of tables
    ],
)
def test_a_bad_suite_file_is_a_user_error(tmp_path: Path, text: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(RfmbenchError, match="bad.toml"):
        read_suite(path)


def test_a_suite_without_datasets_reads_its_lock_file(suites_dir: Path) -> None:
    (suites_dir / "pinned.toml").write_text(
        'name = "pinned"\nsource = "openml"\nopenml_suite = 99\n'
    )
    entries = [{"name": "openml-31", "task_id": 31}, {"name": 'odd "name"', "ratio": 0.5}]
    write_lock(lock_path(suites_dir / "pinned.toml"), {"suite_id": 99}, entries, comment="a\nb")
    assert read_lock(lock_path(suites_dir / "pinned.toml")) == entries
    suites = all_suites()
    assert "pinned" in suites and "pinned.lock" not in suites  # a lock file is not a suite
    assert suites["pinned"].datasets == (
        DatasetRef("openml-31", {"task_id": 31}),
        DatasetRef('odd "name"', {"ratio": 0.5}),
    )
    assert suite_settings(suites["pinned"]) == {
        "name": "pinned",
        "source": "openml",
        "openml_suite": 99,
    }
    assert [p.name for p in suites_dir.iterdir() if p.name.endswith(".tmp")] == []


def test_no_lock_file_means_no_datasets(tmp_path: Path) -> None:
    assert read_lock(tmp_path / "missing.lock.toml") == []
