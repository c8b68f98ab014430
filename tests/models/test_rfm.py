"""RFMRegressor / RFMClassifier: scikit-learn contract, feature learning, selection, solve fallback."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from sklearn.kernel_ridge import KernelRidge
from sklearn.metrics import log_loss
from sklearn.utils.estimator_checks import parametrize_with_checks

from rfmbench.errors import DeviceError
from rfmbench.models.kernel_ridge import KernelRidgeRegressor
from rfmbench.models.rfm import SPEC, RFMClassifier, RFMRegressor, solve_kernel_system

CUDA = pytest.param(
    "cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU")
)


@parametrize_with_checks(
    [
        RFMRegressor(iters=2, dtype="float64", device="cpu"),
        RFMClassifier(iters=2, dtype="float64", device="cpu"),
    ]
)
def test_sklearn_compatible(estimator, check):
    check(estimator)


def _low_rank(n, d, seed):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    return X, (X[:, 0] + X[:, 1]) ** 2 + 0.1 * rng.normal(size=n)


def test_rfm_learns_the_low_rank_target_kernel_ridge_cannot():
    X, y = _low_rank(2000, 50, 0)
    X_test, y_test = _low_rank(2000, 50, 1)
    params = dict(kernel="laplace", bandwidth=10.0, reg=1e-3, device="cpu")
    rfm = RFMRegressor(iters=5, random_state=0, **params).fit(X, y)
    ridge = KernelRidgeRegressor(**params).fit(X, y)
    rfm_mse = np.mean((rfm.predict(X_test) - y_test) ** 2)
    ridge_mse = np.mean((ridge.predict(X_test) - y_test) ** 2)
    assert rfm_mse < 0.5 * ridge_mse, (rfm_mse, ridge_mse)
    assert rfm.best_iter_ > 0
    assert np.diag(rfm.M_)[:2].sum() / np.trace(rfm.M_) > 0.8
    assert rfm.feature_importances_[:2].sum() > 0.8


@pytest.mark.parametrize("diag", [False, True])
def test_fitted_attributes(diag):
    X, y = _low_rank(150, 4, 2)
    model = RFMRegressor(iters=3, diag=diag, agop_samples=50, device="cpu", random_state=0)
    model.fit(X, y)
    assert model.M_.shape == (4, 4) and model.M_.dtype == np.float64
    if diag:
        np.testing.assert_array_equal(model.M_, np.diag(np.diag(model.M_)))
    np.testing.assert_allclose(model.M_, model.M_.T)
    assert model.feature_importances_.sum() == pytest.approx(1.0)
    assert len(model.val_scores_) == 4 and len(model.solve_methods_) == 4
    assert model.best_iter_ == int(np.argmax(model.val_scores_))
    assert model.device_ == torch.device("cpu")
    assert model.predict(X).dtype == np.float64


def test_best_iteration_is_argmax_and_iteration_zero_is_kernel_ridge():
    X, y = _low_rank(300, 5, 3)
    X_val, y_val = _low_rank(100, 5, 4)
    kw = dict(kernel="gaussian", bandwidth=3.0, reg=0.1, dtype="float64", device="cpu")
    model = RFMRegressor(iters=3, random_state=0, **kw).fit(X, y, X_val, y_val)
    assert model.best_iter_ == int(np.argmax(model.val_scores_))
    # Iteration 0 is scikit-learn's kernel ridge on the same kernel (rbf, gamma = 1 / (2 L^2)).
    sk = KernelRidge(kernel="rbf", gamma=1 / (2 * 3.0**2), alpha=0.1).fit(X, y)
    assert model.val_scores_[0] == pytest.approx(
        -np.mean((sk.predict(X_val) - y_val) ** 2), rel=1e-9
    )
    # Validation targets that iteration 0 fits exactly: it must be the one kept, predictions included.
    y_val0 = sk.predict(X_val)
    model0 = RFMRegressor(iters=3, random_state=0, **kw).fit(X, y, X_val, y_val0)
    assert model0.best_iter_ == 0
    np.testing.assert_allclose(model0.predict(X_val), y_val0, rtol=1e-7, atol=1e-9)
    np.testing.assert_array_equal(model0.M_, np.eye(5))


def test_cholesky_falls_back_on_a_singular_matrix(caplog):
    rng = np.random.default_rng(5)
    X = rng.normal(size=(40, 3))
    X, y = np.vstack([X, X]), np.concatenate([np.sin(X[:, 0])] * 2)  # duplicated rows, reg = 0
    with caplog.at_level(logging.INFO, logger="rfmbench.models.solvers"):
        model = RFMRegressor(reg=0.0, iters=1, dtype="float64", device="cpu", random_state=0)
        model.fit(X, y, X[:10], y[:10])
    assert all(m.startswith("cholesky+jitter") for m in model.solve_methods_)
    assert "not numerically positive definite" in caplog.text
    np.testing.assert_allclose(model.predict(X), y, atol=1e-5)  # still interpolates


def test_least_squares_fallback_on_an_indefinite_matrix(caplog):
    vecs, _ = np.linalg.qr(np.random.default_rng(6).normal(size=(5, 5)))
    A = vecs @ np.diag([2.0, 1.0, 0.5, 0.3, -0.4]) @ vecs.T
    K = torch.from_numpy(A.copy())
    Y = torch.ones(5, 2, dtype=torch.float64)
    with caplog.at_level(logging.WARNING, logger="rfmbench.models.solvers"):
        alpha, method = solve_kernel_system(K, Y, reg=0.0)
    assert method == "lstsq" and "least-squares" in caplog.text
    np.testing.assert_allclose(alpha.numpy(), np.linalg.solve(A, Y.numpy()), rtol=1e-10)
    np.testing.assert_array_equal(K.numpy(), A)  # diagonal restored exactly


@pytest.mark.parametrize("device", ["cpu", CUDA])
@pytest.mark.parametrize("cls", [RFMRegressor, RFMClassifier])
def test_same_random_state_same_predictions(cls, device):
    X, y = _low_rank(200, 6, 7)
    if cls is RFMClassifier:
        y = np.digitize(y, [1.0, 3.0])
    fits = [
        cls(iters=2, agop_samples=60, random_state=s, device=device).fit(X, y) for s in (1, 1, 2)
    ]
    np.testing.assert_array_equal(fits[0].predict(X), fits[1].predict(X))
    np.testing.assert_array_equal(fits[0].M_, fits[1].M_)
    assert not np.array_equal(fits[0].M_, fits[2].M_)  # another split and AGOP sample


def test_classifier_labels_probabilities_and_stratified_split():
    X, y = _low_rank(240, 5, 8)
    labels = np.array(["low", "mid", "high"])[np.digitize(y, [1.0, 3.0])]
    model = RFMClassifier(iters=2, kernel="product_laplace", bandwidth=5.0, device="cpu",
                          random_state=0).fit(X, labels)  # fmt: skip
    assert list(model.classes_) == ["high", "low", "mid"]
    proba = model.predict_proba(X)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert proba.min() > 0 and np.isfinite(log_loss(labels, proba, labels=model.classes_))
    np.testing.assert_array_equal(model.classes_[proba.argmax(axis=1)], model.predict(X))
    assert model.score(X, labels) > 0.8
    assert all(0 <= s <= 1 for s in model.val_scores_)


def test_row_norm_and_multi_output_regression():
    X, y = _low_rank(120, 4, 9)
    Y = np.column_stack([y, -y])
    model = RFMRegressor(iters=1, row_norm=True, dtype="float64", device="cpu", random_state=0).fit(
        X, Y
    )
    assert model.predict(X).shape == (120, 2)
    # Row normalisation: scaling a row does not change its prediction.
    np.testing.assert_allclose(model.predict(3 * X[:5]), model.predict(X[:5]), rtol=1e-6)


def test_errors_name_the_parameter_and_the_device():
    X, y = _low_rank(30, 3, 10)
    with pytest.raises(ValueError, match="'bandwidth' parameter of RFMRegressor"):
        RFMRegressor(bandwidth=0).fit(X, y)
    with pytest.raises(DeviceError):
        RFMRegressor(device="tpu").fit(X, y)
    with pytest.raises(ValueError, match="both X_val and y_val"):
        RFMRegressor(device="cpu").fit(X, y, X_val=X)


def test_spec_builds_estimators_with_device_and_seed():
    assert SPEC.name == "rfm" and SPEC.uses_device
    reg = SPEC.build("regression", dict(SPEC.defaults), device="cpu", seed=3, n_jobs=1)
    clf = SPEC.build("classification", {"bandwidth": 2.0}, device="cpu", seed=4, n_jobs=1)
    assert isinstance(reg, RFMRegressor) and reg.random_state == 3 and reg.device == "cpu"
    assert isinstance(clf, RFMClassifier) and clf.bandwidth == 2.0
    rng = np.random.default_rng(0)
    for name, axis in SPEC.space.items():
        value = axis[0] if isinstance(axis, list) else axis.rvs(random_state=rng)
        reg.set_params(**{name: value})
    assert 0.5 <= SPEC.space["bandwidth"].rvs(random_state=rng) <= 200


@pytest.mark.parametrize("cls", [RFMClassifier, RFMRegressor])
def test_monitor_scores_every_iteration_without_changing_the_fit(cls):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 6))
    target = X[:, 0] * X[:, 1]
    y = (target > 0).astype(int) if cls is RFMClassifier else target
    X_test, y_test = X[80:], y[80:]
    params = dict(iters=3, val_fraction=0.0, dtype="float64", device="cpu", random_state=0)
    plain = cls(**params).fit(X[:80], y[:80])
    monitored = cls(**params).fit(X[:80], y[:80], monitor=(X_test, y_test))
    np.testing.assert_array_equal(plain.dual_coef_, monitored.dual_coef_)  # recorded only
    assert plain.monitor_scores_ is None and len(monitored.monitor_scores_) == 4
    assert monitored.monitor_seconds_ > 0
    for it, score in enumerate(monitored.monitor_scores_):  # iteration t = the fit of t iterations
        model = cls(**{**params, "iters": it}).fit(X[:80], y[:80])
        predicted = model.predict(X_test)
        if cls is RFMClassifier:
            expected = np.mean(predicted == y_test)
        else:
            expected = -np.mean((predicted - y_test) ** 2)
        assert score == pytest.approx(expected, rel=1e-9)
