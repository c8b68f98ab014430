"""Kernel system solves against a direct float64 solve: residual check and repair, Nystrom-PCG."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.linalg
import torch

from rfmbench.models import solvers
from rfmbench.models.kernels import LaplaceKernel, make_kernel
from rfmbench.models.solvers import (
    KernelSystem,
    exact_solve,
    pcg_solve,
    relative_residual,
    solve_kernel_system,
)

TITANIC = Path(__file__).parents[1] / "data" / "uci121" / "titanic" / "titanic_R.dat"


def _titanic():
    """Every other row of titanic: 1,101 rows, 14 distinct (as in all 2,201), one-hot labels."""
    frame = pd.read_csv(TITANIC, sep="\t", index_col=0).iloc[::2]
    X = frame.iloc[:, :-1].to_numpy(np.float64)
    Y = np.eye(2)[frame.iloc[:, -1].to_numpy(int)]
    return X, Y


def _direct(X, Y, reg, bandwidth=10.0, kernel="laplace"):
    """The float64 solution by scipy, straight from a float64 kernel matrix."""
    X64 = torch.from_numpy(X)
    K = make_kernel(kernel, bandwidth).matrix(X64, X64).numpy()
    return scipy.linalg.solve(K + reg * np.eye(len(X)), Y, assume_a="pos")


def _system(X, reg, dtype, **kw):
    X_t = torch.tensor(X, dtype=dtype)
    return KernelSystem(LaplaceKernel(kw.get("bandwidth", 10.0)), X_t, None, reg)


def test_titanic_float32_cholesky_is_unsound_and_the_check_repairs_it(caplog):
    X, Y = _titanic()
    assert len(np.unique(X, axis=0)) == 14 and len(X) == 1101
    system = _system(X, 1e-3, torch.float32)
    Y32 = torch.tensor(Y, dtype=torch.float32)
    # The plain float32 Cholesky succeeds without a complaint, and is wrong.
    plain, method = solve_kernel_system(system.matrix(), Y32, 1e-3)
    assert method == "cholesky"
    assert relative_residual(system, plain, Y32) > 10 * solvers.RESIDUAL_TOL

    with caplog.at_level(logging.INFO, logger="rfmbench.models.solvers"):
        sol = exact_solve(system, Y32)
    assert sol.method in ("cholesky+refined", "cholesky-float64"), sol.method
    assert sol.residual <= solvers.RESIDUAL_TOL
    assert sol.coef.dtype == torch.float64
    assert "repaired" in caplog.text
    # Against scipy's float64 solve: the fitted values agree to the tolerance's order.
    direct = _direct(X, Y, 1e-3)
    K = LaplaceKernel(10.0).matrix(torch.from_numpy(X), torch.from_numpy(X)).numpy()
    repaired_error = np.abs(K @ sol.coef.numpy() - K @ direct).max()
    plain_error = np.abs(K @ plain.double().numpy() - K @ direct).max()
    assert repaired_error < 1e-3 < 5e-3 < plain_error, (repaired_error, plain_error)


def test_float64_resolve_when_refinement_is_not_enough(monkeypatch):
    X, Y = _titanic()
    monkeypatch.setattr(solvers, "REFINE_STEPS", 0)
    system = _system(X, 1e-3, torch.float32)
    sol = exact_solve(system, torch.tensor(Y, dtype=torch.float32))
    assert sol.method == "cholesky-float64" and sol.residual <= solvers.RESIDUAL_TOL
    X32 = X.astype(np.float32).astype(np.float64)  # the rows the float32 model holds
    np.testing.assert_allclose(sol.coef.numpy(), _direct(X32, Y, 1e-3), rtol=1e-6, atol=1e-6)


def test_no_float64_resolve_beyond_memory_is_not_silent(monkeypatch, caplog):
    X, Y = _titanic()
    monkeypatch.setattr(solvers, "REFINE_STEPS", 0)
    system = _system(X, 1e-3, torch.float32)
    with caplog.at_level(logging.WARNING, logger="rfmbench.models.solvers"):
        sol = exact_solve(system, torch.tensor(Y, dtype=torch.float32), fits=lambda nbytes: False)
    assert sol.method == "cholesky" and sol.residual > solvers.RESIDUAL_TOL
    assert "above" in caplog.text and "numerically singular" in caplog.text


def test_a_float64_repair_refused_by_memory_keeps_the_solve_at_hand(monkeypatch, caplog):
    """The float64 repair's least-squares fallback can be refused by the plan (MemoryError): the
    refined float32 solve is returned, with its residual and a warning, not an exception."""
    X, Y = _titanic()
    monkeypatch.setattr(solvers, "REFINE_STEPS", 0)
    factor_solve = solvers._factor_solve

    def refused_in_float64(K, *args, **kwargs):
        if K.dtype == torch.float64:
            raise MemoryError("least-squares solution needs more than the plan allows")
        return factor_solve(K, *args, **kwargs)

    monkeypatch.setattr(solvers, "_factor_solve", refused_in_float64)
    system = _system(X, 1e-3, torch.float32)
    with caplog.at_level(logging.WARNING, logger="rfmbench.models.solvers"):
        sol = exact_solve(system, torch.tensor(Y, dtype=torch.float32))
    assert sol.method == "cholesky" and sol.residual > solvers.RESIDUAL_TOL
    assert "no float64 repair" in caplog.text and "above" in caplog.text


def test_near_singular_kernel_matches_the_direct_solve():
    rng = np.random.default_rng(0)
    base = rng.normal(size=(60, 4))
    X = np.repeat(base, 10, axis=0) + 1e-6 * rng.normal(size=(600, 4))  # near-duplicates
    Y = np.sin(X[:, :1]) + 0.1 * rng.normal(size=(600, 1))
    reg = 1e-6
    sol = exact_solve(_system(X, reg, torch.float32), torch.tensor(Y, dtype=torch.float32))
    assert sol.residual <= solvers.RESIDUAL_TOL
    K = LaplaceKernel(10.0).matrix(torch.from_numpy(X), torch.from_numpy(X)).numpy()
    direct = _direct(X, Y, reg)
    scale = np.abs(Y).max()
    assert np.abs(K @ sol.coef.double().numpy() - K @ direct).max() < 1e-2 * scale


def test_a_sound_solve_is_left_alone():
    rng = np.random.default_rng(1)
    X, Y = rng.normal(size=(300, 5)), rng.normal(size=(300, 2))
    system = _system(X, 1e-2, torch.float32)
    Y32 = torch.tensor(Y, dtype=torch.float32)
    sol = exact_solve(system, Y32)
    plain, _ = solve_kernel_system(system.matrix(), Y32, 1e-2, rebuild=system.matrix)
    assert sol.method == "cholesky" and sol.residual < 1e-4
    assert torch.equal(sol.coef, plain)


def test_matmul_is_the_matrix_product():
    rng = np.random.default_rng(2)
    X = torch.tensor(rng.normal(size=(130, 6)))
    M = torch.tensor(np.diag(rng.uniform(0.5, 2, size=6)))
    A = torch.tensor(rng.normal(size=(130, 3)))
    for kernel in ("laplace", "gaussian", "product_laplace"):
        k = make_kernel(kernel, 3.0)
        system = KernelSystem(k, X, M, 0.1, block_bytes=8 * 130 * 17)  # 17 rows
        K = k.matrix(X, X, M)
        torch.testing.assert_close(system.matmul(A), K @ A + 0.1 * A, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_pcg_converges_to_the_direct_solution(dtype):
    rng = np.random.default_rng(3)
    X, Y = rng.normal(size=(400, 5)), rng.normal(size=(400, 2))
    tol = 1e-8 if dtype == torch.float64 else 1e-4
    system = _system(X, 1e-2, dtype)
    gen = torch.Generator().manual_seed(0)
    sol = pcg_solve(system, torch.tensor(Y, dtype=dtype), tol=tol, rank=40, generator=gen)
    assert sol.method == "pcg" and 0 < sol.steps < 200 and sol.residual <= 2 * tol
    direct = _direct(X, Y, 1e-2)
    rtol = 1e-5 if dtype == torch.float64 else 1e-2
    np.testing.assert_allclose(
        sol.coef.double().numpy(), direct, rtol=rtol, atol=rtol * np.abs(direct).max()
    )
    # The preconditioner pays: plain CG (rank 1) needs more steps for the same tolerance.
    plain = pcg_solve(system, torch.tensor(Y, dtype=dtype), tol=tol, rank=1, generator=gen)
    assert plain.steps > sol.steps
    # Warm start from the solution: no step needed.
    warm = pcg_solve(
        system, torch.tensor(Y, dtype=dtype), x0=torch.tensor(direct), tol=tol, generator=gen
    )
    assert warm.steps == 0 and warm.residual <= tol


def test_duplicate_heavy_data_predicts_the_same_in_float32_and_float64():
    """titanic (14 distinct rows of 2,201), one outer fold of the paper's, RFM with 2 iterations.

    Before the residual check, float32 gave 73% against float64's 79% on such a fold with both
    solves reporting a plain Cholesky; now the float32 solves are repaired and every prediction
    agrees (tolerance: none; a single differing prediction would be 0.09 points).
    """
    from rfmbench.models.rfm import RFMClassifier
    from rfmbench.preprocessing import prepare_fold
    from rfmbench.sources.base import DatasetRef, LoadContext
    from rfmbench.sources.uci121 import load

    task = load(DatasetRef("titanic"), LoadContext(folds=4, data_dir=TITANIC.parents[1]))
    split = task.splits[0]
    fold = prepare_fold(task.X, task.y, (), task.kind, split.train, split.test, scale=False)
    predictions, methods = {}, {}
    for dtype in ("float32", "float64"):
        model = RFMClassifier(
            reg=1e-3, iters=2, agop_scale="none", val_fraction=0.0, dtype=dtype, device="cpu",
            random_state=0, max_leaf_size=None,
        ).fit(fold.X_train, fold.y_train)  # fmt: skip
        predictions[dtype], methods[dtype] = model.predict(fold.X_test), model.solve_methods_
    assert all(m != "cholesky" for m in methods["float32"]), methods  # the check caught each one
    np.testing.assert_array_equal(predictions["float32"], predictions["float64"])


def test_a_failed_cholesky_retries_in_the_buffer_it_rebuilds(monkeypatch):
    """Duplicated rows and no ridge: the in-place Cholesky fails, the jitter retries run in the
    same n x n buffer (rebuilt into it), and no second n x n matrix is allocated."""
    rng = np.random.default_rng(4)
    X = np.repeat(rng.normal(size=(20, 4)), 15, axis=0)  # 300 rows, 20 distinct
    Y = rng.normal(size=(300, 1))
    system = _system(X, 0.0, torch.float64)
    K = system.matrix()
    targets = []

    def rebuild(out):
        targets.append(out.data_ptr())
        return system.matrix(out)

    square = []
    empty_like = torch.empty_like
    monkeypatch.setattr(
        torch,
        "empty_like",
        lambda t, *a, **kw: square.append(t.shape) or empty_like(t, *a, **kw),
    )
    alpha, method = solve_kernel_system(K, torch.tensor(Y), 0.0, rebuild=rebuild)
    assert method.startswith("cholesky+jitter=") and targets and set(targets) == {K.data_ptr()}
    assert (300, 300) not in square
    # A backward-stable solve of the jittered system (the matrix rebuilt independently here):
    # normwise backward error ||(K + jI) a - Y|| / (||K + jI|| ||a||) at the rounding level.
    A = system.matrix().numpy() + float(method.split("=")[1]) * np.eye(300)
    a = alpha.numpy()
    backward = np.linalg.norm(A @ a - Y) / (np.linalg.norm(A, 2) * np.linalg.norm(a))
    assert backward < 300 * np.finfo(np.float64).eps, backward


@pytest.mark.parametrize("rebuilt", [False, True])
def test_the_least_squares_fallback_asks_the_memory_plan(rebuilt):
    vecs, _ = np.linalg.qr(np.random.default_rng(6).normal(size=(5, 5)))
    A = vecs @ np.diag([2.0, 1.0, 0.5, 0.3, -0.4]) @ vecs.T  # indefinite: every Cholesky fails
    Y = torch.ones(5, 1, dtype=torch.float64)
    kw = {"rebuild": lambda out: out.copy_(torch.from_numpy(A))} if rebuilt else {}
    asked = []
    alpha, method = solve_kernel_system(
        torch.from_numpy(A.copy()), Y, 0.0, fits=lambda nbytes: asked.append(nbytes) or True, **kw
    )
    assert method == "lstsq" and asked == [3 * 25 * 8]
    np.testing.assert_allclose(alpha.numpy(), np.linalg.solve(A, Y.numpy()), rtol=1e-10)
    with pytest.raises(MemoryError, match="larger reg avoids it"):
        solve_kernel_system(torch.from_numpy(A.copy()), Y, 0.0, fits=lambda nbytes: False, **kw)


def test_nystrom_preconditioner_is_the_formula_on_the_nystrom_approximation():
    """``P^-1 = (lam_min + reg) U (Lam + reg)^-1 U^T + I - U U^T`` from the eigenpairs of
    ``C W^-1 C^T`` computed directly, with the factor built a few rows at a time in place."""
    rng = np.random.default_rng(5)
    X = rng.normal(size=(60, 3))
    system = KernelSystem(LaplaceKernel(2.0), torch.tensor(X), None, 0.05, block_bytes=8 * 12 * 7)
    precond = solvers._nystrom_preconditioner(system, 12, torch.Generator().manual_seed(0))
    idx = torch.randperm(60, generator=torch.Generator().manual_seed(0))[:12].numpy()
    K = LaplaceKernel(2.0).matrix(torch.tensor(X), torch.tensor(X)).numpy()
    C = K[:, idx]
    lam, U = np.linalg.eigh(C @ np.linalg.solve(K[np.ix_(idx, idx)], C.T))
    lam, U = lam[-12:], U[:, -12:]  # rank 12
    expected = (lam.min() + 0.05) * U @ np.diag(1 / (lam + 0.05)) @ U.T + np.eye(60) - U @ U.T
    got = precond(torch.eye(60, dtype=torch.float64)).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-8)
