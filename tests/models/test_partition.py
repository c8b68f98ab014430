"""Every RFM path forced on small data: partition (tiny leaves), PCG (tiny memory), the plan's errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rfmbench.metrics import beats
from rfmbench.models.kernel_ridge import KernelRidgeRegressor
from rfmbench.models.memory import MemoryPlan, exact_bytes, max_exact_rows
from rfmbench.models.partition import (
    SOFT_KEEP_MASS,
    SPLIT_TEMPERATURES,
    build_tree,
    leaf_weights,
    overlapping_rows,
    route,
)
from rfmbench.models.rfm import SPEC, RFMClassifier, RFMRegressor


def _data(n, d=5, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    return X, np.sin(2 * X[:, 0]) + X[:, 1] ** 2 + 0.05 * rng.normal(size=n)


def test_tree_halves_until_the_leaf_size_and_routes_rows_to_their_leaf():
    rng = np.random.default_rng(1)
    X = torch.tensor(np.vstack([rng.normal(size=(90, 3)), np.zeros((40, 3))]))  # 40 duplicates
    calls = []

    def direction(idx):
        calls.append(len(idx))
        return torch.tensor([1.0, 0.5, 0.0], dtype=X.dtype) / 1.25**0.5

    tree, leaves = build_tree(X, 20, direction)
    sizes = [len(rows) for rows in leaves]
    assert max(sizes) <= 20 and sum(sizes) == 130 and max(sizes) - min(sizes) <= 1
    assert calls[0] == 130 and len(leaves) == 8
    assert torch.equal(torch.cat(leaves).sort().values, torch.arange(130))
    which = route(tree, X)
    for k, rows in enumerate(leaves):  # training rows go back to their leaf (ties aside)
        distinct = rows[rows < 90]
        assert torch.all(which[distinct] == k)


def test_overlapping_rows_add_the_rows_nearest_each_leaf_across_its_splits():
    X, _ = _data(200)
    X_t = torch.tensor(X)
    axes = iter([0, 1, 2])  # the root splits on feature 0, its children on 1 and 2

    def direction(idx):
        v = torch.zeros(5, dtype=torch.float64)
        v[next(axes)] = 1.0
        return v

    tree, leaves = build_tree(X_t, 50, direction)
    extended = overlapping_rows(tree, X_t, leaves, 0.3)
    assert overlapping_rows(tree, X_t, leaves, 0.0) == leaves
    # Brute force: a row's distance to a leaf is its largest wrong-side margin along the path,
    # each margin in units of its split's scale.
    paths = {}

    def walk(node, path):
        if node.leaf >= 0:
            paths[node.leaf] = path
            return
        axis = int(node.direction.argmax())
        walk(node.left, [*path, (axis, node.threshold, node.scale, +1)])
        walk(node.right, [*path, (axis, node.threshold, node.scale, -1)])

    walk(tree, [])
    for k, own in enumerate(leaves):
        distance = np.zeros(len(X))
        for axis, threshold, scale, side in paths[k]:
            distance = np.maximum(distance, side * (X[:, axis] - threshold) / scale)
        assert np.all(distance[own.numpy()] <= 0)
        outside = np.setdiff1d(np.arange(len(X)), own.numpy())
        nearest = outside[np.argsort(distance[outside], kind="stable")[: round(0.3 * len(own))]]
        np.testing.assert_array_equal(extended[k].numpy(), np.sort(np.r_[own.numpy(), nearest]))


@pytest.mark.parametrize("overlap, size", [(0.0, 60), (0.25, 75)])
def test_partitioned_kernel_ridge_is_one_kernel_ridge_per_leaf(overlap, size):
    X, y = _data(240)
    X_test, _ = _data(60, seed=1)
    kw = dict(bandwidth=3.0, reg=1e-2, dtype="float64", device="cpu", leaf_overlap=overlap)
    model = KernelRidgeRegressor(max_leaf_size=70, **kw).fit(X, y)
    assert model.solver_path_ == "partitioned(leaves=4; exact)"
    assert model.leaf_sizes_ == [size] * 4
    # Each leaf's training rows: those routed to it, plus the overlap (checked on its own above).
    own = route(model.tree_, torch.tensor(X))
    own_rows = [torch.nonzero(own == k).flatten() for k in range(4)]
    leaf_rows = overlapping_rows(model.tree_, torch.tensor(X), own_rows, overlap)
    which = route(model.tree_, torch.tensor(X_test)).numpy()
    direct = np.empty(len(X_test))
    for k, leaf in enumerate(model._leaves):
        rows = leaf_rows[k].numpy()
        np.testing.assert_array_equal(leaf.centers.numpy(), X[rows])
        single = KernelRidgeRegressor(max_leaf_size=None, **kw).fit(X[rows], y[rows])
        direct[which == k] = single.predict(X_test[which == k])
    np.testing.assert_allclose(model.predict(X_test), direct, rtol=1e-10, atol=1e-12)


def test_leaf_weights_are_the_split_sigmoid_and_tend_to_the_hard_route():
    X, _ = _data(200)
    X_t = torch.tensor(X)
    e0 = torch.zeros(5, dtype=torch.float64)
    e0[0] = 1.0
    tree, _ = build_tree(X_t, 100, lambda idx: e0)  # one split, on the first feature
    p = np.sort(X[:, 0])
    assert tree.scale == pytest.approx(p[(3 * 199) // 4] - p[199 // 4])  # the IQR
    X_test = torch.tensor(_data(80, seed=1)[0])
    right = torch.sigmoid((X_test[:, 0] - tree.threshold) / (0.5 * tree.scale)).numpy()
    expected = np.stack([1 - right, right], axis=1)
    hard = route(tree, X_test).numpy()
    # Two leaves: the lighter is dropped when the heavier alone holds SOFT_KEEP_MASS.
    heavy = expected.max(axis=1) >= SOFT_KEEP_MASS
    expected[heavy] = np.eye(2)[expected[heavy].argmax(axis=1)]
    W = leaf_weights(tree, X_test, 0.5, 2).numpy()
    np.testing.assert_allclose(W, expected, rtol=1e-12, atol=1e-15)
    assert ((W > 0) & (W < 1)).any()  # some rows are mixed
    cold = leaf_weights(tree, X_test, 1e-9, 2).numpy()
    np.testing.assert_array_equal(cold, np.eye(2)[hard])


def test_soft_routing_mixes_the_leaves_kernel_ridge_fits_by_their_weights():
    X, y = _data(240)
    X_test, _ = _data(60, seed=1)
    kw = dict(bandwidth=3.0, reg=1e-2, dtype="float64", device="cpu")
    model = RFMRegressor(iters=0, max_leaf_size=70, split_temperature=0.3, **kw).fit(X, y)
    assert model.split_temperature_ == 0.3 and len(model._leaves) == 4
    W = leaf_weights(model.tree_, torch.tensor(X_test), 0.3, 4).numpy()
    direct = np.zeros(len(X_test))
    for k, leaf in enumerate(model._leaves):
        rows = np.isin(X, leaf.centers.numpy()).all(axis=1)
        single = KernelRidgeRegressor(max_leaf_size=None, **kw).fit(X[rows], y[rows])
        direct += W[:, k] * single.predict(X_test)
    np.testing.assert_allclose(model.predict(X_test), direct, rtol=1e-10, atol=1e-12)
    assert (W > 0).sum(axis=1).max() > 1


def test_auto_split_temperature_is_the_best_on_the_validation_rows_and_goes_to_the_refit():
    X, y = _data(600, d=4)
    X_val, y_val = _data(200, d=4, seed=3)
    kw = dict(iters=1, max_leaf_size=150, device="cpu", dtype="float64", random_state=0)
    model = RFMRegressor(**kw).fit(X, y, X_val=X_val, y_val=y_val)
    best_t, best, fits = None, -np.inf, {}
    for t in SPLIT_TEMPERATURES:  # each temperature fixed: the same leaves, its own routing
        fits[t] = RFMRegressor(**kw, split_temperature=t).fit(X, y, X_val=X_val, y_val=y_val)
        score = -np.mean((fits[t].predict(X_val) - y_val) ** 2)
        if beats(score, best):
            best_t, best = t, score
    assert model.split_temperature_ == (best_t or None)
    np.testing.assert_allclose(model.predict(X_val), fits[best_t].predict(X_val), rtol=1e-12)
    hints = SPEC.refit_params(model)
    assert hints["split_temperature"] == (model.split_temperature_ or 0.0)
    assert "max_leaf_size" not in hints  # a tree: the refit's own leaf size
    hard = RFMRegressor(**kw, split_temperature=0).fit(X, y, X_val=X_val, y_val=y_val)
    assert "split_temperature" not in SPEC.refit_params(hard)  # fixed: the refit keeps its own


def test_partitioned_rfm_aggregates_the_leaf_metrics_and_learns():
    X, y = _data(600, d=8)
    X_test, y_test = _data(300, d=8, seed=2)
    # Hard routing: each leaf carves its own validation rows (this test is about the leaves' M).
    kw = dict(iters=2, bandwidth=5.0, split_temperature=0, device="cpu", random_state=0)
    model = RFMRegressor(max_leaf_size=150, **kw).fit(X, y)
    assert len(model.leaf_M_) == 4 and model.leaf_sizes_ == [150] * 4
    np.testing.assert_allclose(model.M_, np.mean(model.leaf_M_, axis=0))
    assert model.feature_importances_[:2].sum() > 0.6  # the two relevant features
    assert len(model.solve_methods_) == len(model.solve_residuals_) == 4 * 3
    mse = np.mean((model.predict(X_test) - y_test) ** 2)
    assert mse < 0.5 * np.var(y_test)
    again = RFMRegressor(max_leaf_size=150, **kw).fit(X, y)
    np.testing.assert_array_equal(again.predict(X_test), model.predict(X_test))


def test_partitioned_classifier_with_a_leaf_missing_a_class():
    X, _ = _data(300, d=3)
    y = np.where(X[:, 0] > 1.0, "c", np.where(X[:, 1] > 0, "a", "b"))  # "c" sits in one corner
    model = RFMClassifier(iters=1, max_leaf_size=80, device="cpu", random_state=0).fit(X, y)
    assert model.solver_path_.startswith("partitioned(leaves=4")
    assert np.mean(model.predict(X) == y) > 0.8
    proba = model.predict_proba(X)
    assert proba.shape == (300, 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)


def test_tiny_memory_budget_takes_the_iterative_path_and_matches_the_exact_one():
    X, y = _data(400)
    kw = dict(bandwidth=3.0, reg=1e-2, max_leaf_size=None, device="cpu")
    exact = KernelRidgeRegressor(**kw).fit(X, y)
    # 400 x 400 float32 is 0.6 MB: 0.4 MB cannot hold it, but holds the Nystrom factor of rank 50.
    budget = 0.4 * 2**20 / 2**30
    pcg = KernelRidgeRegressor(memory_gb=budget, nystrom_rank=50, block_memory_mb=0.05, **kw)
    pcg.fit(X, y)
    assert exact.solver_path_ == "exact" and pcg.solver_path_.startswith("pcg(steps=")
    assert pcg.solve_residuals_[0] <= 1e-3
    np.testing.assert_allclose(pcg.predict(X), exact.predict(X), atol=2e-3 * np.abs(y).max())


def test_rfm_iterative_path_warm_starts_and_stays_close_to_exact():
    X, y = _data(400, d=6)
    X_test, y_test = _data(200, d=6, seed=3)
    kw = dict(iters=2, bandwidth=5.0, max_leaf_size=None, device="cpu", random_state=0)
    exact = RFMRegressor(**kw).fit(X, y)
    pcg = RFMRegressor(solver="pcg", nystrom_rank=60, **kw).fit(X, y)
    assert pcg.solve_methods_ == ["pcg"] * 3 and max(pcg.solve_residuals_) <= 1e-3
    mse_exact = np.mean((exact.predict(X_test) - y_test) ** 2)
    mse_pcg = np.mean((pcg.predict(X_test) - y_test) ** 2)
    assert mse_pcg < 1.1 * mse_exact, (mse_pcg, mse_exact)


def test_forcing_the_exact_path_beyond_memory_fails_with_one_line():
    X, y = _data(400)
    model = RFMRegressor(solver="cholesky", max_leaf_size=None, memory_gb=1e-4, device="cpu")
    with pytest.raises(MemoryError) as info:
        model.fit(X, y)
    message = str(info.value)
    assert "\n" not in message and "needs" in message and "GiB" in message
    assert "solver='pcg'" in message and "max_leaf_size" in message


def test_auto_leaf_size_follows_the_memory_plan():
    X, y = _data(500)
    # A budget that holds an exact fit of ~200 rows: auto partitions 500 rows into leaves <= that.
    budget = exact_bytes(200, 5, 1, 4, 512 * 2**20) / 2**30
    model = KernelRidgeRegressor(memory_gb=budget, device="cpu").fit(X, y)
    rows = max_exact_rows(budget * 2**30, 5, 1, 4, 512 * 2**20)
    assert 195 <= rows <= 200 and max(model.leaf_sizes_) <= rows
    assert model.solver_path_.startswith("partitioned(leaves=4")
    assert MemoryPlan.for_device("cpu", None).budget > 0


def test_small_data_default_is_one_exact_fit():
    X, y = _data(200)
    model = RFMRegressor(iters=1, device="cpu", random_state=0).fit(X, y)
    assert model.solver_path_ == "exact" and model.tree_ is None and model.leaf_sizes_ == [200]


def test_split_direction_after_a_float64_repair_is_the_float64_one():
    """titanic's 14 distinct rows, made near-duplicates, at a tiny ridge: the float32 solve is
    repaired to float64 coefficients, which cancel; their AGOP must be taken in float64 too."""
    from pathlib import Path

    import pandas as pd

    from rfmbench.models.kernels import LaplaceKernel
    from rfmbench.models.partition import agop_direction
    from rfmbench.models.solvers import KernelSystem, exact_solve

    frame = pd.read_csv(
        Path(__file__).parents[1] / "data" / "uci121" / "titanic" / "titanic_R.dat",
        sep="\t",
        index_col=0,
    )
    X = frame.iloc[:, :-1].to_numpy(np.float64)
    X = X + 1e-3 * np.random.default_rng(0).normal(size=X.shape)
    Y = torch.tensor(np.eye(2)[frame.iloc[:, -1].to_numpy(int)])
    kernel, reg = LaplaceKernel(10.0), 1e-5
    X32 = torch.tensor(X, dtype=torch.float32)
    assert exact_solve(KernelSystem(kernel, X32, None, reg), Y.float()).coef.dtype == torch.float64

    def direction(X_t):
        return agop_direction(
            kernel, X_t, Y.to(X_t.dtype), reg=reg, agop_samples=10**6, block_bytes=2**26,
            generator=torch.Generator().manual_seed(0),
        )  # fmt: skip

    v32, v64 = direction(X32), direction(X32.double())
    assert v32.dtype == torch.float32
    assert abs(float(v32.double() @ v64)) > 0.99


def test_split_directions_take_the_agop_over_every_split_row(monkeypatch):
    """Kernel ridge (no AGOP iteration, ``agop_samples`` 1) splits on the AGOP of all its rows."""
    import rfmbench.models.rfm as rfm

    calls = []

    def recorded(kernel, X, Y, **kw):
        calls.append((X.shape[0], kw["agop_samples"]))
        return direction(kernel, X, Y, **kw)

    direction = rfm.agop_direction
    monkeypatch.setattr(rfm, "agop_direction", recorded)
    X, y = _data(300)
    KernelRidgeRegressor(max_leaf_size=80, device="cpu").fit(X, y)
    assert len(calls) == 3 and all(samples >= rows for rows, samples in calls)


@pytest.mark.parametrize("cls", [RFMRegressor, RFMClassifier])
def test_the_smallest_leaves_still_carve_a_validation_split(cls):
    X, y = _data(7)
    if cls is RFMClassifier:
        y = (y > np.median(y)).astype(int)
    kw = dict(iters=1, split_temperature=0, device="cpu", random_state=0)
    model = cls(max_leaf_size=3, **kw).fit(X, y)
    assert min(model.leaf_sizes_) == 2 and model.predict(X).shape == (7,)
    with pytest.raises(ValueError, match="max_leaf_size"):
        cls(max_leaf_size=2, **kw).fit(X, y)


@pytest.mark.parametrize("name", ["rfm", "kernel-ridge"])
def test_a_refit_on_more_rows_keeps_the_unpartitioned_form_tuning_scored(name, monkeypatch):
    """Inner training parts of 200 rows fit in one leaf of 250; the refit's 300 rows would not."""
    import rfmbench.models.rfm as rfm
    from rfmbench.models.registry import get_model
    from rfmbench.tuning import tune

    monkeypatch.setitem(rfm.AUTO_LEAF_ROWS, "cpu", 250)
    X, y = _data(300)
    spec = get_model(name)
    result = tune(spec, "regression", X, y, inner_folds=3, budget=1, seed=0, device="cpu")
    params = {**result.best_params, **result.refit_params}
    assert params["max_leaf_size"] is None
    refit = spec.make("regression", params, device="cpu", seed=0, n_jobs=1).fit(X, y)
    assert refit.solver_path_ == "exact"
    unhinted = {**params, "max_leaf_size": "auto"}
    tree = spec.make("regression", unhinted, device="cpu", seed=0, n_jobs=1).fit(X, y)
    assert tree.solver_path_.startswith("partitioned(leaves=2")


def test_paper_grids_solve_one_exact_system():
    """rfm and kernel ridge under --protocol paper: the same single system, never a tree."""
    from rfmbench.models.registry import get_model

    for name in ("rfm", "kernel-ridge"):
        assert get_model(name).paper_space["max_leaf_size"] == [None]
