"""The authors' RFM (``xrfm.RFM``, optional extra ``rfmbench[xrfm]``) as an external reference row.

Used as xrfm's authors intend, with the traps of xrfm 0.4.5 avoided: a new ``xrfm.RFM`` per fit
(a refit would warm-start from the old M), ``reg`` and ``iters`` passed to ``fit``, rows shuffled
(its AGOP sample is the *first* rows), labels one-hot over 0..K-1. xrfm's ``agop_power`` is left at
its default 0.5, which makes its metric the AGOP itself, as in our ``rfm`` with ``agop_power=1``.

Run on the same terms as ``rfm``, so the row compares implementations, not protocols:

- the iteration (0..``iters``) is chosen on the validation rows by the metric ``rfm`` uses
  (accuracy for classification, mean squared error for regression), with xrfm's early stopping
  off (``rfm`` runs every iteration and keeps the best; ties go to the earlier one in both);
- ``fit`` takes ``X_val, y_val`` (the paper protocol's selection split), else carves
  ``val_fraction`` of the rows; ``refit_params`` hands the chosen iteration to the refit, which
  runs that many iterations on *every* training row with no validation split (``val_fraction=0``);
- ``--protocol paper`` searches the RFM paper's grid, as ``rfm`` does (``row_norm`` included).

Encoding: classes are one-hot over all K columns for every K. xrfm's own sklearn-style wrapper
(``xrfm.xRFM``) gives a binary target one column instead; here both classes get a column, as in
``rfm``, so the two rows solve the same regression problem.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from scipy.stats import loguniform, uniform
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from rfmbench.models.spec import ModelSpec
from rfmbench.models.validation import validation_split


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
        row_norm: bool = False,
        device: str = "cpu",
        random_state: int | None = None,
    ) -> None:
        self.bandwidth = bandwidth
        self.reg = reg
        self.exponent = exponent
        self.diag = diag
        self.iters = iters
        self.val_fraction = val_fraction
        self.row_norm = row_norm
        self.device = device
        self.random_state = random_state

    def _rows(self, X: np.ndarray) -> np.ndarray:
        if not self.row_norm:
            return X
        norms = np.linalg.norm(X, axis=1, keepdims=True)
        return X / np.maximum(norms, np.finfo(X.dtype).tiny)

    def fit(self, X, y, X_val=None, y_val=None):
        """Fit; choose the iteration on ``(X_val, y_val)`` or a carved split, unless there is none.

        With ``val_fraction=0`` (or ``iters=0``) and no ``X_val``, every row is used for the
        ``iters`` iterations and the last one is kept: the refit once tuning has chosen ``iters``.
        """
        import xrfm

        X, y = validate_data(self, X, y, dtype=np.float32)
        classification = isinstance(self, ClassifierMixin)
        if classification:
            check_classification_targets(y)
            self.classes_, y = np.unique(y, return_inverse=True)
        targets = self._targets(y)
        X = self._rows(X)
        if X_val is not None:
            X_val = self._rows(validate_data(self, X_val, reset=False, dtype=np.float32))
            if classification:
                y_val = np.asarray(y_val)
                labels = np.searchsorted(self.classes_, y_val).clip(0, len(self.classes_) - 1)
                if np.any(self.classes_[labels] != y_val):
                    raise ValueError(f"{type(self).__name__}: y_val has labels not seen in y")
                y_val = labels
            X_train, Y_train, Y_val = X, targets, self._targets(np.asarray(y_val))
        elif self.iters > 0 and (
            split := validation_split(
                len(X), self.val_fraction, y if classification else None, self.random_state
            )
        ):
            train, val = split
            X_train, X_val, Y_train, Y_val = X[train], X[val], targets[train], targets[val]
        else:  # the refit: every row, shuffled (xrfm's AGOP sample is the first rows)
            order = np.random.RandomState(self.random_state).permutation(len(X))
            X_train, Y_train, X_val, Y_val = X[order], targets[order], None, None
        self.model_ = xrfm.RFM(
            kernel="laplace",
            bandwidth=self.bandwidth,
            exponent=self.exponent,
            diag=self.diag,
            device=str(self.device),
            verbose=False,
        )
        selecting = X_val is not None
        # xrfm insists on validation data; the refit passes its training rows, whose scores
        # decide nothing (return_best_params=False keeps the last iteration).
        val = (X_val, Y_val) if selecting else (X_train, Y_train)
        self.model_.fit(
            (X_train, Y_train),
            val,
            reg=self.reg,
            iters=self.iters,
            tuning_metric="accuracy" if classification else "mse",
            early_stop_rfm=False,
            return_best_params=selecting,
        )
        self.n_train_rows_ = len(X_train)
        self.best_iter_ = int(self.model_.best_iter) if selecting else self.iters
        return self

    def _targets(self, y: np.ndarray) -> np.ndarray:
        if isinstance(self, ClassifierMixin):
            return np.eye(len(self.classes_), dtype=np.float32)[y]
        return np.asarray(y, dtype=np.float32).reshape(-1, 1)

    def _scores(self, X) -> np.ndarray:
        check_is_fitted(self)
        X = self._rows(validate_data(self, X, reset=False, dtype=np.float32))
        return np.asarray(self.model_.predict(X))


class XRFMClassifier(ClassifierMixin, _XRFM):
    """xrfm.RFM on one-hot labels; probabilities from xrfm's own ``predict_proba``."""

    def predict_proba(self, X) -> np.ndarray:
        check_is_fitted(self)
        X = self._rows(validate_data(self, X, reset=False, dtype=np.float32))
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


def refit_params(model: BaseEstimator) -> dict[str, Any]:
    """The iteration chosen on validation; the refit runs that many on every training row."""
    return {"iters": int(model.best_iter_), "val_fraction": 0.0}


# The RFM paper's UCI grid, as ``rfm`` searches it under --protocol paper.
# rfm's paper grid on the axes both models have (iterations 0..4 as the authors' script); rfm's
# agop_scale / max_leaf_size / dtype have no xrfm.RFM counterpart (it scales M its own way).
PAPER_SPACE: dict[str, Any] = {
    "reg": [10.0, 1.0, 0.1, 0.01, 0.001],
    "row_norm": [True, False],
    "bandwidth": [10.0],
    "diag": [False],
    "iters": [4],
}

SPEC = ModelSpec(
    name="xrfm",
    summary="the authors' xrfm.RFM (Laplace), external reference; needs rfmbench[xrfm]",
    build=build,
    space=SPACE,
    defaults=DEFAULTS,
    uses_device=True,
    requires=("xrfm",),
    refit_params=refit_params,
    paper_space=PAPER_SPACE,
)
