"""The xrfm reference row on rfm's terms: metric, no early stop, refit on every row, paper grid."""

from __future__ import annotations

import numpy as np
import pytest

from rfmbench.models.registry import get_model
from rfmbench.models.xrfm_reference import SPEC, XRFMClassifier, XRFMRegressor
from rfmbench.runner.jobs import Job, JobConfig, run_job
from tests.conftest import make_task

xrfm = pytest.importorskip("xrfm")


@pytest.fixture
def fit_calls(monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    """Every xrfm.RFM.fit call: training rows, validation rows and the selection settings."""
    calls: list[dict] = []
    real_fit = xrfm.RFM.fit

    def spy(self, train_data, val_data=None, **kwargs):
        calls.append({"n_train": len(train_data[0]), "n_val": len(val_data[0]), **kwargs})
        return real_fit(self, train_data, val_data, **kwargs)

    monkeypatch.setattr(xrfm.RFM, "fit", spy)
    return calls


@pytest.mark.parametrize("kind", ["classification", "regression"])
def test_the_rows_refit_uses_every_training_row(kind: str, fit_calls: list[dict]) -> None:
    task = make_task(kind)
    config = JobConfig(run_id="t", seed=0, inner_folds=2, budget=2, device="cpu", threads=1)
    row = run_job(Job(task.name, 0, "xrfm"), task, config)
    assert row["status"] == "ok", row.get("error")
    n_train = len(task.splits[0].train)
    *tuning, refit = fit_calls
    assert len(tuning) == 2 * 2  # budget 2 x inner folds 2, each on a carved validation split
    assert all(c["n_train"] + c["n_val"] < n_train and c["return_best_params"] for c in tuning)
    assert refit["n_train"] == n_train  # every training row of the outer fold
    assert refit["return_best_params"] is False  # the chosen iteration, no selection
    metric = "accuracy" if kind == "classification" else "mse"
    assert all(c["tuning_metric"] == metric and c["early_stop_rfm"] is False for c in fit_calls)


def test_iteration_chosen_on_validation_goes_to_the_refit() -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 6))
    y = (X[:, 0] + X[:, 1] > 0).astype(int)
    model = XRFMClassifier(iters=3, random_state=0).fit(X, y)
    assert model.n_train_rows_ == 160 and 0 <= model.best_iter_ <= 3
    hints = SPEC.refit_params(model)
    assert hints == {"iters": model.best_iter_, "val_fraction": 0.0}
    refit = SPEC.build("classification", hints, device="cpu", seed=0, n_jobs=1).fit(X, y)
    assert refit.n_train_rows_ == 200 and refit.model_.centers.shape[0] == 200
    assert refit.score(X, y) > 0.9
    # A given validation split is used as it is (the paper protocol's selection split).
    given = XRFMRegressor(iters=2).fit(X[:150], X[:150, 0], X_val=X[150:], y_val=X[150:, 0])
    assert given.n_train_rows_ == 150


def test_paper_protocol_searches_the_same_grid_as_rfm() -> None:
    rfm_grid = get_model("rfm").paper_space
    assert SPEC.paper_space == {axis: rfm_grid[axis] for axis in SPEC.paper_space}
    assert set(rfm_grid) - set(SPEC.paper_space) == {"agop_scale", "max_leaf_size", "dtype"}
    row_normed = XRFMRegressor(iters=0, row_norm=True).fit(np.eye(3) * [1, 2, 3], [1.0, 2.0, 3.0])
    np.testing.assert_allclose(row_normed.predict(5 * np.eye(3)), row_normed.predict(np.eye(3)))
