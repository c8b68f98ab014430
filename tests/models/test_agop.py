"""The blocked closed-form AGOP equals the AGOP of autograd gradients of the fitted predictor."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import scipy.linalg
import torch

from rfmbench.models.agop import agop, gram_is_cheaper
from rfmbench.models.kernels import LaplaceKernel, make_kernel


def _naive_kernel(kernel, x, Z, M, bandwidth, exponent, keep):
    """k(x, z_j) for one point x against the rows of Z, straight from the definitions.

    ``keep`` (0/1 per row) drops the self pair through ``where``, so that its undefined gradient
    (0/0 for the Laplace kernels) never reaches autograd.
    """
    diff = x.unsqueeze(0) - Z
    if kernel == "product_laplace":
        u = diff if M is None else (diff * M if M.ndim == 1 else diff @ M)  # M: the transform here
        dist = (u.abs() ** exponent).sum(dim=1)
        return torch.where(keep > 0, torch.exp(-dist / bandwidth), 0.0)
    if M is None:
        sq = (diff * diff).sum(dim=1)
    elif M.ndim == 1:
        sq = (diff * diff * M).sum(dim=1)
    else:
        sq = ((diff @ M) * diff).sum(dim=1)
    sq = torch.where(keep > 0, sq, 1.0)
    if kernel == "gaussian":
        k = torch.exp(-sq / (2 * bandwidth**2))
    else:
        k = torch.exp(-(sq.sqrt() ** exponent) / bandwidth)
    return torch.where(keep > 0, k, 0.0)


def _autograd_agop(kernel, X, coef, M, sample, bandwidth, exponent, center):
    """Gradients by autograd (torch.func.jacrev) at each sample; the self pair is left out."""
    if kernel == "product_laplace" and M is not None:  # the transform S = M^(1/2), by scipy
        M = M.sqrt() if M.ndim == 1 else torch.from_numpy(np.real(scipy.linalg.sqrtm(M.numpy())))

    def f(x, keep):
        return _naive_kernel(kernel, x, X, M, bandwidth, exponent, keep) @ coef

    keep = torch.ones(sample.shape[0], X.shape[0], dtype=X.dtype)
    keep[torch.arange(sample.shape[0]), sample] = 0.0
    J = torch.func.vmap(torch.func.jacrev(f))(X[sample], keep)  # (s, c, d)
    if center:
        J = J - J.mean(dim=0, keepdim=True)
    return torch.einsum("scd,sce->de", J, J) / J.shape[0]


def _metric(kind, d, gen):
    if kind == "identity":
        return None
    if kind == "diag":
        return torch.rand(d, generator=gen, dtype=torch.float64) + 0.2
    A = torch.randn(d, d, generator=gen, dtype=torch.float64)
    return A @ A.T / d + 0.1 * torch.eye(d, dtype=torch.float64)


RADIAL = [("laplace", 1.0), ("laplace", 1.3), ("gaussian", 1.0)]
PRODUCT = [("product_laplace", 1.0), ("product_laplace", 1.2)]


@pytest.mark.parametrize(
    ("kernel", "exponent", "form"),
    [(k, p, form) for k, p in RADIAL for form in ("per-output", "gram")]
    + [(k, p, "per-output") for k, p in PRODUCT],  # product_laplace has that form only
)
@pytest.mark.parametrize("metric", ["identity", "full", "diag"])
@pytest.mark.parametrize("n_outputs", [1, 3])
def test_agop_matches_autograd(kernel, exponent, form, metric, n_outputs, caplog):
    gen = torch.Generator().manual_seed(n_outputs * 7 + len(metric))
    n, d, bandwidth = 40, 5, 2.5
    X = torch.randn(n, d, generator=gen, dtype=torch.float64)
    coef = torch.randn(n, n_outputs, generator=gen, dtype=torch.float64)
    M = _metric(metric, d, gen)
    sample = torch.randperm(n, generator=gen)[:25]
    center = n_outputs == 3 and metric == "full"
    expected = _autograd_agop(kernel, X, coef, M, sample, bandwidth, exponent, center)
    k = make_kernel(kernel, bandwidth, exponent)
    K_solve = k.matrix(X, X, M)
    for K_rows in (None, K_solve[sample]):  # kernel blocks recomputed, or kept from the solve
        caplog.clear()
        with caplog.at_level(logging.DEBUG, logger="rfmbench.models.agop"):
            kwargs = dict(
                sample=sample,
                K_rows=K_rows,
                center_grads=center,
                block_rows=7,
                form=form,
            )
            G = agop(k, X, coef, M, **kwargs)
            G_diag = agop(k, X, coef, M, diag=True, **kwargs)
        assert "in 4 blocks" in caplog.text  # 25 samples in blocks of 7: the blocked path ran
        assert ("gram form" in caplog.text) == (form == "gram")
        np.testing.assert_allclose(
            G.numpy(), expected.numpy(), rtol=1e-5, atol=1e-12 * expected.abs().max().item()
        )
        np.testing.assert_allclose(G_diag.numpy(), expected.diagonal().numpy(), rtol=1e-5)


def test_agop_all_rows_default_sample_and_single_output_vector():
    gen = torch.Generator().manual_seed(3)
    X = torch.randn(30, 4, generator=gen, dtype=torch.float64)
    coef = torch.randn(30, generator=gen, dtype=torch.float64)
    K = LaplaceKernel(3.0).matrix(X, X)
    G = agop(LaplaceKernel(3.0), X, coef, K_rows=K, block_rows=8)
    expected = _autograd_agop(
        "laplace", X, coef.unsqueeze(1), None, torch.arange(30), 3.0, 1.0, False
    )
    np.testing.assert_allclose(G.numpy(), expected.numpy(), rtol=1e-5)
    assert G.shape == (4, 4)
    torch.testing.assert_close(G, G.T)


@pytest.mark.parametrize(
    ("n", "d", "c", "gram"),
    [
        (1860, 122, 61, True),  # the grokking task: 7.7e9 multiply-adds against 2.6e10
        (2000, 50, 10, False),  # 8.5e9 against 2.0e9: per-output (0.029 s against 0.084 s)
        (20000, 16, 26, False),  # letter-sized
        (4000, 16, 1, False),
    ],
)
def test_auto_takes_the_form_of_fewer_multiply_adds(n, d, c, gram):
    assert gram_is_cheaper(n, d, c) is gram


def test_auto_form_follows_the_rule_on_a_small_case(caplog):
    gen = torch.Generator().manual_seed(5)
    kernel = make_kernel("gaussian", 2.5)
    # 30 x 30 x (30 + 40 + 40) < 30 x 30 x 400 multiply-adds: gram; 30 x 30 x 8: per-output
    for n, d, c, gram in ((30, 20, 20, True), (30, 4, 2, False)):
        X = torch.randn(n, d, generator=gen, dtype=torch.float64)
        coef = torch.randn(n, c, generator=gen, dtype=torch.float64)
        caplog.clear()
        with caplog.at_level(logging.DEBUG, logger="rfmbench.models.agop"):
            G = agop(kernel, X, coef)
        assert ("gram form" in caplog.text) == gram
        np.testing.assert_allclose(G.numpy(), agop(kernel, X, coef, form="gram").numpy(), rtol=1e-9)
