"""CatBoost through the GBDT wrapper: early stopping, the refit's round count, the registry entry."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_diabetes, make_classification
from sklearn.metrics import r2_score
from sklearn.model_selection import ParameterSampler, train_test_split
from typer.testing import CliRunner

from rfmbench.cli import app
from rfmbench.models.gbdt import CATBOOST_SPEC, BoostedTreesClassifier, BoostedTreesRegressor
from rfmbench.models.registry import MODELS

pytest.importorskip("catboost")


def test_classifier_stops_early_and_refit_uses_the_rounds() -> None:
    # Noisy labels: boosting at a large rate overfits them soon, so early stopping has to act.
    X, y = make_classification(n_samples=600, n_features=10, flip_y=0.3, random_state=0)
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.3, random_state=0, stratify=y)
    params = {**CATBOOST_SPEC.defaults, "learning_rate": 0.3, "n_estimators": 500}
    model = CATBOOST_SPEC.build("classification", params, device="cpu", seed=0, n_jobs=1)
    assert isinstance(model, BoostedTreesClassifier)
    model.fit(X_tr, y_tr)
    assert 1 <= model.best_n_estimators_ < 500  # stopped on the validation split
    assert model.booster_.tree_count_ == model.best_n_estimators_  # best model kept
    proba = model.predict_proba(X_te)
    assert proba.shape == (len(X_te), 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert model.score(X_te, y_te) > 0.6
    hints = CATBOOST_SPEC.refit_params(model)
    assert hints == {"n_estimators": model.best_n_estimators_, "val_fraction": 0.0}
    refit = CATBOOST_SPEC.build(
        "classification", {**params, **hints}, device="cpu", seed=0, n_jobs=1
    )
    refit.fit(X_tr, y_tr)
    assert refit.booster_.tree_count_ == model.best_n_estimators_  # every row, that many rounds


def test_regressor_and_every_sampled_config_fits() -> None:
    X, y = load_diabetes(return_X_y=True)
    y = (y - y.mean()) / y.std()
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.3, random_state=0)
    model = CATBOOST_SPEC.build(
        "regression", dict(CATBOOST_SPEC.defaults), device="cpu", seed=0, n_jobs=1
    )
    assert isinstance(model, BoostedTreesRegressor)
    pred = model.fit(X_tr, y_tr).predict(X_te)
    assert pred.shape == (len(X_te),) and r2_score(y_te, pred) > 0.3
    again = CATBOOST_SPEC.build(
        "regression", dict(CATBOOST_SPEC.defaults), device="cpu", seed=0, n_jobs=1
    )
    np.testing.assert_array_equal(again.fit(X_tr, y_tr).predict(X_te), pred)  # seeded
    for params in ParameterSampler(CATBOOST_SPEC.space, n_iter=4, random_state=0):
        m = CATBOOST_SPEC.build(
            "regression", {**params, "n_estimators": 20}, device="cpu", seed=0, n_jobs=1
        )
        assert np.isfinite(m.fit(X_tr, y_tr).predict(X_te)).all()


def test_models_command_lists_catboost_as_installed() -> None:
    assert "catboost" in MODELS
    result = CliRunner().invoke(app, ["models"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    line = next(line for line in result.output.splitlines() if "catboost" in line)
    assert "True" in line and "rfmbench[gbdt]" in line
