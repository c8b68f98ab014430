"""Gradient-boosted trees (optional extras ``rfmbench[gbdt]``): XGBoost, LightGBM and CatBoost.

Each boosts up to ``n_estimators`` rounds with early stopping on a validation split carved (seeded,
stratified for classification) from the training data; the chosen round count is reported through
``refit_params`` so the final refit on the whole training fold uses it without a validation split.
Search spaces follow Grinsztajn et al. (2022), "Why do tree-based models still outperform deep
learning on tabular data?", shortened to the parameters that matter most; CatBoost's follows
Gorishniy et al. (2021), "Revisiting Deep Learning Models for Tabular Data" (the space later
benchmarks reuse).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
from scipy.stats import loguniform, randint, uniform
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from rfmbench.models.spec import ModelSpec
from rfmbench.models.validation import validation_split


class _BoostedTrees(BaseEstimator):
    """Early-stopped boosting with either library; ``params`` go to the library's estimator."""

    def __init__(
        self,
        *,
        library: str = "xgboost",
        params: dict | None = None,
        n_estimators: int = 1000,
        early_stopping_rounds: int = 50,
        val_fraction: float = 0.15,
        device: str = "cpu",
        n_jobs: int = 1,
        random_state: int | None = None,
    ) -> None:
        self.library = library
        self.params = params
        self.n_estimators = n_estimators
        self.early_stopping_rounds = early_stopping_rounds
        self.val_fraction = val_fraction
        self.device = device
        self.n_jobs = n_jobs
        self.random_state = random_state

    def _booster(self, n_estimators: int, stopping: bool):
        params = dict(self.params or {})
        classification = isinstance(self, ClassifierMixin)
        if self.library == "xgboost":
            import xgboost

            cls = xgboost.XGBClassifier if classification else xgboost.XGBRegressor
            extra = {"early_stopping_rounds": self.early_stopping_rounds} if stopping else {}
            device = "cuda" if str(self.device).startswith("cuda") else "cpu"
            return cls(
                n_estimators=n_estimators,
                n_jobs=self.n_jobs,
                random_state=self.random_state,
                device=device,
                tree_method="hist",
                **extra,
                **params,
            )
        if self.library == "catboost":
            import catboost

            cls = catboost.CatBoostClassifier if classification else catboost.CatBoostRegressor
            extra = {"early_stopping_rounds": self.early_stopping_rounds} if stopping else {}
            device = {"task_type": "GPU"} if str(self.device).startswith("cuda") else {}
            return cls(
                iterations=n_estimators,
                thread_count=self.n_jobs,
                random_seed=self.random_state,
                verbose=False,
                allow_writing_files=False,  # no catboost_info/ folder in the working directory
                **device,
                **extra,
                **params,
            )
        import lightgbm

        cls = lightgbm.LGBMClassifier if classification else lightgbm.LGBMRegressor
        return cls(
            n_estimators=n_estimators,
            n_jobs=self.n_jobs,
            random_state=self.random_state,
            verbose=-1,
            **params,
        )

    def fit(self, X, y, X_val=None, y_val=None):
        X, y = validate_data(self, X, y)
        if isinstance(self, ClassifierMixin):
            self.classes_, y = np.unique(y, return_inverse=True)
        split = None
        if X_val is None:
            labels = y if isinstance(self, ClassifierMixin) else None
            split = validation_split(len(X), self.val_fraction, labels, self.random_state)
        if split is not None:
            (train, val) = split
            X, X_val, y, y_val = X[train], X[val], y[train], y[val]
        elif X_val is not None and isinstance(self, ClassifierMixin):
            y_val = np.searchsorted(self.classes_, y_val)
        if X_val is None:
            self.booster_ = self._booster(self.n_estimators, stopping=False).fit(X, y)
            self.best_n_estimators_ = self.n_estimators
            return self
        self.booster_ = self._booster(self.n_estimators, stopping=True)
        if self.library == "xgboost":
            self.booster_.fit(X, y, eval_set=[(X_val, y_val)], verbose=False)
            self.best_n_estimators_ = int(self.booster_.best_iteration) + 1
        elif self.library == "catboost":
            # use_best_model: the returned model stops at the best validation round, as the others.
            self.booster_.fit(X, y, eval_set=(X_val, y_val), use_best_model=True)
            self.best_n_estimators_ = int(self.booster_.get_best_iteration()) + 1
        else:
            import lightgbm

            with warnings.catch_warnings():  # eval_set is renamed in recent releases; keep both
                warnings.filterwarnings("ignore", message=".*eval_set.*")
                self.booster_.fit(
                    X,
                    y,
                    eval_set=[(X_val, y_val)],
                    callbacks=[lightgbm.early_stopping(self.early_stopping_rounds, verbose=False)],
                )
            self.best_n_estimators_ = int(self.booster_.best_iteration_ or self.n_estimators)
        return self

    def _checked(self, X):
        check_is_fitted(self)
        return validate_data(self, X, reset=False)


class BoostedTreesClassifier(ClassifierMixin, _BoostedTrees):
    """Early-stopped XGBoost, LightGBM or CatBoost classifier."""

    def predict_proba(self, X) -> np.ndarray:
        return np.asarray(self.booster_.predict_proba(self._checked(X)))

    def predict(self, X) -> np.ndarray:
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]


class BoostedTreesRegressor(RegressorMixin, _BoostedTrees):
    """Early-stopped XGBoost, LightGBM or CatBoost regressor."""

    def predict(self, X) -> np.ndarray:
        return np.asarray(self.booster_.predict(self._checked(X))).ravel()


XGBOOST_SPACE: dict[str, Any] = {
    "max_depth": randint(1, 12),
    "learning_rate": loguniform(1e-3, 0.7),
    "subsample": uniform(0.5, 0.5),
    "colsample_bytree": uniform(0.5, 0.5),
    "min_child_weight": loguniform(1, 100),
    "reg_alpha": loguniform(1e-8, 1e-2),
    "reg_lambda": loguniform(1, 4),
    "gamma": loguniform(1e-8, 7),
}
XGBOOST_DEFAULTS: dict[str, Any] = {"max_depth": 6, "learning_rate": 0.1}

LIGHTGBM_SPACE: dict[str, Any] = {
    "num_leaves": randint(4, 128),
    "learning_rate": loguniform(1e-3, 0.3),
    "subsample": uniform(0.5, 0.5),
    "subsample_freq": [1],
    "colsample_bytree": uniform(0.5, 0.5),
    "min_child_samples": randint(2, 100),
    "reg_lambda": loguniform(1e-8, 10),
}
LIGHTGBM_DEFAULTS: dict[str, Any] = {"num_leaves": 31, "learning_rate": 0.1}

# Gorishniy et al. (2021), CatBoost: depth 3-10, lr loguniform(1e-5, 1), bagging temperature U(0, 1),
# l2 leaf regularization loguniform(1, 10), leaf estimation iterations 1-10.
CATBOOST_SPACE: dict[str, Any] = {
    "depth": randint(3, 11),
    "learning_rate": loguniform(1e-5, 1),
    "bagging_temperature": uniform(0, 1),
    "l2_leaf_reg": loguniform(1, 10),
    "leaf_estimation_iterations": randint(1, 11),
}
# CatBoost's defaults, with the learning rate fixed: its automatic rate depends on the round count,
# which would change between the early-stopped fit and the refit for the chosen rounds.
CATBOOST_DEFAULTS: dict[str, Any] = {
    "depth": 6,
    "learning_rate": 0.05,
    "bagging_temperature": 1.0,
    "l2_leaf_reg": 3.0,
    "leaf_estimation_iterations": 1,
}


def _builder(library: str):
    def build(
        kind: str, params: Mapping[str, Any], *, device: str, seed: int, n_jobs: int
    ) -> BaseEstimator:
        config = dict(params)
        fixed = {k: config.pop(k) for k in ("n_estimators", "val_fraction") if k in config}
        cls = BoostedTreesClassifier if kind == "classification" else BoostedTreesRegressor
        return cls(
            library=library, params=config, device=device, n_jobs=n_jobs, random_state=seed, **fixed
        )

    return build


def _rounds(model: _BoostedTrees) -> dict[str, Any]:
    return {"n_estimators": model.best_n_estimators_, "val_fraction": 0.0}


XGBOOST_SPEC = ModelSpec(
    name="xgboost",
    summary="XGBoost (hist), early stopping on a validation split; needs rfmbench[gbdt]",
    build=_builder("xgboost"),
    space=XGBOOST_SPACE,
    defaults=XGBOOST_DEFAULTS,
    uses_device=True,
    requires=("xgboost",),
    refit_params=_rounds,
)
CATBOOST_SPEC = ModelSpec(
    name="catboost",
    summary="CatBoost, early stopping on a validation split; needs rfmbench[gbdt]",
    build=_builder("catboost"),
    space=CATBOOST_SPACE,
    defaults=CATBOOST_DEFAULTS,
    uses_device=True,
    requires=("catboost",),
    refit_params=_rounds,
)
LIGHTGBM_SPEC = ModelSpec(
    name="lightgbm",
    summary="LightGBM, early stopping on a validation split; needs rfmbench[gbdt]",
    build=_builder("lightgbm"),
    space=LIGHTGBM_SPACE,
    defaults=LIGHTGBM_DEFAULTS,
    requires=("lightgbm",),
    refit_params=_rounds,
)
