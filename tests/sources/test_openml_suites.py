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
