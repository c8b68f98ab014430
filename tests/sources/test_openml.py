"""The OpenML source through the real ``openml`` client, offline: a copy of a real client cache, and a
loopback HTTP server answering the API for an empty cache. Nothing of ours is mocked."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rfmbench.errors import DataSourceError
from rfmbench.sources import DatasetRef, LoadContext
from rfmbench.sources import openml as source
from tests.sources.conftest import TEST_SERVER, closed_port

ANNEAL = DatasetRef("anneal", {"task_id": 1882})


def check_anneal(task, folds: int) -> None:
    """What the shared sample's README documents about task 1882 (UCI anneal)."""
    assert task.kind == "classification"
    assert task.X.shape == (898, 38)
    assert len(task.categorical) == 32
    assert set(task.categorical) <= set(task.X.columns)
    assert "family" in task.categorical and "carbon" not in task.categorical
    assert int(task.X.isna().sum().sum()) > 20_000
    assert set(np.unique(task.y)) == {"1", "2", "3", "5", "U"}
    assert len(task.splits) == folds
    for i, split in enumerate(task.splits):
        assert split.fold == i
        assert len(split.train) + len(split.test) == 898 and len(split.test) in (89, 90)
        assert not set(split.train) & set(split.test)
    assert (len(task.splits[0].train), len(task.splits[0].test)) == (808, 90)  # the README's
    tests = np.concatenate([s.test for s in task.splits])
    assert len(np.unique(tests)) == len(tests)  # folds of one repeat do not overlap
    assert "openml task 1882" in task.source


def test_loads_task_from_a_real_client_cache(openml_config, sample_cache: Path) -> None:
    import openml

    openml_config.server = TEST_SERVER
    task = source.load(ANNEAL, LoadContext(folds=10, cache_dir=sample_cache))
    check_anneal(task, folds=10)
    # the official split, as the client itself reports it from the same cache
    openml_config.set_root_cache_directory(sample_cache / "openml-client")
    client_task = openml.tasks.get_task(1882, download_data=False, download_splits=True)
    train, test = client_task.get_train_test_split_indices(fold=3, repeat=0)
    np.testing.assert_array_equal(task.splits[3].train, np.sort(train))
    np.testing.assert_array_equal(task.splits[3].test, np.sort(test))
    # --folds takes the first official folds
    assert len(source.load(ANNEAL, LoadContext(folds=3, cache_dir=sample_cache)).splits) == 3


def test_fetch_from_loopback_server_then_offline(openml_config, openml_server, tmp_path) -> None:
    openml_config.server = openml_server.api
    root = tmp_path / "empty-cache"
    task = source.load(ANNEAL, LoadContext(folds=5, cache_dir=root))
    check_anneal(task, folds=5)
    assert "/api/v1/xml/task/1882" in openml_server.requests
    assert "/data/download/1666876/phpFsFYVN" in openml_server.requests

    folder = source.task_dir(root, 1882)
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["task_id"] == 1882 and meta["dataset_id"] == 2
    assert meta["dataset_name"] == "anneal" and meta["target"] == "class"
    assert meta["kind"] == "classification" and len(meta["categorical"]) == 32
    assert (meta["n_repeats"], meta["n_folds"]) == (10, 10)
    assert meta["url"].endswith("/t/1882")
    splits = pd.read_parquet(folder / "splits.parquet")
    assert len(splits) == 10 * 10 * 898  # repeats x folds x (train + test rows)
    assert isinstance(pd.read_parquet(folder / "data.parquet")["family"].dtype, pd.CategoricalDtype)

    openml_server.stop()
    seen = len(openml_server.requests)
    again = source.load(ANNEAL, LoadContext(folds=5, cache_dir=root, offline=True))
    check_anneal(again, folds=5)
    pd.testing.assert_frame_equal(again.X, task.X)
    np.testing.assert_array_equal(again.y, task.y)
    # without --offline a cached task is read from the cache too
    source.load(ANNEAL, LoadContext(folds=5, cache_dir=root))
    assert len(openml_server.requests) == seen


def test_offline_cache_miss_names_the_task_and_the_fix(openml_config, tmp_path) -> None:
    openml_config.server = f"http://127.0.0.1:{closed_port()}/api/v1/xml"
    with pytest.raises(DataSourceError) as info:
        source.load(ANNEAL, LoadContext(cache_dir=tmp_path, offline=True))
    assert "OpenML task 1882" in str(info.value) and "not in the cache" in str(info.value)
    assert "rfmbench datasets fetch" in info.value.hint


def test_unreachable_server_fails_fast_with_one_line(openml_config, tmp_path) -> None:
    openml_config.server = f"http://127.0.0.1:{closed_port()}/api/v1/xml"
    start = time.monotonic()
    with pytest.raises(DataSourceError) as info:
        source.load(ANNEAL, LoadContext(cache_dir=tmp_path))
    assert time.monotonic() - start < 30
    assert "cannot reach the OpenML server" in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_task_id_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(DataSourceError, match="no valid OpenML task id"):
        source.load(DatasetRef("x", {}), LoadContext(cache_dir=tmp_path))


def test_client_config_is_restored(openml_config, sample_cache) -> None:
    import openml

    before = (openml.config.server, openml.config.connection_n_retries)
    with source.client(sample_cache):
        assert openml.config.connection_n_retries == source.CLIENT_RETRIES
    assert (openml.config.server, openml.config.connection_n_retries) == before


def test_repeats_number_every_fold_of_every_repeat(openml_config, sample_cache) -> None:
    """``repeats = 3`` takes each repeat's official folds, numbered repeat by repeat."""
    import openml

    openml_config.server = TEST_SERVER
    ref = DatasetRef("anneal", {"task_id": 1882, "repeats": 3})
    task = source.load(ref, LoadContext(folds=4, cache_dir=sample_cache))
    assert [s.fold for s in task.splits] == list(range(12))
    assert [s.repeat for s in task.splits] == [0] * 4 + [1] * 4 + [2] * 4
    assert "repeats 0-2 x folds 0-3 of 10" in task.source
    openml_config.set_root_cache_directory(sample_cache / "openml-client")
    client_task = openml.tasks.get_task(1882, download_data=False, download_splits=True)
    for split in task.splits:
        train, test = client_task.get_train_test_split_indices(
            fold=split.fold % 4, repeat=split.repeat
        )
        np.testing.assert_array_equal(split.train, np.sort(train))
        np.testing.assert_array_equal(split.test, np.sort(test))
    # Each repeat is a new partition: its folds differ from repeat 0's.
    assert not np.array_equal(task.splits[0].test, task.splits[4].test)

    # `repeat` picks where the repeats start; one repeat keeps the single-repeat wording.
    later = source.load(
        DatasetRef("anneal", {"task_id": 1882, "repeat": 8, "repeats": 2}),
        LoadContext(folds=2, cache_dir=sample_cache),
    )
    assert [(s.fold, s.repeat) for s in later.splits] == [(0, 8), (1, 8), (2, 9), (3, 9)]
    single = source.load(ANNEAL, LoadContext(folds=3, cache_dir=sample_cache))
    assert {s.repeat for s in single.splits} == {0}
    assert "repeat 0, folds 0-2 of 10" in single.source


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"repeats": 11}, "has 10 repeat(s); dataset 'anneal' asks for 11 from repeat 0"),
        ({"repeat": 9, "repeats": 2}, "asks for 2 from repeat 9"),
        ({"repeat": 10}, "repeat 10 does not exist"),
        ({"repeats": 0}, "must be at least 1"),
        ({"repeats": "ten"}, "must be whole numbers"),
    ],
)
def test_repeats_beyond_the_task_are_a_clear_error(
    openml_config, sample_cache, params, message
) -> None:
    openml_config.server = TEST_SERVER
    ref = DatasetRef("anneal", {"task_id": 1882, **params})
    with pytest.raises(DataSourceError) as info:
        source.load(ref, LoadContext(folds=3, cache_dir=sample_cache))
    assert message in str(info.value)
