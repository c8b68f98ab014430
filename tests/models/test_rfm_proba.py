"""RFMClassifier's probabilities: a softmax with a temperature fitted on the validation rows.

Compared on the embedded classification datasets with the clipped-and-renormalised scores that
``predict_proba`` returned before (``max(s, 1e-3) / sum``): the predicted classes must not change,
and the log loss must fall, except on iris: there one-hot regression scores are already close to
probabilities (least squares on one-hot labels estimates P(k | x)), and one temperature for all rows
trades the sure setosa rows against the overlapping ones; its log loss rises a little (measured
0.112 -> 0.121 in the default run), which the test bounds.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.special
import torch
from sklearn.metrics import log_loss
from sklearn.model_selection import StratifiedKFold
from sklearn.preprocessing import StandardScaler

from rfmbench.models.rfm import PROBA_EPS, SPEC, RFMClassifier, fit_temperature
from rfmbench.sources.embedded import LOADERS

CLASSIFICATION = [name for name, (_, kind) in LOADERS.items() if kind == "classification"]


def clipped(scores: np.ndarray) -> np.ndarray:
    """The probabilities before this change: scores clipped at 1e-3, rows renormalised."""
    p = np.maximum(scores, PROBA_EPS)
    return p / p.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("name", CLASSIFICATION)
def test_log_loss_falls_and_predictions_stay_on_embedded_datasets(name: str) -> None:
    import sklearn.datasets

    X, y = getattr(sklearn.datasets, LOADERS[name][0])(return_X_y=True)
    folds = StratifiedKFold(3, shuffle=True, random_state=0).split(X, y)
    ours, before = [], []
    for train, test in folds:
        scaler = StandardScaler().fit(X[train])
        X_tr, X_te = scaler.transform(X[train]), scaler.transform(X[test])
        model = SPEC.build("classification", dict(SPEC.defaults), device="cpu", seed=0, n_jobs=1)
        model.fit(X_tr, y[train])
        assert model.temperature_ is not None and model.temperature_ > 0
        scores = model._decision(X_te).double().numpy()
        proba = model.predict_proba(X_te)
        np.testing.assert_allclose(proba, scipy.special.softmax(scores / model.temperature_, 1))
        # Same classes as the argmax of the clipped scores (accuracy unchanged).
        old_classes = model.classes_[clipped(scores).argmax(axis=1)]
        np.testing.assert_array_equal(model.predict(X_te), old_classes)
        ours.append(log_loss(y[test], proba, labels=model.classes_))
        before.append(log_loss(y[test], clipped(scores), labels=model.classes_))
    if name == "iris":
        assert np.mean(ours) < np.mean(before) + 0.03, (ours, before)
    else:
        assert np.mean(ours) < 0.85 * np.mean(before), (ours, before)


def test_temperature_is_fitted_on_the_validation_rows_of_the_selected_iteration() -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 5))
    y = (X[:, 0] + 0.5 * rng.normal(size=300) > 0).astype(int)
    X_val = rng.normal(size=(100, 5))
    y_val = (X_val[:, 0] + 0.5 * rng.normal(size=100) > 0).astype(int)
    model = RFMClassifier(iters=2, device="cpu", dtype="float64", random_state=0)
    model.fit(X, y, X_val=X_val, y_val=y_val)
    # The model's scores on X_val are those the fit saw for its selected iteration.
    expected = fit_temperature(model._decision(X_val).double().numpy(), y_val)
    assert model.temperature_ == expected
    # The fitted T is the least smoothed cross-entropy: nearby temperatures do worse.
    scores, n = model._decision(X_val).double().numpy(), len(y_val)
    targets = np.full((n, 2), 1 / (n + 1) / 2)
    targets[np.arange(n), y_val] += 1 - 1 / (n + 1)

    def loss(t: float) -> float:
        return -np.sum(targets * scipy.special.log_softmax(scores / t, axis=1))

    assert loss(model.temperature_) < min(
        loss(0.9 * model.temperature_), loss(1.1 * model.temperature_)
    )


def test_error_free_validation_gives_a_finite_temperature() -> None:
    scores = np.array([[1.0, 0.0], [0.0, 1.0], [0.9, 0.1], [0.2, 0.8]])
    labels = np.array([0, 1, 0, 1])
    t = fit_temperature(scores, labels)
    assert 1e-4 < t < 1.0  # sharper than the raw scores, but not a hard argmax
    # A one-pseudo-row smoothing among 4 rows: the confident rows get about 1 - 1/10 on their class.
    p = scipy.special.softmax(scores / t, axis=1)
    assert 0.8 < p[0, 0] < 0.99


def test_a_partitioned_fit_takes_every_leaf_s_validation_rows_for_its_temperature() -> None:
    """Each leaf's routed validation rows, scored at the leaf's own selected iteration."""
    from rfmbench.models.partition import route

    rng = np.random.default_rng(1)
    X = rng.normal(size=(400, 4))
    y = (X[:, 0] * X[:, 1] + 0.3 * rng.normal(size=400) > 0).astype(int)
    X_val = rng.normal(size=(160, 4))
    y_val = (X_val[:, 0] * X_val[:, 1] + 0.3 * rng.normal(size=160) > 0).astype(int)
    model = RFMClassifier(
        iters=3, max_leaf_size=100, split_temperature=0, device="cpu", dtype="float64",
        random_state=0,
    )  # fmt: skip
    model.fit(X, y, X_val=X_val, y_val=y_val)
    assert len(model.leaf_sizes_) == 4
    leaf = route(model.tree_, torch.as_tensor(X_val)).numpy()
    scores = model._decision(X_val).double().numpy()
    order = np.concatenate([np.flatnonzero(leaf == k) for k in range(4)])
    assert model.temperature_ == fit_temperature(scores[order], y_val[order])


def test_given_temperature_is_used_and_refit_gets_the_fitted_one() -> None:
    rng = np.random.default_rng(1)
    X = rng.normal(size=(120, 3))
    y = (X[:, 0] > 0).astype(int)
    fitted = RFMClassifier(iters=1, device="cpu", random_state=0).fit(X, y)
    hints = SPEC.refit_params(fitted)
    assert hints == {
        "iters": fitted.best_iter_,
        "val_fraction": 0.0,
        "max_leaf_size": None,  # the tuned fit was not partitioned: nor is its refit
        "temperature": fitted.temperature_,
    }
    refit = SPEC.build("classification", hints, device="cpu", seed=0, n_jobs=1).fit(X, y)
    assert refit.temperature_ == fitted.temperature_
    scores = refit._decision(X).double().numpy()
    np.testing.assert_allclose(
        refit.predict_proba(X), scipy.special.softmax(scores / fitted.temperature_, axis=1)
    )


def test_without_validation_rows_the_scores_are_clipped_as_before() -> None:
    rng = np.random.default_rng(2)
    X = rng.normal(size=(80, 3))
    y = (X[:, 0] > 0).astype(int)
    model = RFMClassifier(iters=0, device="cpu").fit(X, y)
    assert model.temperature_ is None
    scores = model._decision(X).double().numpy()
    np.testing.assert_allclose(model.predict_proba(X), clipped(scores))
    # Far from every training row all scores fall below eps: the first class, as before.
    far = np.full((1, 3), 1e3)
    assert (model._decision(far).numpy() < PROBA_EPS).all()
    assert model.predict(far)[0] == model.classes_[0]
    np.testing.assert_array_equal(model.predict(X), model.classes_[clipped(scores).argmax(axis=1)])
