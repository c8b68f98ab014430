"""Suite files: the embedded suite ships with the repo; $RFMBENCH_SUITES_DIR adds or overrides suites."""

from __future__ import annotations

import sys
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


# --- The Grinsztajn et al. classification suites, pinned offline (see tests/data/grinsztajn) -------

GRINSZTAJN = Path(__file__).parent / "data" / "grinsztajn"
# suite -> (OpenML suite, the authors' selection table its names come from)
GRINSZTAJN_PINNED = {
    "grinsztajn-clf-num": (337, "numerical_classif.csv"),
    "grinsztajn-clf-cat": (334, "categorical_classif.csv"),
}
LISTING_SOURCE = (
    "LeoGrin/TabPFN",
    "tabpfn/test_model copy.ipynb",
    "c9c0b848098b21044990303e3abe64471b644d43",
)
NAMES_SOURCE = (
    "LeoGrin/tabular-benchmark",
    "analyses/datasets",
    "9d54cf53d9fd3159e367e70a00005f4fcbf2c79d",
)


def _toml(path: Path) -> dict:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    return tomllib.loads(path.read_text())


def grinsztajn_listing() -> dict[int, list[dict]]:
    """OpenML suite -> its tasks in order, parsed from the author's notebook output."""
    import re

    suites: dict[int, list[dict]] = {}
    current: list[dict] = []
    for line in (GRINSZTAJN / "suite_task_listing.txt").read_text().splitlines():
        if line.startswith("## suite "):
            current = suites.setdefault(int(line.split()[2]), [])
        elif line.startswith("Task id: "):
            current.append({"task_id": int(line.split()[-1])})
        elif match := re.fullmatch(r"(\d+) categorical columns", line):
            current[-1]["categorical_features"] = int(match[1])
        elif match := re.fullmatch(r"\((\d+), (\d+)\)", line):
            current[-1]["rows"], current[-1]["features"] = int(match[1]), int(match[2])
    return suites


def grinsztajn_name(table: str, rows: int, features: int) -> tuple[str, str]:
    """The one dataset of the authors' tables with these rows and features, else these rows: in the
    suite's own table first, then in the other one; and how it was matched."""
    import pandas as pd

    datasets = pd.read_csv(GRINSZTAJN / "tabular_benchmark_datasets.csv", comment="#")
    for own in (True, False):
        where = datasets[(datasets["file"] == table) == own]
        same_rows = where[where["n_samples"] == rows]
        exact = same_rows[same_rows["n_features"] == features]
        for how, found in (("rows and features", exact), ("rows", same_rows)):
            names = set(found["dataset_name"])
            if names:
                assert len(names) == 1, (table, rows, features, names)
                return names.pop(), how if own else f"{how} in {found['file'].iloc[0]}"
    raise AssertionError(f"no dataset of the authors' tables has {rows} rows")


@pytest.mark.parametrize("suite", sorted(GRINSZTAJN_PINNED))
def test_grinsztajn_lock_pins_the_authors_task_list(suite: str) -> None:
    openml_suite, table = GRINSZTAJN_PINNED[suite]
    listed = grinsztajn_listing()[openml_suite]
    refs = get_suite(suite).datasets
    assert [ref.params["task_id"] for ref in refs] == [t["task_id"] for t in listed]
    for ref, task in zip(refs, listed, strict=True):
        params = ref.params
        assert (params["rows"], params["features"]) == (task["rows"], task["features"]), ref.name
        assert params["categorical_features"] == task["categorical_features"], ref.name
        dataset, how = grinsztajn_name(table, task["rows"], task["features"])
        assert (params["dataset"], params["name_matched_on"]) == (dataset, how), ref.name
        # The dataset's name, or that name prefixed with the suite where another suite has it.
        assert ref.name in (dataset, f"{suite}-{dataset}"), ref.name


def test_grinsztajn_locks_record_their_sources() -> None:
    counts = {}
    for suite, (openml_suite, _) in GRINSZTAJN_PINNED.items():
        path = lock_path(get_suite(suite).path)
        header = {k: v for k, v in _toml(path).items() if k != "datasets"}
        assert header["suite"] == suite and header["openml_suite"] == openml_suite
        assert suite_settings(get_suite(suite))["openml_suite"] == openml_suite
        repo, path_in_repo, commit = LISTING_SOURCE
        assert (header["source_repo"], header["source_path"], header["source_commit"]) == (
            repo,
            path_in_repo,
            commit,
        )
        assert (header["names_repo"], header["names_commit"]) == (NAMES_SOURCE[0], NAMES_SOURCE[2])
        counts[suite] = header["tasks"] = len(get_suite(suite).datasets)
    # 16 and 7 tasks, as the author's listing has them; the regression suites stay unpinned.
    assert counts == {"grinsztajn-clf-num": 16, "grinsztajn-clf-cat": 7}
    for suite in ("grinsztajn-reg-num", "grinsztajn-reg-cat"):
        assert get_suite(suite).datasets == ()
