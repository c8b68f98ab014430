"""MLPClassifier / MLPRegressor: scikit-learn conventions, learning, early stopping, seeding, SPEC."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.datasets import load_breast_cancer, load_iris, make_classification
from sklearn.metrics import log_loss, mean_squared_error, r2_score
from sklearn.model_selection import ParameterSampler, train_test_split
from sklearn.neural_network import MLPClassifier as SkMLPClassifier
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import (
    check_methods_sample_order_invariance,
    check_methods_subset_invariance,
    parametrize_with_checks,
)

from rfmbench.models.mlp import SPEC, MLPClassifier, MLPRegressor, refit_params

# Few epochs and a larger step keep the ~50 checks per estimator fast; the checks' data are tiny.
_CHECK_PARAMS = {"width": 16, "max_epochs": 25, "lr": 3e-2, "device": "cpu"}

# In float32, BLAS blocks a matrix product differently for different row counts, so one row's
# output can change in its last bits (~1e-7 relative) with the batch it is predicted in; these two
# checks demand rtol=1e-7. They pass in float64: see test_float64_predictions_are_row_independent.
_ROW_INVARIANCE = {
    "check_methods_subset_invariance": "float32 rounding depends on the batch's row count",
    "check_methods_sample_order_invariance": "float32 rounding depends on the batch's row count",
}


@parametrize_with_checks(
    [MLPClassifier(**_CHECK_PARAMS), MLPRegressor(**_CHECK_PARAMS)],
    expected_failed_checks=lambda estimator: _ROW_INVARIANCE,
)
def test_sklearn_compatible(estimator, check):
    check(estimator)


@pytest.mark.parametrize("Model", [MLPClassifier, MLPRegressor])
def test_float64_predictions_are_row_independent(Model):
    estimator = Model(**_CHECK_PARAMS, dtype="float64")
    check_methods_subset_invariance(Model.__name__, estimator)
    check_methods_sample_order_invariance(Model.__name__, estimator)


def _standardized_split(X, y, seed=0, stratify=True):
    X_tr, X_te, y_tr, y_te = train_test_split(
        X, y, test_size=0.25, random_state=seed, stratify=y if stratify else None
    )
    scaler = StandardScaler().fit(X_tr)
    return scaler.transform(X_tr), scaler.transform(X_te), y_tr, y_te


@pytest.mark.parametrize("loader", [load_iris, load_breast_cancer])
def test_classifier_accuracy_matches_sklearn_mlp(loader):
    X_tr, X_te, y_tr, y_te = _standardized_split(*loader(return_X_y=True))
    ours = MLPClassifier(device="cpu", random_state=0).fit(X_tr, y_tr)
    theirs = SkMLPClassifier(max_iter=1000, random_state=0).fit(X_tr, y_tr)
    acc_ours, acc_theirs = ours.score(X_te, y_te), theirs.score(X_te, y_te)
    assert acc_ours >= acc_theirs - 0.05, (acc_ours, acc_theirs)
    assert acc_ours > 0.9


def test_regressor_fits_smooth_function():
    rng = np.random.default_rng(0)
    X = rng.uniform(-2, 2, size=(600, 4))
    y = np.sin(X[:, 0]) + 0.5 * X[:, 1] ** 2 - X[:, 2] * X[:, 3] + 0.05 * rng.normal(size=600)
    y = 10 * y + 3  # the regressor standardizes the target itself
    X_tr, X_te, y_tr, y_te = _standardized_split(X, y, stratify=False)
    model = MLPRegressor(device="cpu", random_state=0).fit(X_tr, y_tr)
    assert r2_score(y_te, model.predict(X_te)) > 0.9


def test_early_stopping_restores_best_weights_classifier():
    X, y = make_classification(
        n_samples=300, n_features=20, n_informative=5, flip_y=0.2, random_state=0
    )
    X_tr, X_val, y_tr, y_val = train_test_split(X, y, test_size=0.3, random_state=0)
    # A wide net with a large step overfits quickly, so the validation loss rises and training stops.
    model = MLPClassifier(width=256, lr=1e-2, dropout=0.0, patience=5, device="cpu", random_state=0)
    model.fit(X_tr, y_tr, X_val=X_val, y_val=y_val)
    assert model.n_epochs_ < model.max_epochs
    assert model.n_epochs_ == model.best_epoch_ + model.patience
    assert len(model.val_loss_curve_) == model.n_epochs_
    assert model.best_val_loss_ == pytest.approx(min(model.val_loss_curve_))
    assert model.val_loss_curve_[model.best_epoch_ - 1] == model.best_val_loss_
    assert model.val_loss_curve_[-1] > model.best_val_loss_
    # Independent recomputation with scikit-learn's metric, on the returned model.
    returned = log_loss(y_val, model.predict_proba(X_val), labels=model.classes_)
    assert returned == pytest.approx(model.best_val_loss_, rel=1e-5)


def test_early_stopping_restores_best_weights_regressor():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(200, 10))
    y = X[:, 0] + rng.normal(size=200)  # noisy, so a wide net overfits
    X_tr, X_val, y_tr, y_val = train_test_split(X, y, test_size=0.3, random_state=0)
    model = MLPRegressor(lr=1e-2, dropout=0.0, patience=5, device="cpu", random_state=0)
    model.fit(X_tr, y_tr, X_val=X_val, y_val=y_val)
    assert model.n_epochs_ == model.best_epoch_ + model.patience
    returned = mean_squared_error(y_val, model.predict(X_val))
    assert returned == pytest.approx(model.best_val_loss_, rel=1e-5)
    assert returned == pytest.approx(min(model.val_loss_curve_), rel=1e-5)


def test_internal_validation_split_is_stratified_and_used():
    X, y = load_iris(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    model = MLPClassifier(max_epochs=5, val_fraction=0.2, device="cpu", random_state=0).fit(X, y)
    assert len(model.val_loss_curve_) == model.n_epochs_ == 5
    no_val = MLPClassifier(max_epochs=5, val_fraction=0.0, device="cpu", random_state=0).fit(X, y)
    assert no_val.val_loss_curve_ == [] and np.isnan(no_val.best_val_loss_)
    assert no_val.best_epoch_ == no_val.n_epochs_ == 5


@pytest.mark.parametrize("Model", [MLPClassifier, MLPRegressor])
def test_random_state_controls_every_draw(Model):
    X, y = make_classification(n_samples=200, n_features=8, random_state=0)
    params = {"max_epochs": 10, "device": "cpu"}
    predict = "predict_proba" if Model is MLPClassifier else "predict"
    a = getattr(Model(**params, random_state=1).fit(X, y), predict)(X)
    b = getattr(Model(**params, random_state=1).fit(X, y), predict)(X)
    c = getattr(Model(**params, random_state=2).fit(X, y), predict)(X)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_fit_leaves_global_torch_rng_alone():
    X, y = make_classification(n_samples=100, n_features=5, random_state=0)
    state = torch.random.get_rng_state()
    MLPClassifier(max_epochs=3, device="cpu", random_state=0).fit(X, y)
    assert torch.equal(state, torch.random.get_rng_state())


def test_device_and_dtype():
    X, y = make_classification(n_samples=100, n_features=5, random_state=0)
    model = MLPClassifier(max_epochs=2, dtype="float64", device="cpu", random_state=0).fit(X, y)
    assert model.device_ == torch.device("cpu")
    assert all(w.dtype == torch.float64 and w.device.type == "cpu" for w in model.weights_)
    assert [tuple(w.shape) for w in model.weights_] == [(256, 5), (256, 256), (2, 256)]


def test_string_labels_and_explicit_validation_labels():
    X, y = make_classification(
        n_samples=120, n_features=5, n_classes=3, n_informative=3, random_state=0
    )
    names = np.array(["a", "b", "c"])[y]
    model = MLPClassifier(max_epochs=5, device="cpu", random_state=0)
    model.fit(X[:90], names[:90], X_val=X[90:], y_val=names[90:])
    assert set(model.predict(X)) <= {"a", "b", "c"}
    with pytest.raises(ValueError, match="not seen"):
        model.fit(X[:90], names[:90], X_val=X[90:], y_val=np.full(30, "z"))
    with pytest.raises(ValueError, match="both"):
        model.fit(X, names, X_val=X)


@pytest.mark.parametrize("kind", ["classification", "regression"])
def test_spec_builds_with_given_params(kind):
    params = {"width": 64, "depth": 1, "dropout": 0.2, "weight_decay": 1e-3, "lr": 2e-3}
    model = SPEC.build(kind, params, device="cpu", seed=7, n_jobs=1)
    assert isinstance(model, MLPClassifier if kind == "classification" else MLPRegressor)
    assert model.get_params() | params == model.get_params()
    assert model.random_state == 7 and model.device == "cpu"
    defaults = SPEC.build(kind, {}, device="cpu", seed=0, n_jobs=1).get_params()
    assert {k: defaults[k] for k in SPEC.defaults} == dict(SPEC.defaults)
    assert SPEC.name == "mlp" and SPEC.uses_device
    assert set(SPEC.defaults) == set(SPEC.space)


@pytest.mark.parametrize("kind", ["classification", "regression"])
def test_every_sampled_config_fits(kind):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 3))
    y = (X[:, 0] > 0).astype(int) if kind == "classification" else X[:, 0]
    for params in ParameterSampler(SPEC.space, n_iter=8, random_state=0):
        model = SPEC.build(kind, {**params, "max_epochs": 2}, device="cpu", seed=0, n_jobs=1)
        assert model.fit(X, y).predict(X).shape == (40,)


def test_search_space_is_grinsztajn_et_al_2022() -> None:
    space = SPEC.space
    assert space["depth"].support() == (1, 8)
    assert min(space["width"]) == 16 and max(space["width"]) == 1024
    assert space["lr"].support() == pytest.approx((1e-5, 1e-2))
    assert set(space["lr_schedule"]) == {"cosine", "constant"}
    assert space["batch_size"] == [256, 512, 1024]


def test_cosine_schedule_does_not_depend_on_max_epochs() -> None:
    short = MLPClassifier(lr=1e-2, max_epochs=10, schedule_epochs=100)
    long = MLPClassifier(lr=1e-2, max_epochs=200, schedule_epochs=100)
    rates = [short._epoch_lr(e) for e in range(1, 11)]
    assert rates == [long._epoch_lr(e) for e in range(1, 11)]
    assert rates[0] == 1e-2 and all(a > b for a, b in zip(rates, rates[1:], strict=False))
    assert long._epoch_lr(51) == pytest.approx(5e-3) and long._epoch_lr(150) == 0.0
    constant = MLPClassifier(lr=1e-2, lr_schedule="constant")
    assert {constant._epoch_lr(e) for e in (1, 50, 300)} == {1e-2}


@pytest.mark.parametrize("schedule", ["cosine", "constant"])
def test_refit_for_the_chosen_epochs_replays_the_selected_model(schedule) -> None:
    """The refit (no validation, max_epochs = best epoch) sees the same rates, batches and draws,
    so on the same rows it ends exactly at the weights early stopping kept."""
    X, y = make_classification(n_samples=300, n_features=8, flip_y=0.2, random_state=0)
    X_tr, X_val, y_tr, y_val = train_test_split(X, y, test_size=0.3, random_state=0)
    params = {"lr": 1e-2, "lr_schedule": schedule, "batch_size": 64, "patience": 5}
    params |= {"dtype": "float64", "device": "cpu", "random_state": 0}
    selected = MLPClassifier(**params).fit(X_tr, y_tr, X_val=X_val, y_val=y_val)
    assert selected.best_epoch_ < selected.n_epochs_
    refit = MLPClassifier(**params, **refit_params(selected)).fit(X_tr, y_tr)
    assert refit.n_epochs_ == selected.best_epoch_
    np.testing.assert_allclose(refit.predict_proba(X_val), selected.predict_proba(X_val))


def test_full_batch_when_the_rows_fit_one_batch() -> None:
    X, y = make_classification(n_samples=100, n_features=5, random_state=0)
    model = MLPClassifier(batch_size=256, max_epochs=3, val_fraction=0.0, device="cpu")
    model.fit(X, y)
    # One step per epoch on all 100 rows: the recorded loss is that step's full-batch loss.
    assert len(model.loss_curve_) == 3 and model.loss_curve_[1] < model.loss_curve_[0]
