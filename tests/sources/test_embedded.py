"""The embedded source: scikit-learn's bundled datasets as Tasks, offline, with seeded outer folds."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import datasets as sk_datasets

from rfmbench.errors import UnknownName
from rfmbench.sources import DatasetRef, LoadContext, get_loader
from rfmbench.sources.embedded import load

# name: (scikit-learn loader, kind, rows, features, classes)
EXPECTED = {
    "iris": ("load_iris", "classification", 150, 4, 3),
    "wine": ("load_wine", "classification", 178, 13, 3),
    "breast_cancer": ("load_breast_cancer", "classification", 569, 30, 2),
    "digits": ("load_digits", "classification", 1797, 64, 10),
    "diabetes": ("load_diabetes", "regression", 442, 10, 0),
}


@pytest.mark.parametrize("name", list(EXPECTED))
def test_embedded_dataset(name: str) -> None:
    function, kind, rows, features, classes = EXPECTED[name]
    task = load(DatasetRef(name), LoadContext(folds=5, seed=0))
    assert task.name == name
    assert task.kind == kind
    assert task.X.shape == (rows, features)
    assert task.y.shape == (rows,)
    assert task.n_classes == classes
    assert task.categorical == ()
    assert task.selection is None
    X, y = getattr(sk_datasets, function)(return_X_y=True)
    np.testing.assert_array_equal(task.X.to_numpy(), X)
    np.testing.assert_array_equal(task.y, y)

    assert len(task.splits) == 5
    tested = np.concatenate([split.test for split in task.splits])
    np.testing.assert_array_equal(np.sort(tested), np.arange(rows))
    for split in task.splits:
        assert len(np.intersect1d(split.train, split.test)) == 0
        assert len(split.train) + len(split.test) == rows
        if kind == "classification":
            # stratified: each class's share of a test fold is within one row of a fifth of it
            for label, count in zip(*np.unique(task.y, return_counts=True), strict=True):
                assert abs(np.sum(task.y[split.test] == label) - count / 5) <= 1


def test_folds_and_seed_come_from_the_context() -> None:
    ref = DatasetRef("iris")
    three = load(ref, LoadContext(folds=3, seed=1))
    again = load(ref, LoadContext(folds=3, seed=1))
    other = load(ref, LoadContext(folds=3, seed=2))
    assert len(three.splits) == 3
    for a, b in zip(three.splits, again.splits, strict=True):
        np.testing.assert_array_equal(a.test, b.test)
    assert any(
        not np.array_equal(a.test, b.test) for a, b in zip(three.splits, other.splits, strict=True)
    )


def test_unknown_embedded_dataset() -> None:
    with pytest.raises(UnknownName, match="unknown embedded dataset 'nope'.*iris"):
        load(DatasetRef("nope"), LoadContext())


def test_loader_registry() -> None:
    assert get_loader("embedded") is load
    with pytest.raises(UnknownName, match="unknown source"):
        get_loader("no-such-source")
