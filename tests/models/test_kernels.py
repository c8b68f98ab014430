"""Blocked kernels against a direct computation with scipy's cdist."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch
from scipy.spatial.distance import cdist

from rfmbench.models.kernels import (
    KERNELS,
    GaussianKernel,
    LaplaceKernel,
    ProductLaplaceKernel,
    mahalanobis_distances,
    make_kernel,
    psd_power,
    row_blocks,
)


def _data(seed, n=37, m=23, d=6, offset=0.0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)) + offset
    Z = rng.normal(size=(m, d)) + offset
    A = rng.normal(size=(d, d))
    return X, Z, A @ A.T / d + 0.05 * np.eye(d), rng.uniform(0.2, 2.0, size=d)


def _reference(kernel, X, Z, M, bandwidth, exponent):
    """The kernel straight from its definition, with scipy's (unblocked) cdist."""
    Mfull = np.eye(X.shape[1]) if M is None else (np.diag(M) if M.ndim == 1 else M)
    if kernel == "product_laplace":
        S = np.real(scipy.linalg.sqrtm(Mfull))
        dist = cdist(X @ S, Z @ S, "minkowski", p=exponent) ** exponent
        return np.exp(-dist / bandwidth)
    dist = cdist(X, Z, "mahalanobis", VI=Mfull)
    if kernel == "gaussian":
        return np.exp(-(dist**2) / (2 * bandwidth**2))
    return np.exp(-(dist**exponent) / bandwidth)


@pytest.mark.parametrize("kernel", ["laplace", "gaussian", "product_laplace"])
@pytest.mark.parametrize("metric", ["identity", "full", "diag"])
@pytest.mark.parametrize("exponent", [1.0, 0.8])
def test_kernels_match_direct_computation(kernel, metric, exponent):
    X, Z, M_full, M_diag = _data(0, offset=3.0)
    M = {"identity": None, "full": M_full, "diag": M_diag}[metric]
    Mt = None if M is None else torch.from_numpy(M)
    out = torch.full((X.shape[0], Z.shape[0]), np.nan, dtype=torch.float64)
    got = make_kernel(kernel, 2.0, exponent).matrix(
        torch.from_numpy(X), torch.from_numpy(Z), Mt, block_rows=5, out=out
    )
    assert got is out  # written in place, block by block (37 rows in blocks of 5)
    expected = _reference(kernel, X, Z, M, 2.0, exponent)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-9, atol=1e-12)
    # X is Z: the symmetric path (the training kernel), with an exact zero self-distance.
    Xt = torch.from_numpy(X)
    sym = make_kernel(kernel, 2.0, exponent).matrix(Xt, Xt, Mt, block_rows=5)
    np.testing.assert_allclose(sym.numpy(), _reference(kernel, X, X, M, 2.0, exponent), rtol=1e-9)
    assert torch.all(sym.diagonal() == 1.0)


def test_mahalanobis_distances_and_exact_zero_self_distance():
    X, Z, M, m = _data(1, offset=100.0)
    Xt = torch.from_numpy(X)
    got = mahalanobis_distances(Xt, torch.from_numpy(Z), torch.from_numpy(M), block_rows=4)
    np.testing.assert_allclose(got.numpy(), cdist(X, Z, "mahalanobis", VI=M), rtol=1e-8)
    self_dist = mahalanobis_distances(Xt, Xt, torch.from_numpy(m))
    assert torch.all(self_dist.diagonal() == 0)
    np.testing.assert_allclose(
        self_dist.numpy(), cdist(X, X, "mahalanobis", VI=np.diag(m)), rtol=1e-8, atol=1e-9
    )


def test_float32_uncentred_data_keeps_accuracy():
    # The mean shift keeps the |x|^2 + |z|^2 - 2 x.z expansion accurate far from the origin.
    X, Z, M, _ = _data(2, offset=1000.0)
    got = LaplaceKernel(2.0).matrix(torch.from_numpy(X).float(), torch.from_numpy(Z).float())
    np.testing.assert_allclose(got.numpy(), _reference("laplace", X, Z, None, 2.0, 1.0), atol=1e-4)


def test_psd_power_clips_negative_eigenvalues():
    vecs, _ = np.linalg.qr(np.random.default_rng(3).normal(size=(4, 4)))
    M = torch.from_numpy(vecs @ np.diag([4.0, 1.0, 0.0, -1e-9]) @ vecs.T)
    root = psd_power(M, 0.5).numpy()
    np.testing.assert_allclose(root @ root, vecs @ np.diag([4.0, 1.0, 0, 0]) @ vecs.T, atol=1e-8)
    np.testing.assert_allclose(psd_power(torch.tensor([4.0, -1.0]), 0.5).numpy(), [2.0, 0.0])


def test_row_blocks_cover_rows_once():
    blocks = row_blocks(10, 3)
    assert [(b.start, b.stop) for b in blocks] == [(0, 3), (3, 6), (6, 9), (9, 10)]
    assert row_blocks(5, None) == [slice(0, 5)]


def test_unknown_kernel_and_bad_metric_shape():
    X = torch.zeros(3, 2)
    with pytest.raises(ValueError, match="unknown kernel"):
        make_kernel("cosine", 1.0)
    with pytest.raises(ValueError, match="M must have shape"):
        LaplaceKernel(1.0).matrix(X, X, torch.eye(3))


@pytest.mark.parametrize("kernel", ["laplace", "gaussian", "product_laplace"])
def test_kernel_rows_are_rows_of_the_training_matrix(kernel):
    X, _, M, _ = _data(7, n=50)
    X = torch.tensor(np.vstack([X, X[:5]]))  # exact duplicates: distance 0 off the diagonal too
    M = torch.tensor(M)
    full = make_kernel(kernel, 2.0).matrix(X, X, M)
    for rows in row_blocks(55, 13):
        block = make_kernel(kernel, 2.0).rows(X, rows, M)
        # Equal up to the product's rounding; at distance ~0 the Laplace square root lifts it to
        # sqrt(eps) ~ 1e-8 (the duplicates).
        torch.testing.assert_close(block, full[rows], rtol=0, atol=1e-7)
        assert torch.all(block.diagonal(offset=rows.start) == 1.0)


def test_make_kernel_names_each_class_once_and_compares_by_value():
    assert KERNELS == ("laplace", "gaussian", "product_laplace")
    assert type(make_kernel("gaussian", 2.5)) is GaussianKernel
    assert make_kernel("product_laplace", 1.0).radial is False
    assert LaplaceKernel(10.0) == make_kernel("laplace", 10.0, 1.0) != LaplaceKernel(10.0, 0.5)
    assert repr(LaplaceKernel(10.0)) == "LaplaceKernel(bandwidth=10, exponent=1)"


@pytest.mark.parametrize("kernel", KERNELS)
def test_bytes_per_row_bounds_a_block_computed_alone(kernel):
    """A block of kernel rows sized by `bytes_per_row` holds its output and its temporaries."""
    X = torch.randn(300, 8, dtype=torch.float64)
    k = make_kernel(kernel, 3.0)
    per_row = k.bytes_per_row(300, 8, 8)
    assert per_row >= 8 * 300  # at least the row itself
    # product_laplace keeps cdist's result beside the block: twice the row.
    assert (per_row >= 2 * 8 * 300) == (kernel == "product_laplace")
    torch.testing.assert_close(k.matrix(X[:40], X, block_rows=7), k.matrix(X[:40], X))


def test_radial_gradient_weights_match_the_kernel_derivative():
    """d/dx K(x, z) = scale * W * (x - z) for the radial kernels, against autograd of the formula."""
    x0 = torch.tensor([[0.3, -1.2, 0.5]], dtype=torch.float64)
    z = torch.tensor([[1.0, 0.4, -0.7]], dtype=torch.float64)
    formulas = {
        LaplaceKernel(2.0): lambda x: torch.exp(-(x - z).norm() / 2.0),
        LaplaceKernel(2.0, 0.7): lambda x: torch.exp(-((x - z).norm() ** 0.7) / 2.0),
        GaussianKernel(1.5): lambda x: torch.exp(-((x - z).norm() ** 2) / (2 * 1.5**2)),
    }
    for k, formula in formulas.items():
        x = x0.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(formula(x), x)
        W, scale = k.gradient_weights(k.matrix(x0, z))
        torch.testing.assert_close(grad, scale * W * (x0 - z))
    with pytest.raises(NotImplementedError):
        ProductLaplaceKernel(1.0).gradient_weights(torch.ones(1, 1))
