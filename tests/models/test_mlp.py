"""MLPClassifier / MLPRegressor: scikit-learn conventions, learning, early stopping, seeding, SPEC."""

from __future__ import annotations

import numpy as np
import pandas as pd
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

from rfmbench.models.mlp import SPEC, MLPClassifier, MLPRegressor

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
    # Patience counts from the last 1e-4 relative improvement, at or before the best epoch.
    assert model.best_epoch_ < model.n_epochs_ <= model.best_epoch_ + model.patience
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
    assert model.best_epoch_ < model.n_epochs_ <= model.best_epoch_ + model.patience
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
    assert [tuple(w.shape) for w in model.weights_] == [(128, 5), (128, 128), (2, 128)]


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
    params = {
        "width": 64,
        "depth": 1,
        "dropout": 0.2,
        "weight_decay": 1e-3,
        "lr": 2e-3,
        "batch_size": 512,
        "lr_scheduler": False,
    }
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


def test_space_is_grinsztajns_mlp_space():
    draws = list(ParameterSampler(SPEC.space, n_iter=400, random_state=0))
    depth = [d["depth"] for d in draws]
    width = np.array([d["width"] for d in draws])
    lr = np.array([d["lr"] for d in draws])
    assert set(depth) == set(range(1, 9))
    assert width.min() >= 16 and width.max() <= 1024 and width.max() > 700
    assert 0.4 < np.mean(width < 128) < 0.6  # log-uniform: as many below 128 as above
    assert lr.min() >= 1e-5 and lr.max() <= 1e-2
    assert {d["batch_size"] for d in draws} == {256, 512, 1024}
    assert {d["lr_scheduler"] for d in draws} == {True, False}
    for key, high in (("dropout", 0.5), ("weight_decay", 1e-3)):
        values = np.array([d[key] for d in draws])
        assert 0.4 < np.mean(values == 0) < 0.6 and values.max() <= high
    assert all(isinstance(d["width"], int) for d in draws)


@pytest.mark.parametrize("Model", [MLPClassifier, MLPRegressor])
def test_fit_subsets_trains_each_subset_as_fit_would(Model):
    """The stacked fit of three subsets equals three separate fits: same validation rows, initial
    weights, batches (three steps an epoch here), dropout masks, early stopping and outputs."""
    X, y = make_classification(n_samples=240, n_features=6, n_informative=4, random_state=0)
    target = y if Model is MLPClassifier else X[:, 0] - 2 * X[:, 1] + 0.1 * y
    subsets = [np.arange(0, 160), np.arange(40, 200), np.r_[0:100, 150:209]]  # 160, 160, 159 rows
    params = {"width": 32, "depth": 2, "dropout": 0.2, "weight_decay": 1e-4, "lr": 1e-2}
    params |= {"batch_size": 48, "max_epochs": 60, "patience": 8, "dtype": "float64"}
    model = Model(**params, device="cpu", random_state=3)
    stacked = model.fit_subsets(X, target, subsets)
    predict = "predict_proba" if Model is MLPClassifier else "predict"
    for fitted, rows in zip(stacked, subsets, strict=True):
        alone = Model(**params, device="cpu", random_state=3).fit(X[rows], target[rows])
        assert fitted.n_features_in_ == 6 and fitted is not model
        assert fitted.best_epoch_ == alone.best_epoch_ and fitted.n_epochs_ == alone.n_epochs_
        np.testing.assert_allclose(fitted.loss_curve_, alone.loss_curve_, rtol=1e-9)
        np.testing.assert_allclose(fitted.val_loss_curve_, alone.val_loss_curve_, rtol=1e-9)
        np.testing.assert_allclose(
            getattr(fitted, predict)(X), getattr(alone, predict)(X), rtol=1e-9, atol=1e-12
        )
    assert len({m.best_epoch_ for m in stacked}) > 1  # each member stopped on its own


def test_fit_subsets_with_a_class_missing_from_one_subset():
    X, y = make_classification(
        n_samples=150, n_features=5, n_classes=3, n_informative=3, random_state=0
    )
    subsets = [np.arange(150), np.flatnonzero(y != 2)]
    models = MLPClassifier(max_epochs=5, device="cpu", random_state=0).fit_subsets(X, y, subsets)
    assert [list(m.classes_) for m in models] == [[0, 1, 2], [0, 1]]
    assert models[1].predict_proba(X).shape == (150, 2)
    alone = MLPClassifier(max_epochs=5, device="cpu", random_state=0).fit(X[subsets[1]], y[y != 2])
    np.testing.assert_allclose(models[1].predict_proba(X), alone.predict_proba(X), rtol=1e-5)


def test_schedule_is_a_function_of_the_epoch_so_a_refit_replays_it():
    """A fit stopped at epoch 10 of a 30-epoch cosine schedule trains exactly as the first 10
    epochs of the 30-epoch fit; a 10-epoch schedule decays faster and trains differently."""
    X, y = make_classification(n_samples=120, n_features=5, random_state=0)
    params = {"val_fraction": 0.0, "dtype": "float64", "device": "cpu", "random_state": 0}
    long = MLPClassifier(max_epochs=30, **params).fit(X, y)
    replay = MLPClassifier(max_epochs=10, schedule_epochs=30, **params).fit(X, y)
    short = MLPClassifier(max_epochs=10, **params).fit(X, y)
    flat = MLPClassifier(max_epochs=10, lr_scheduler=False, **params).fit(X, y)
    np.testing.assert_allclose(replay.loss_curve_, long.loss_curve_[:10], rtol=1e-12)
    assert replay.schedule_epochs_ == long.schedule_epochs_ == 30 and short.schedule_epochs_ == 10
    assert short.loss_curve_[2] != replay.loss_curve_[2]  # (loss of epoch e: before its step)
    assert flat.loss_curve_[0] == short.loss_curve_[0]  # the first epoch runs at the peak rate
    assert flat.loss_curve_[-1] != short.loss_curve_[-1]


def test_refit_params_replay_the_chosen_epoch_and_schedule():
    X, y = load_breast_cancer(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    model = SPEC.build("classification", {"width": 32}, device="cpu", seed=0).fit(X, y)
    hints = SPEC.refit_params(model)
    assert hints == {
        "n_ensemble": 5,
        "max_epochs": model.best_epoch_,
        "schedule_epochs": model.schedule_epochs_,
        "max_gflop": None,
        "val_fraction": 0.0,
    }
    assert model.schedule_epochs_ == model.epoch_cap_ == model.max_epochs
    refit = SPEC.build("classification", {"width": 32, **hints}, device="cpu", seed=0).fit(X, y)
    assert refit.n_epochs_ == model.best_epoch_ and refit.schedule_epochs_ == model.max_epochs
    assert len(refit.members_) == 5


@pytest.mark.parametrize("Model", [MLPClassifier, MLPRegressor])
def test_an_ensemble_averages_networks_each_trained_as_fit_would(Model):
    """Member 0 of ``n_ensemble=3`` is the network ``n_ensemble=1`` trains (same split, seed,
    batches, dropout, stopping); the prediction is the mean of the members' softmaxes (outputs),
    recomputed here from their weights with a plain torch forward pass."""
    X, y = make_classification(n_samples=200, n_features=6, n_informative=4, random_state=1)
    target = y if Model is MLPClassifier else X[:, 0] - 2 * X[:, 1] + 0.1 * y
    params = {"width": 24, "dropout": 0.2, "batch_size": 64, "max_epochs": 40, "patience": 5}
    params |= {"dtype": "float64", "device": "cpu", "random_state": 7}
    single = Model(**params).fit(X, target)
    ensemble = Model(**params, n_ensemble=3).fit(X, target)
    assert len(ensemble.members_) == 3 and len(single.members_) == 1
    assert ensemble.best_epoch_ == single.best_epoch_
    np.testing.assert_allclose(ensemble.val_loss_curve_, single.val_loss_curve_, rtol=1e-9)
    for a, b in zip(ensemble.weights_, single.weights_, strict=True):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-9, atol=1e-12)
    assert not torch.allclose(ensemble.members_[1][0][0], ensemble.members_[0][0][0])

    def forward(weights, biases):
        x = torch.as_tensor(X, dtype=torch.float64)
        for i, (w, b) in enumerate(zip(weights, biases, strict=True)):
            x = torch.nn.functional.linear(x, w, b)
            x = torch.relu(x) if i < len(weights) - 1 else x
        return x

    outs = [forward(w, b) for w, b in ensemble.members_]
    if Model is MLPClassifier:
        expected = torch.stack([torch.softmax(o, dim=1) for o in outs]).mean(0).numpy()
        np.testing.assert_allclose(ensemble.predict_proba(X), expected, rtol=1e-9, atol=1e-12)
        assert np.array_equal(ensemble.predict(X), expected.argmax(axis=1))
    else:
        mean = torch.stack(outs).mean(0)[:, 0].numpy()
        expected = mean * ensemble.y_scale_ + ensemble.y_mean_
        np.testing.assert_allclose(ensemble.predict(X), expected, rtol=1e-9, atol=1e-12)
    # fit_subsets trains ensembles too: each subset's fit is the ensemble fit on its rows.
    (subset,) = Model(**params, n_ensemble=3).fit_subsets(X, target, [np.arange(150)])
    alone = Model(**params, n_ensemble=3).fit(X[:150], target[:150])
    predict = "predict_proba" if Model is MLPClassifier else "predict"
    np.testing.assert_allclose(
        getattr(subset, predict)(X), getattr(alone, predict)(X), rtol=1e-9, atol=1e-12
    )


def test_max_gflop_caps_the_epochs_of_large_networks():
    X, y = make_classification(n_samples=200, n_features=10, random_state=0)
    params = {"width": 512, "depth": 4, "val_fraction": 0.0, "device": "cpu", "random_state": 0}
    # weights: 10*512 + 3*512*512 + 512*2 = 792,576; 6 flops each per row and epoch, 200 rows
    per_epoch = 792_576 * 6 * 200 / 1e9
    capped = MLPClassifier(**params, max_gflop=10 * per_epoch + 1e-9).fit(X, y)
    assert capped.epoch_cap_ == capped.n_epochs_ == 10 == capped.schedule_epochs_
    free = MLPClassifier(**params, max_epochs=12, max_gflop=None).fit(X, y)
    assert free.epoch_cap_ == free.n_epochs_ == 12
    small = MLPClassifier(**{**params, "width": 8}, max_epochs=12).fit(X, y)
    assert small.n_epochs_ == 12  # a small network is not capped


def test_cli_rows_do_not_depend_on_jobs_and_float64_is_used(tmp_path):
    """`rfmbench run --models mlp` writes the same rows with --jobs 1 and --jobs 2 (the stacked
    inner folds included), and under --precision float64 the networks train in float64."""
    import json

    from typer.testing import CliRunner

    from rfmbench.cli import app
    from rfmbench.results import read_run

    compared = ["dataset", "fold", "status", "params", "inner_cv_score", "accuracy", "log_loss"]
    frames = {}
    for jobs in (1, 2):
        args = ["run", "--datasets", "iris", "--models", "mlp", "--folds", "2"]
        args += ["--inner-folds", "2", "--budget", "2", "--jobs", str(jobs), "--device", "cpu"]
        args += ["--precision", "float64", "--out", str(tmp_path), "--run-id", f"jobs{jobs}"]
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, result.output
        rows = read_run(tmp_path / f"jobs{jobs}.csv")
        frames[jobs] = rows[compared].sort_values(["dataset", "fold"]).reset_index(drop=True)
    assert (frames[1]["status"] == "ok").all(), frames[1]
    pd.testing.assert_frame_equal(frames[1], frames[2], check_exact=True)
    for params in frames[1]["params"]:
        assert {"max_epochs", "schedule_epochs", "lr_scheduler"} <= set(json.loads(params))
    model = SPEC.make("classification", {}, device="cpu", seed=0, n_jobs=1, precision="float64")
    assert model.dtype == "float64"
