"""The authors' RFM (``xrfm.RFM``, optional extra ``rfmbench[xrfm]``) as an external reference row.

Used as xrfm's authors intend, with the traps of xrfm 0.4.5 avoided: a new ``xrfm.RFM`` per fit
(a refit would warm-start from the old M), ``reg`` and ``iters`` passed to ``fit``, rows shuffled
(its AGOP sample is the *first* rows), labels one-hot over 0..K-1. xrfm's ``agop_power`` is left at
its default 0.5, which makes its metric the AGOP itself, as in our ``rfm`` with ``agop_power=1``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from scipy.stats import loguniform, uniform
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.model_selection import train_test_split
from sklearn.utils.validation import check_is_fitted, validate_data

from rfmbench.models.spec import ModelSpec


class _XRFM(BaseEstimator):
    def __init__(
        self,
        *,
        bandwidth: float = 10.0,
        reg: float = 1e-3,
        exponent: float = 1.0,
        diag: bool = False,
        iters: int = 5,
        val_fraction: float = 0.2,
        device: str = "cpu",
        random_state: int | None = None,
    ) -> None:
        self.bandwidth = bandwidth
        self.reg = reg
        self.exponent = exponent
        self.diag = diag
        self.iters = iters
        self.val_fraction = val_fraction
        self.device = device
        self.random_state = random_state

    def fit(self, X, y):
        import xrfm

        X, y = validate_data(self, X, y, dtype=np.float32)
        classification = isinstance(self, ClassifierMixin)
        if classification:
            self.classes_, y = np.unique(y, return_inverse=True)
            targets = np.eye(len(self.classes_), dtype=np.float32)[y]
        else:
            targets = np.asarray(y, dtype=np.float32).reshape(-1, 1)
        stratify = y if classification and np.bincount(y).min() >= 2 else None
        X_train, X_val, Y_train, Y_val = train_test_split(
            X,
            targets,
            test_size=self.val_fraction,
            random_state=self.random_state,
            stratify=stratify,
            shuffle=True,
        )
        self.model_ = xrfm.RFM(
            kernel="laplace",
            bandwidth=self.bandwidth,
            exponent=self.exponent,
            diag=self.diag,
            device=str(self.device),
            verbose=False,
        )
        self.model_.fit((X_train, Y_train), (X_val, Y_val), reg=self.reg, iters=self.iters)
        return self

    def _scores(self, X) -> np.ndarray:
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=np.float32)
        return np.asarray(self.model_.predict(X))


class XRFMClassifier(ClassifierMixin, _XRFM):
    """xrfm.RFM on one-hot labels; probabilities from xrfm's own ``predict_proba``."""

    def predict_proba(self, X) -> np.ndarray:
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=np.float32)
        proba = self.model_.predict_proba(torch.from_numpy(X))
        return proba.detach().cpu().numpy().astype(np.float64)

    def predict(self, X) -> np.ndarray:
        return self.classes_[np.argmax(self._scores(X), axis=1)]


class XRFMRegressor(RegressorMixin, _XRFM):
    """xrfm.RFM for regression."""

    def predict(self, X) -> np.ndarray:
        return self._scores(X).ravel()


# TabArena's xRFM search space, restricted to the Laplace kernel.
SPACE: dict[str, Any] = {
    "bandwidth": loguniform(0.5, 200),
    "reg": loguniform(1e-6, 10),
    "exponent": uniform(0.7, 0.7),
    "diag": [False, True],
}
DEFAULTS: dict[str, Any] = {"bandwidth": 10.0, "reg": 1e-3, "exponent": 1.0, "diag": False}


def build(
    kind: str, params: Mapping[str, Any], *, device: str, seed: int, n_jobs: int
) -> BaseEstimator:
    cls = XRFMClassifier if kind == "classification" else XRFMRegressor
    return cls(**{**DEFAULTS, **params}, device=device, random_state=seed)


SPEC = ModelSpec(
    name="xrfm",
    summary="the authors' xrfm.RFM (Laplace), external reference; needs rfmbench[xrfm]",
    build=build,
    space=SPACE,
    defaults=DEFAULTS,
    uses_device=True,
    requires=("xrfm",),
)
