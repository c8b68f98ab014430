"""Test-fold metrics against independent computations: numpy by hand and scikit-learn."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from sklearn import metrics as sk

from rfmbench.metrics import (
    ALL_METRICS,
    CLASSIFICATION_METRICS,
    GREATER_IS_BETTER,
    PRIMARY_METRIC,
    REGRESSION_METRICS,
    classification_metrics,
    neg_log_loss_score,
    regression_metrics,
    validation_score,
)


def binary_auc(positive: np.ndarray, score: np.ndarray) -> float:
    """Mann-Whitney: the chance a positive outscores a negative, ties counting one half."""
    pos, neg = score[positive], score[~positive]
    if len(pos) == 0 or len(neg) == 0:
        return math.nan
    diff = pos[:, None] - neg[None, :]
    return float(np.mean((diff > 0) + 0.5 * (diff == 0)))


def hand_metrics(y_true, y_pred, proba, classes) -> dict[str, float]:
    proba = np.clip(proba, 1e-15, 1.0)
    proba = proba / proba.sum(axis=1, keepdims=True)
    index = np.searchsorted(classes, y_true)
    recalls = [np.mean(y_pred[y_true == c] == c) for c in classes if np.any(y_true == c)]
    aucs = [binary_auc(y_true == c, proba[:, k]) for k, c in enumerate(classes)]
    return {
        "accuracy": float(np.mean(y_true == y_pred)),
        "balanced_accuracy": float(np.mean(recalls)),
        "log_loss": float(-np.mean(np.log(proba[np.arange(len(y_true)), index]))),
        "roc_auc": aucs[1] if len(classes) == 2 else float(np.mean(aucs)),
    }


def sample(n_classes: int, n: int = 60, seed: int = 0, labels: str = "str"):
    rng = np.random.default_rng(seed)
    classes = np.array([f"c{k}" for k in range(n_classes)] if labels == "str" else range(n_classes))
    y_true = classes[rng.integers(n_classes, size=n)]
    proba = rng.dirichlet(np.ones(n_classes), size=n)
    proba[np.arange(n), np.searchsorted(classes, y_true)] += 0.3  # better than chance
    proba /= proba.sum(axis=1, keepdims=True)
    return y_true, classes[proba.argmax(axis=1)], proba, classes


def assert_metrics_equal(got: dict, expected: dict) -> None:
    assert set(got) == set(expected)
    for name, value in expected.items():
        if math.isnan(value):
            assert math.isnan(got[name]), name
        else:
            assert got[name] == pytest.approx(value, rel=1e-9, abs=1e-12), name


@pytest.mark.parametrize("labels", ["str", "int"])
@pytest.mark.parametrize("n_classes", [2, 3, 5])
def test_classification_metrics(n_classes: int, labels: str) -> None:
    y_true, y_pred, proba, classes = sample(n_classes, labels=labels)
    got = classification_metrics(y_true, y_pred, proba, classes)
    assert tuple(got) == CLASSIFICATION_METRICS
    assert_metrics_equal(got, hand_metrics(y_true, y_pred, proba, classes))
    # and scikit-learn agrees with the hand computation
    assert got["accuracy"] == pytest.approx(sk.accuracy_score(y_true, y_pred))
    assert got["balanced_accuracy"] == pytest.approx(sk.balanced_accuracy_score(y_true, y_pred))
    assert got["log_loss"] == pytest.approx(sk.log_loss(y_true, proba, labels=classes))
    if n_classes == 2:
        auc = sk.roc_auc_score(y_true == classes[1], proba[:, 1])
    else:
        auc = sk.roc_auc_score(y_true, proba, multi_class="ovr", labels=classes)
    assert got["roc_auc"] == pytest.approx(auc)


def test_without_probabilities_only_label_metrics_are_defined() -> None:
    y_true, y_pred, proba, classes = sample(3)
    got = classification_metrics(y_true, y_pred, None, classes)
    expected = hand_metrics(y_true, y_pred, proba, classes)
    assert got["accuracy"] == pytest.approx(expected["accuracy"])
    assert got["balanced_accuracy"] == pytest.approx(expected["balanced_accuracy"])
    assert math.isnan(got["log_loss"]) and math.isnan(got["roc_auc"])


@pytest.mark.parametrize("n_classes", [2, 3])
def test_a_class_missing_from_the_test_fold_leaves_roc_auc_undefined(n_classes: int) -> None:
    y_true, y_pred, proba, classes = sample(n_classes)
    keep = y_true != classes[0]
    y_true, y_pred, proba = y_true[keep], y_pred[keep], proba[keep]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scikit-learn may warn that AUC is undefined
        got = classification_metrics(y_true, y_pred, proba, classes)
    assert math.isnan(got["roc_auc"])
    expected = hand_metrics(y_true, y_pred, proba, classes)
    for name in ("accuracy", "balanced_accuracy", "log_loss"):
        assert got[name] == pytest.approx(expected[name]), name


def test_a_label_never_seen_in_training_leaves_probability_metrics_undefined() -> None:
    y_true, y_pred, proba, classes = sample(3)
    y_true = y_true.copy()
    y_true[:5] = "new"
    got = classification_metrics(y_true, y_pred, proba, classes)
    assert got["accuracy"] == pytest.approx(np.mean(y_true == y_pred))
    assert math.isnan(got["log_loss"]) and math.isnan(got["roc_auc"])


def test_zero_probability_for_the_true_class_is_clipped_not_infinite() -> None:
    classes = np.array([0, 1, 2])
    y_true = np.array([0, 1, 2, 0])
    proba = np.eye(3)[[1, 1, 2, 0]]  # the first row gives its true class probability 0
    got = classification_metrics(y_true, proba.argmax(axis=1), proba, classes)
    assert math.isfinite(got["log_loss"])
    assert got["log_loss"] == pytest.approx(
        hand_metrics(y_true, proba.argmax(1), proba, classes)["log_loss"]
    )


@pytest.mark.parametrize("seed", [0, 1])
def test_regression_metrics(seed: int) -> None:
    rng = np.random.default_rng(seed)
    y_true = rng.normal(10.0, 3.0, size=50)
    y_pred = y_true + rng.normal(0.0, 1.0, size=50)
    got = regression_metrics(y_true, y_pred)
    assert tuple(got) == REGRESSION_METRICS
    residual = y_true - y_pred
    assert got["rmse"] == pytest.approx(np.sqrt(np.mean(residual**2)))
    assert got["mae"] == pytest.approx(np.mean(np.abs(residual)))
    total = np.sum((y_true - y_true.mean()) ** 2)
    assert got["r2"] == pytest.approx(1.0 - np.sum(residual**2) / total)


def test_metric_tables_are_consistent() -> None:
    assert set(GREATER_IS_BETTER) == set(ALL_METRICS)
    assert ALL_METRICS == CLASSIFICATION_METRICS + REGRESSION_METRICS
    assert {k: GREATER_IS_BETTER[m] for k, m in PRIMARY_METRIC.items()} == {
        "classification": True,
        "regression": True,
    }
    assert not GREATER_IS_BETTER["log_loss"] and not GREATER_IS_BETTER["rmse"]


class _Fixed:
    """A fitted classifier stand-in whose probabilities are given."""

    def __init__(self, classes, proba) -> None:
        self.classes_, self.proba = np.asarray(classes), np.asarray(proba)

    def predict_proba(self, X):
        return self.proba

    def predict(self, X):
        return self.classes_[self.proba.argmax(axis=1)]


def test_validation_scores_match_sklearn() -> None:
    rng = np.random.default_rng(0)
    proba = rng.dirichlet(np.ones(3), size=40)
    y = np.array(["a", "b", "c"])[rng.integers(0, 3, size=40)]
    model = _Fixed(["a", "b", "c"], proba)
    X = np.zeros((40, 1))
    assert neg_log_loss_score(model, X, y, "classification") == pytest.approx(
        -sk.log_loss(y, proba, labels=["a", "b", "c"]), rel=1e-12
    )
    assert validation_score(model, X, y, "classification") == sk.accuracy_score(y, model.predict(X))


def test_a_validation_label_the_model_never_saw_costs_the_clipped_loss() -> None:
    """Rows of a class missing from the inner training part get probability 0, clipped."""
    model = _Fixed([0, 1], [[0.5, 0.5], [0.9, 0.1]])
    score = neg_log_loss_score(model, np.zeros((2, 1)), np.array([0, 2]), "classification")
    assert score == pytest.approx((math.log(0.5) + math.log(np.finfo(float).eps)) / 2)


def test_regression_validation_score_is_minus_the_mse() -> None:
    class Constant:
        def predict(self, X):
            return np.full(len(X), 2.0)

    y = np.array([1.0, 2.0, 4.0])
    expected = -sk.mean_squared_error(y, np.full(3, 2.0))
    for score in (validation_score, neg_log_loss_score):
        assert score(Constant(), np.zeros((3, 1)), y, "regression") == pytest.approx(expected)
