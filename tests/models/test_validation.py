"""The one validation-split rule shared by rfm, mlp, the GBDTs and the xRFM reference."""

from __future__ import annotations

import numpy as np
import pytest

from rfmbench.models.validation import validation_split


def test_size_bounds_and_no_split_cases():
    assert validation_split(10, 0.0) is None
    assert validation_split(1, 0.5) is None
    train, val = validation_split(10, 0.2, random_state=0)
    assert len(val) == 2 and len(train) == 8
    assert sorted(np.concatenate([train, val]).tolist()) == list(range(10))
    assert len(validation_split(3, 0.01, random_state=0)[1]) == 1  # at least one row held out
    assert len(validation_split(3, 0.99, random_state=0)[0]) == 1  # at least one row kept


def test_stratified_when_every_class_fits():
    labels = np.repeat([0, 1, 2], [50, 30, 20])
    train, val = validation_split(100, 0.2, labels, random_state=1)
    assert np.bincount(labels[val]).tolist() == [10, 6, 4]  # the class proportions exactly


@pytest.mark.parametrize(
    "labels",
    [
        np.array([0] * 20 + [1]),  # a class with one row: cannot stratify
        np.arange(12) % 6,  # six classes, two held-out rows: cannot hold one of each
    ],
)
def test_rare_classes_fall_back_to_a_plain_split_instead_of_raising(labels):
    train, val = validation_split(len(labels), 0.2, labels, random_state=0)
    assert len(train) + len(val) == len(labels) and len(val) >= 1


def test_seeded():
    a = validation_split(50, 0.3, random_state=7)
    b = validation_split(50, 0.3, random_state=7)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize("name", ["rfm", "mlp", "xgboost", "lightgbm", "xrfm"])
def test_models_that_hold_out_rows_accept_fewer_held_out_rows_than_classes(name):
    """Two held-out rows and three classes: stratifying would raise; the split falls back."""
    from rfmbench.models.registry import MODELS

    spec = MODELS[name]
    if not spec.available():
        pytest.skip(f"{name} is not installed")
    rng = np.random.default_rng(0)
    X = rng.normal(size=(11, 3))
    y = np.array([0] * 4 + [1] * 4 + [2] * 3)
    model = spec.make("classification", spec.defaults, device="cpu", seed=0, n_jobs=1)
    model.fit(X, y)
    assert set(model.predict(X)) <= {0, 1, 2}
