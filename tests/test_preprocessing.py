"""prepare_fold: every transformation is fitted on the outer training rows only.

The expected arrays are computed by hand (pandas and scikit-learn's StandardScaler fitted on the
training rows), never taken from prepare_fold itself.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.preprocessing import StandardScaler

from rfmbench.preprocessing import MAX_CATEGORIES, prepare_fold
from tests.conftest import make_features

NUMERIC = ["x0", "x1", "x2"]


def by_hand(X: pd.DataFrame, train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Median-impute and scale the numeric columns, mode-impute and one-hot 'color': train rows only."""
    X_train, X_test = X.iloc[train], X.iloc[test]
    medians = X_train[NUMERIC].median()
    scaler = StandardScaler().fit(X_train[NUMERIC].fillna(medians))
    mode = X_train["color"].mode()[0]
    levels = sorted(X_train["color"].dropna().unique())

    def encode(part: pd.DataFrame) -> np.ndarray:
        numeric = scaler.transform(part[NUMERIC].fillna(medians))
        color = part["color"].fillna(mode).to_numpy()
        onehot = (color[:, None] == np.array(levels)[None, :]).astype(float)
        return np.hstack([numeric, onehot])

    return encode(X_train), encode(X_test)


def split_rows(n: int) -> tuple[np.ndarray, np.ndarray]:
    rows = np.random.default_rng(5).permutation(n)
    return np.sort(rows[: 2 * n // 3]), np.sort(rows[2 * n // 3 :])


def poisoned(X: pd.DataFrame, test: np.ndarray, how: str) -> pd.DataFrame:
    """A copy of X whose test rows carry values that would show if anything were fitted on them."""
    X = X.copy()
    if how == "extreme":
        X.loc[X.index[test], NUMERIC] = 1e6
    elif how == "missing":
        X.loc[X.index[test], NUMERIC] = np.nan
    elif how == "unseen-category":
        X.loc[X.index[test], "color"] = "purple"
    return X


@pytest.mark.parametrize("how", ["none", "extreme", "missing", "unseen-category"])
def test_features_are_fitted_on_the_training_rows_only(how: str) -> None:
    X = make_features(90, np.random.default_rng(0))
    train, test = split_rows(len(X))
    X = poisoned(X, test, how)
    y = np.zeros(len(X))
    fold = prepare_fold(X, y, ("color",), "regression", train, test)

    expected_train, expected_test = by_hand(X, train, test)
    np.testing.assert_allclose(fold.X_train, expected_train, atol=1e-12)
    np.testing.assert_allclose(fold.X_test, expected_test, atol=1e-12)
    # The training side is what it would be with the test rows absent altogether.
    alone = prepare_fold(
        X.iloc[train], y[train], ("color",), "regression", np.arange(len(train)), np.arange(3)
    )
    np.testing.assert_allclose(fold.X_train, alone.X_train, atol=1e-12)
    # Training columns are standardized on the training rows (imputed values included).
    np.testing.assert_allclose(fold.X_train[:, :3].mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(fold.X_train[:, :3].std(axis=0), 1.0, atol=1e-12)
    assert np.isfinite(fold.X_test).all()
    if how == "unseen-category":
        np.testing.assert_array_equal(fold.X_test[:, 3:], 0.0)  # an unseen level is all zeros


@pytest.mark.parametrize("dtype", ["object", "category"])
def test_categoricals_are_one_hot_with_missing_values_imputed(dtype: str) -> None:
    X = pd.DataFrame(
        {
            "num": [1.0, np.nan, 3.0, 4.0, 5.0, 6.0],
            "cat": ["a", "b", "a", None, "c", "b"],
        }
    ).astype({"cat": dtype})
    fold = prepare_fold(X, np.arange(6.0), ("cat",), "regression", np.arange(4), np.arange(4, 6))
    # train: num [1, nan, 3, 4] -> median 3; cat [a, b, a, None] -> mode a, levels [a, b]
    num = np.array([1.0, 3.0, 3.0, 4.0])
    scaled = (num - num.mean()) / num.std()
    expected_train = np.column_stack([scaled, [1, 0, 1, 1], [0, 1, 0, 0]])
    np.testing.assert_allclose(fold.X_train, expected_train)
    expected_test = np.column_stack([([5.0, 6.0] - num.mean()) / num.std(), [0, 0], [0, 1]])
    np.testing.assert_allclose(fold.X_test, expected_test)


def test_high_cardinality_categoricals_are_capped() -> None:
    rng = np.random.default_rng(0)
    n = 400
    X = pd.DataFrame(
        {
            "num": rng.normal(size=n),
            "city": [f"city{i % 50:02d}" for i in rng.permutation(n)],  # 50 levels
            "few": rng.choice(["u", "v"], size=n),
        }
    )
    X.loc[[0, 1], "city"] = "city99"  # a rare level, kept out of the training rows below
    train, test = np.arange(2, 300), np.concatenate([[0, 1], np.arange(300, n)])
    fold = prepare_fold(X, np.zeros(n), ("city", "few"), "regression", train, test)
    assert fold.X_train.shape == (len(train), 1 + MAX_CATEGORIES + 2)
    assert fold.X_test.shape == (len(test), 1 + MAX_CATEGORIES + 2)
    city = slice(1, 1 + MAX_CATEGORIES)
    # every row, seen level or not, is exactly one of the capped columns
    np.testing.assert_array_equal(fold.X_train[:, city].sum(axis=1), 1.0)
    np.testing.assert_array_equal(fold.X_test[:, city].sum(axis=1), 1.0)


def test_a_numeric_column_missing_in_every_training_row_is_kept() -> None:
    X = pd.DataFrame({"a": [np.nan, np.nan, np.nan, 1.0, 2.0], "b": [1.0, 2.0, 3.0, 4.0, 5.0]})
    fold = prepare_fold(X, np.arange(5.0), (), "regression", np.arange(3), np.arange(3, 5))
    assert fold.X_train.shape == (3, 2) and fold.X_test.shape == (2, 2)
    assert np.isfinite(fold.X_train).all() and np.isfinite(fold.X_test).all()


def test_class_labels_are_encoded_from_the_training_rows(classification_task) -> None:
    task = classification_task
    split = task.splits[0]
    fold = prepare_fold(task.X, task.y, task.categorical, task.kind, split.train, split.test)
    assert list(fold.classes) == sorted(set(task.y[split.train]))  # ["high", "low", "mid"]
    assert fold.y_train.dtype.kind == "i"
    assert set(fold.y_train) == {0, 1, 2}
    np.testing.assert_array_equal(fold.classes[fold.y_train], task.y[split.train])
    np.testing.assert_array_equal(fold.y_test_raw, task.y[split.test])


def test_a_class_seen_only_in_test_rows_is_not_encoded() -> None:
    X = pd.DataFrame({"a": np.arange(6.0)})
    y = np.array([3, 7, 3, 7, 9, 9])
    fold = prepare_fold(X, y, (), "classification", np.arange(4), np.arange(4, 6))
    np.testing.assert_array_equal(fold.classes, [3, 7])
    np.testing.assert_array_equal(fold.y_train, [0, 1, 0, 1])
    np.testing.assert_array_equal(fold.y_test_raw, [9, 9])


def test_regression_target_is_standardized_on_training_rows_and_inverted(regression_task) -> None:
    task = regression_task
    split = task.splits[1]
    y = task.y.copy()
    y[split.test] = 1e9  # would dominate the mean and scale if the test rows were used
    fold = prepare_fold(task.X, y, task.categorical, task.kind, split.train, split.test)
    assert fold.classes is None
    assert fold.y_mean == pytest.approx(np.mean(y[split.train]))
    assert fold.y_scale == pytest.approx(np.std(y[split.train]))
    assert np.mean(fold.y_train) == pytest.approx(0.0, abs=1e-12)
    assert np.std(fold.y_train) == pytest.approx(1.0)
    np.testing.assert_allclose(fold.target_to_original(fold.y_train), y[split.train])
    np.testing.assert_array_equal(fold.y_test_raw, y[split.test])


def test_a_constant_regression_target_is_not_divided_by_zero() -> None:
    X = pd.DataFrame({"a": np.arange(5.0)})
    fold = prepare_fold(X, np.full(5, 4.0), (), "regression", np.arange(3), np.arange(3, 5))
    assert (fold.y_mean, fold.y_scale) == (4.0, 1.0)
    np.testing.assert_array_equal(fold.y_train, 0.0)
    np.testing.assert_array_equal(fold.target_to_original([0.0, 1.0]), [4.0, 5.0])
