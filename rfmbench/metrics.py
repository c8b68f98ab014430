"""Test-fold metrics, computed with scikit-learn. A metric that is undefined on a fold is NaN."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from sklearn import metrics as sk

CLASSIFICATION_METRICS = ("accuracy", "balanced_accuracy", "log_loss", "roc_auc")
REGRESSION_METRICS = ("rmse", "mae", "r2")
ALL_METRICS = CLASSIFICATION_METRICS + REGRESSION_METRICS
# Direction of each metric: True when larger is better.
GREATER_IS_BETTER = {
    "accuracy": True,
    "balanced_accuracy": True,
    "log_loss": False,
    "roc_auc": True,
    "rmse": False,
    "mae": False,
    "r2": True,
}
PRIMARY_METRIC = {"classification": "accuracy", "regression": "r2"}

# Selection scores (inner-CV means, validation losses of an iteration or an epoch) closer than this,
# relative to their size, are ties, and a tie goes to the earlier candidate. It lies above the
# rounding that differs between machines (float32's epsilon is 1.2e-7; BLAS kernels and thread
# counts change the order of sums) and below any difference worth choosing by (an accuracy step is
# 1 / n_valid, 1e-6 relative only past a million validation rows), so a last-bit difference
# between two machines cannot flip a chosen hyperparameter, iteration or epoch.
TIE_RTOL = 1e-6


def beats(score: float, best: float) -> bool:
    """True when ``score`` is higher than ``best`` by more than the tie tolerance ``TIE_RTOL``.

    Scanning candidates in order and replacing the best only when a new score ``beats`` it keeps
    the earliest of near-equal candidates. NaN never beats anything; anything finite beats -inf.
    """
    if math.isnan(score):
        return False
    if math.isinf(best) and best < 0:
        return score > best
    return score - best > TIE_RTOL * max(abs(score), abs(best))


def classification_metrics(
    y_true: np.ndarray, y_pred: np.ndarray, proba: np.ndarray | None, classes: np.ndarray
) -> dict[str, float]:
    """Accuracy, balanced accuracy, and (given probabilities over ``classes``) log loss and ROC AUC."""
    result = {
        "accuracy": float(sk.accuracy_score(y_true, y_pred)),
        "balanced_accuracy": float(sk.balanced_accuracy_score(y_true, y_pred)),
        "log_loss": math.nan,
        "roc_auc": math.nan,
    }
    if proba is None or not np.isin(y_true, classes).all():
        return result
    proba = np.clip(proba, 1e-15, 1.0)
    proba = proba / proba.sum(axis=1, keepdims=True)
    result["log_loss"] = float(sk.log_loss(y_true, proba, labels=classes))
    try:
        if len(classes) == 2:
            result["roc_auc"] = float(sk.roc_auc_score(y_true == classes[1], proba[:, 1]))
        else:
            result["roc_auc"] = float(
                sk.roc_auc_score(y_true, proba, multi_class="ovr", labels=classes)
            )
    except ValueError:  # a class absent from the test fold leaves AUC undefined
        pass
    return result


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """RMSE, MAE and R² on the original target scale."""
    return {
        "rmse": float(sk.root_mean_squared_error(y_true, y_pred)),
        "mae": float(sk.mean_absolute_error(y_true, y_pred)),
        "r2": float(sk.r2_score(y_true, y_pred)),
    }


def validation_score(model: Any, X: np.ndarray, y: np.ndarray, kind: str) -> float:
    """Accuracy (classification) or minus the mean squared error (regression) of ``model`` on
    held-out rows: larger is better."""
    predicted = model.predict(X)
    if kind == "classification":
        return float(np.mean(predicted == y))
    return -float(np.mean((np.asarray(predicted, dtype=float) - y) ** 2))


def neg_log_loss_score(model: Any, X: np.ndarray, y: np.ndarray, kind: str) -> float:
    """Minus the log loss of ``model.predict_proba`` on held-out classification rows (columns in
    the order of ``model.classes_``); regression as `validation_score`.

    A proper scoring rule changes with every row's probability, where accuracy moves in steps of
    one row: on a small validation split many candidates tie on accuracy, or one wins by a row.
    A held-out label the model never saw (absent from its training part) has probability 0,
    clipped like any other to float64's epsilon, as scikit-learn's ``log_loss`` clips.
    """
    if kind != "classification":
        return validation_score(model, X, y, kind)
    proba = np.asarray(model.predict_proba(X), dtype=np.float64)
    classes = np.asarray(model.classes_)
    y = np.asarray(y)
    column = np.clip(np.searchsorted(classes, y), 0, len(classes) - 1)
    seen = classes[column] == y
    p_true = np.where(seen, proba[np.arange(len(y)), column], 0.0)
    eps = np.finfo(np.float64).eps
    return float(np.mean(np.log(np.clip(p_true, eps, 1.0))))
