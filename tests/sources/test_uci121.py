"""The UCI-121 source on the shared sample of the collection (both file layouts) and on small
layouts the tests write themselves."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from rfmbench.datasets import suite_refs
from rfmbench.errors import DataSourceError, UnknownName
from rfmbench.sources import DatasetRef, LoadContext, uci121
from rfmbench.suites import get_suite
from tests.sources.conftest import UCI_SAMPLE

SAMPLE_NAMES = sorted(p.name for p in UCI_SAMPLE.iterdir())


@pytest.mark.parametrize("name", SAMPLE_NAMES)
def test_every_sample_dataset_loads_with_valid_splits(uci_sample: Path, name: str) -> None:
    meta = uci121.read_metadata(uci_sample / name / f"{name}.txt")
    task = uci121.load(DatasetRef(name), LoadContext(data_dir=uci_sample))
    n = int(meta["n_patrons1"])
    assert task.kind == "classification" and task.categorical == ()
    assert task.X.shape == (n, int(meta["n_entradas"]))
    assert task.X.dtypes.eq(np.float64).all() and not task.X.isna().any().any()
    assert set(np.unique(task.y)) <= set(range(int(meta["n_clases"])))
    assert len(task.splits) == 4
    for i, split in enumerate(task.splits):
        assert split.fold == i
        assert not set(split.train) & set(split.test)
        both = np.concatenate([split.train, split.test])
        assert both.min() >= 0 and both.max() < n
        assert len(np.unique(both)) == n  # each pair covers fich1's rows exactly
    selection = task.selection
    assert selection is not None and selection.fold == -1
    assert len(selection.train) == int(meta["n_patrons_entrena"])
    assert len(selection.test) == int(meta["n_patrons_valida"])
    assert not set(selection.train) & set(selection.test)


def test_two_file_datasets_use_fich1_rows_only(uci_sample: Path) -> None:
    for name in ("monks-1",):
        meta = uci121.read_metadata(uci_sample / name / f"{name}.txt")
        assert "fich2" in meta
        task = uci121.load(DatasetRef(name), LoadContext(data_dir=uci_sample))
        assert len(task.X) == int(meta["n_patrons1"])
        indices = uci121.read_indices(uci_sample / name / "conxuntos_kfold.dat")
        assert max(int(i.max()) for i in indices) == int(meta["n_patrons1"]) - 1


def test_suite_lists_the_folders_of_the_data_dir(uci_sample: Path) -> None:
    refs = suite_refs(get_suite("uci121"), None, LoadContext(data_dir=uci_sample))
    assert [r.name for r in refs] == SAMPLE_NAMES
    chosen = suite_refs(get_suite("uci121"), ["iris", "zoo"], LoadContext(data_dir=uci_sample))
    assert [r.name for r in chosen] == ["iris", "zoo"]


def test_fewer_folds_when_asked(uci_sample: Path) -> None:
    task = uci121.load(DatasetRef("iris"), LoadContext(folds=2, data_dir=uci_sample))
    assert len(task.splits) == 2


def test_missing_directory_and_unknown_dataset(uci_sample: Path, tmp_path: Path) -> None:
    with pytest.raises(DataSourceError, match="does not exist") as info:
        uci121.load(DatasetRef("iris"), LoadContext(data_dir=tmp_path / "nowhere"))
    assert "datasets fetch --suite uci121" in info.value.hint
    with pytest.raises(DataSourceError, match="no UCI-121 datasets"):
        uci121.load(DatasetRef("iris"), LoadContext(data_dir=tmp_path))
    with pytest.raises(UnknownName, match="no-such"):
        uci121.load(DatasetRef("no-such"), LoadContext(data_dir=uci_sample))


def test_index_out_of_range_is_reported(uci_sample: Path, tmp_path: Path) -> None:
    shutil.copytree(uci_sample / "iris", tmp_path / "iris")
    path = tmp_path / "iris" / "conxuntos_kfold.dat"
    path.chmod(0o644)
    lines = path.read_text().splitlines()
    lines[1] += " 150"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataSourceError, match="outside the 150 rows"):
        uci121.load(DatasetRef("iris"), LoadContext(data_dir=tmp_path))


def test_data_dir_defaults_to_the_cache(tmp_path: Path) -> None:
    assert uci121.data_root(LoadContext(cache_dir=tmp_path)) == tmp_path / "uci121"
