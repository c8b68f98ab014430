"""Blocked kernels against a direct computation with scipy's cdist."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch
from scipy.spatial.distance import cdist

from rfmbench.models.kernels import (
    kernel_matrix,
    kernel_rows,
    mahalanobis_distances,
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
    got = kernel_matrix(
        kernel, torch.from_numpy(X), torch.from_numpy(Z), Mt, bandwidth=2.0, exponent=exponent,
        block_rows=5, out=out,
    )  # fmt: skip
    assert got is out  # written in place, block by block (37 rows in blocks of 5)
    expected = _reference(kernel, X, Z, M, 2.0, exponent)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-9, atol=1e-12)
    # X is Z: the symmetric path (the training kernel), with an exact zero self-distance.
    Xt = torch.from_numpy(X)
    sym = kernel_matrix(kernel, Xt, Xt, Mt, bandwidth=2.0, exponent=exponent, block_rows=5)
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
    got = kernel_matrix(
        "laplace", torch.from_numpy(X).float(), torch.from_numpy(Z).float(), None, bandwidth=2.0
    )
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
        kernel_matrix("cosine", X, X, bandwidth=1.0)
    with pytest.raises(ValueError, match="M must have shape"):
        kernel_matrix("laplace", X, X, torch.eye(3), bandwidth=1.0)


@pytest.mark.parametrize("kernel", ["laplace", "gaussian", "product_laplace"])
def test_kernel_rows_are_rows_of_the_training_matrix(kernel):
    X, _, M, _ = _data(7, n=50)
    X = torch.tensor(np.vstack([X, X[:5]]))  # exact duplicates: distance 0 off the diagonal too
    M = torch.tensor(M)
    full = kernel_matrix(kernel, X, X, M, bandwidth=2.0, exponent=1.0)
    for rows in row_blocks(55, 13):
        block = kernel_rows(kernel, X, rows, M, bandwidth=2.0, exponent=1.0)
        # Equal up to the product's rounding; at distance ~0 the Laplace square root lifts it to
        # sqrt(eps) ~ 1e-8 (the duplicates).
        torch.testing.assert_close(block, full[rows], rtol=0, atol=1e-7)
        assert torch.all(block.diagonal(offset=rows.start) == 1.0)
