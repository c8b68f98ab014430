"""Task and kfold_splits: seeded outer folds that partition the rows, stratified for classification."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from rfmbench.errors import BadOption
from rfmbench.tasks import Split, kfold_splits


def labels(n: int = 100) -> np.ndarray:
    """Unbalanced classes of 50, 30 and 20 rows, in a scrambled order."""
    y = np.repeat(np.array(["a", "b", "c"], dtype=object), [n // 2, 3 * n // 10, n // 5])
    return np.random.default_rng(1).permutation(y)


def target(kind: str, n: int = 100) -> np.ndarray:
    return labels(n) if kind == "classification" else np.random.default_rng(2).normal(size=n)


@pytest.mark.parametrize("kind", ["classification", "regression"])
@pytest.mark.parametrize("folds", [2, 5, 10])
def test_folds_partition_the_rows(kind: str, folds: int) -> None:
    y = target(kind)
    splits = kfold_splits(y, kind, folds, seed=0)
    assert [s.fold for s in splits] == list(range(folds))
    assert all(isinstance(s, Split) for s in splits)
    tests = np.concatenate([s.test for s in splits])
    np.testing.assert_array_equal(np.sort(tests), np.arange(len(y)))  # each row tested once
    for split in splits:
        np.testing.assert_array_equal(
            np.sort(split.train), np.setdiff1d(np.arange(len(y)), split.test)
        )
    sizes = [len(s.test) for s in splits]
    assert max(sizes) - min(sizes) <= 1 + (kind == "classification") * 2


@pytest.mark.parametrize("folds", [2, 5])
def test_classification_folds_are_stratified(folds: int) -> None:
    y = labels()
    for split in kfold_splits(y, "classification", folds, seed=3):
        for label in ("a", "b", "c"):
            expected = np.sum(y == label) / folds
            assert abs(np.sum(y[split.test] == label) - expected) <= 1


@pytest.mark.parametrize("kind", ["classification", "regression"])
def test_splits_are_seeded(kind: str) -> None:
    y = target(kind)
    first = kfold_splits(y, kind, 5, seed=7)
    again = kfold_splits(y, kind, 5, seed=7)
    other = kfold_splits(y, kind, 5, seed=8)
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a.test, b.test)
    assert any(not np.array_equal(a.test, b.test) for a, b in zip(first, other, strict=True))


@pytest.mark.parametrize(
    ("kind", "folds"),
    [("classification", 51), ("regression", 101), ("classification", 1000)],
)
def test_more_folds_than_the_data_allow_is_a_user_error(kind: str, folds: int) -> None:
    with pytest.raises(BadOption, match="folds"):
        kfold_splits(target(kind), kind, folds, seed=0)


def test_task_basics(classification_task, regression_task) -> None:
    assert classification_task.n_classes == 3
    assert regression_task.n_classes == 0
    assert classification_task.categorical == ("color",)
    with pytest.raises(dataclasses.FrozenInstanceError):
        classification_task.name = "other"  # type: ignore[misc]
    assert classification_task.selection is None
