"""random-forest SPEC: scikit-learn's forests with the job's seed and cores passed through."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
from sklearn.model_selection import ParameterGrid

from rfmbench.models.random_forest import N_ESTIMATORS, SPEC, TUNING_ESTIMATORS
from rfmbench.tuning import tune


@pytest.mark.parametrize(
    ("kind", "cls", "default_max_features"),
    [
        ("classification", RandomForestClassifier, "sqrt"),
        ("regression", RandomForestRegressor, 1.0),
    ],
)
def test_build_passes_seed_jobs_and_params(kind, cls, default_max_features):
    model = SPEC.build(kind, {}, device="cpu", seed=11, n_jobs=3)
    assert type(model) is cls
    assert model.n_estimators == TUNING_ESTIMATORS  # tuning grows smaller forests
    assert model.n_jobs == 3 and model.random_state == 11
    # The defaults are scikit-learn's own, so tuning tries the untouched forest first.
    assert model.max_features == default_max_features == cls().max_features
    assert model.min_samples_leaf == cls().min_samples_leaf
    assert model.max_depth == cls().max_depth

    params = {"max_features": 0.5, "min_samples_leaf": 4, "max_depth": 8}
    model = SPEC.build(kind, params, device="cpu", seed=0, n_jobs=1)
    assert {k: model.get_params()[k] for k in params} == params


def test_spec_metadata():
    assert SPEC.name == "random-forest"
    assert not SPEC.uses_device and SPEC.available()
    assert set(SPEC.defaults) == set(SPEC.space)
    assert "n_estimators" not in SPEC.space


@pytest.mark.parametrize("kind", ["classification", "regression"])
def test_every_grid_config_fits(kind):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 4))
    y = (X[:, 0] > 0).astype(int) if kind == "classification" else X[:, 0]
    for params in [dict(SPEC.defaults), *ParameterGrid(SPEC.space)]:
        model = SPEC.build(kind, {**params, "n_estimators": 5}, device="cpu", seed=0, n_jobs=1)
        assert model.fit(X, y).predict(X).shape == (40,)


def test_unknown_kind_is_rejected():
    with pytest.raises(ValueError, match="kind"):
        SPEC.build("ranking", {}, device="cpu", seed=0, n_jobs=1)


def test_the_refit_grows_the_full_forest():
    """Tuning compares configurations on 100-tree forests; the refit gets all N_ESTIMATORS."""
    rng = np.random.default_rng(1)
    X = rng.normal(size=(60, 3))
    y = (X[:, 0] > 0).astype(int)
    result = tune(SPEC, "classification", X, y, inner_folds=2, budget=2, seed=0)
    assert result.refit_params == {"n_estimators": N_ESTIMATORS}
    refit = SPEC.build(
        "classification", {**result.best_params, **result.refit_params}, seed=0, n_jobs=1
    )
    assert (
        refit.fit(X, y).n_estimators == len(refit.estimators_) == N_ESTIMATORS > TUNING_ESTIMATORS
    )
