"""Kernel ridge (RFM with M = I) against scikit-learn's KernelRidge."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.distance import cdist
from sklearn.base import clone
from sklearn.kernel_ridge import KernelRidge
from sklearn.utils.estimator_checks import parametrize_with_checks

from rfmbench.models.kernel_ridge import SPEC, KernelRidgeClassifier, KernelRidgeRegressor
from rfmbench.models.rfm import RFMClassifier, RFMRegressor


def _data(seed, n=150, d=4):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    return X, np.sin(2 * X[:, 0]) + X[:, 1] * X[:, 2] + 0.1 * rng.normal(size=n)


@parametrize_with_checks(
    [KernelRidgeRegressor(dtype="float64", device="cpu"),
     KernelRidgeClassifier(dtype="float64", device="cpu")]
)  # fmt: skip
def test_sklearn_compatible(estimator, check):
    check(estimator)


def _laplace_l2(bandwidth):
    # Our "laplace" is on the l2 distance; scikit-learn's "laplacian" is on l1 (our product_laplace).
    return lambda A, B: np.exp(-cdist(A, B) / bandwidth)


@pytest.mark.parametrize(
    ("kernel", "sk_kernel"),
    [
        ("product_laplace", lambda bw: dict(kernel="laplacian", gamma=1 / bw)),
        ("gaussian", lambda bw: dict(kernel="rbf", gamma=1 / (2 * bw**2))),
        ("laplace", lambda bw: dict(kernel="precomputed")),
    ],
)
@pytest.mark.parametrize("reg", [1e-3, 0.5])
def test_matches_sklearn_kernel_ridge(kernel, sk_kernel, reg):
    X, y = _data(0)
    X_test, _ = _data(1, n=60)
    bw = 2.5
    ours = KernelRidgeRegressor(kernel=kernel, bandwidth=bw, reg=reg, dtype="float64", device="cpu")
    pred = ours.fit(X, y).predict(X_test)
    sk = KernelRidge(alpha=reg, **sk_kernel(bw))
    if kernel == "laplace":
        expected = sk.fit(_laplace_l2(bw)(X, X), y).predict(_laplace_l2(bw)(X_test, X))
    else:
        expected = sk.fit(X, y).predict(X_test)
    np.testing.assert_allclose(pred, expected, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(ours.dual_coef_[:, 0], sk.dual_coef_, rtol=1e-6, atol=1e-8)
    assert ours.best_iter_ == 0 and np.array_equal(ours.M_, np.eye(4))


def test_kernel_ridge_is_rfm_with_no_iterations():
    X, y = _data(2)
    kr = KernelRidgeRegressor(bandwidth=3.0, reg=0.01, dtype="float64", device="cpu").fit(X, y)
    rfm = RFMRegressor(iters=0, bandwidth=3.0, reg=0.01, dtype="float64", device="cpu").fit(X, y)
    np.testing.assert_array_equal(kr.predict(X), rfm.predict(X))
    assert isinstance(kr, RFMRegressor) and kr.iters == 0
    assert "iters" not in kr.get_params() and set(clone(kr).get_params()) == set(kr.get_params())
    assert len(kr.dual_coef_) == len(X)  # no validation rows carved out


def test_classifier_is_one_hot_ridge_with_argmax():
    X, y = _data(3)
    labels = np.digitize(y, [-0.5, 0.5])
    clf = KernelRidgeClassifier(kernel="gaussian", bandwidth=2.0, reg=0.1, dtype="float64",
                                device="cpu").fit(X, labels)  # fmt: skip
    assert isinstance(clf, RFMClassifier)
    sk = KernelRidge(kernel="rbf", gamma=1 / 8, alpha=0.1).fit(X, np.eye(3)[labels])
    np.testing.assert_array_equal(clf.predict(X), sk.predict(X).argmax(axis=1))
    X_val, y_val = X[:30], labels[:30]
    clf.fit(X, labels, X_val, y_val)
    assert clf.val_scores_[0] == pytest.approx(np.mean(clf.predict(X_val) == y_val))


def test_spec():
    assert SPEC.name == "kernel-ridge" and SPEC.uses_device
    assert SPEC.space["kernel"] == ["laplace", "gaussian"]
    reg = SPEC.build(
        "regression", {"kernel": "gaussian", "reg": 0.1}, device="cpu", seed=0, n_jobs=1
    )
    clf = SPEC.build("classification", dict(SPEC.defaults), device="cpu", seed=0, n_jobs=1)
    assert isinstance(reg, KernelRidgeRegressor) and reg.kernel == "gaussian"
    assert isinstance(clf, KernelRidgeClassifier) and clf.reg == 1e-3
