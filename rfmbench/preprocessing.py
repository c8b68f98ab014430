"""Preprocessing fitted on the outer training fold only: features, class labels, regression target.

Features: impute (median / most frequent), one-hot encode categoricals (rare levels beyond
``max_categories`` grouped), standardize numeric columns. Classes are encoded 0..K-1. Regression targets
are standardized for the models and mapped back before metrics.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import LabelEncoder, OneHotEncoder, StandardScaler

MAX_CATEGORIES = 20  # one-hot columns per categorical feature; rarer levels share one column


def feature_transformer(
    X: pd.DataFrame, categorical: tuple[str, ...], scale: bool = True
) -> ColumnTransformer:
    """An unfitted transformer for ``X``'s columns: numeric -> impute (+ scale), categorical -> one-hot."""
    numeric = [c for c in X.columns if c not in categorical]
    categorical_pipe = make_pipeline(
        SimpleImputer(strategy="most_frequent"),
        OneHotEncoder(
            handle_unknown="infrequent_if_exist",
            max_categories=MAX_CATEGORIES,
            sparse_output=False,
            dtype=np.float64,
        ),
    )
    numeric_steps = [SimpleImputer(strategy="median", keep_empty_features=True)]
    numeric_pipe = make_pipeline(*numeric_steps, *([StandardScaler()] if scale else []))
    return ColumnTransformer(
        [("numeric", numeric_pipe, numeric), ("categorical", categorical_pipe, list(categorical))],
        sparse_threshold=0.0,
        verbose_feature_names_out=False,
    )


@dataclass
class PreparedFold:
    """One outer fold, preprocessed: float arrays ready for any model."""

    X_train: np.ndarray
    y_train: np.ndarray  # int labels 0..K-1, or the standardized target
    X_test: np.ndarray
    y_test_raw: np.ndarray  # the original test target, for metrics
    classes: np.ndarray | None  # original class labels, index = encoded label
    y_mean: float = 0.0
    y_scale: float = 1.0

    def target_to_original(self, y_standardized: np.ndarray) -> np.ndarray:
        """Invert the regression target's standardization."""
        return np.asarray(y_standardized) * self.y_scale + self.y_mean


def prepare_fold(
    X: pd.DataFrame,
    y: np.ndarray,
    categorical: tuple[str, ...],
    kind: str,
    train: np.ndarray,
    test: np.ndarray,
    scale: bool = True,
) -> PreparedFold:
    """Fit every transformation on the ``train`` rows only and apply it to both sides.

    ``scale=False`` keeps numeric features as stored (imputed only): the RFM paper's protocol on
    the UCI collection, whose files are standardised already.
    """
    X = _missing_as_nan(X, categorical)
    transformer = feature_transformer(X, categorical, scale)
    X_train = transformer.fit_transform(X.iloc[train]).astype(np.float64)
    X_test = transformer.transform(X.iloc[test]).astype(np.float64)
    y_train_raw, y_test_raw = y[train], y[test]
    if kind == "classification":
        encoder = LabelEncoder().fit(y_train_raw)
        return PreparedFold(
            X_train, encoder.transform(y_train_raw), X_test, y_test_raw, encoder.classes_
        )
    y_train_raw = y_train_raw.astype(np.float64)
    mean = float(y_train_raw.mean())
    scale = float(y_train_raw.std()) or 1.0
    return PreparedFold(
        X_train, (y_train_raw - mean) / scale, X_test, y_test_raw.astype(float), None, mean, scale
    )


def _missing_as_nan(X: pd.DataFrame, categorical: tuple[str, ...]) -> pd.DataFrame:
    """``X`` with every missing categorical value (None, pd.NA, NaN) as NaN.

    SimpleImputer recognises only NaN; which of the others pandas turns into NaN by itself depends
    on its version (a None in an object column stays None before pandas 3), and a None left as is
    would become a category of its own.
    """
    if not categorical:
        return X
    X = X.copy()
    for column in categorical:
        values = X[column]
        X[column] = values.astype(object).where(values.notna(), np.nan)
    return X
