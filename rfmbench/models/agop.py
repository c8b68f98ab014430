"""Closed-form average gradient outer product (AGOP) of a fitted kernel predictor (pure torch).

The predictor is ``f_c(x) = sum_j coef[j, c] K(x, x_j)`` over the training points ``x_j`` (the rows of
``X``), with ``K`` one of the kernels of `rfmbench.models.kernels` on the metric ``d_M``. Its AGOP over
the sample points ``x_i`` (rows of ``X`` picked by ``sample``) is

    G = (1 / s) sum_i sum_c grad f_c(x_i) grad f_c(x_i)^T,

with, writing ``W_ij`` for a kernel-specific weight,

- laplace:   grad f_c(x_i) = M sum_j W_ij coef[j, c] (x_i - x_j),  W_ij = -(p / L) K_ij d_ij^(p - 2)
- gaussian:  grad f_c(x_i) = M sum_j W_ij coef[j, c] (x_i - x_j),  W_ij = -K_ij / L^2
- product_laplace (u = S (x_i - x_j), S = M^(1/2)):
             grad f_c(x_i) = -(p / L) S sum_j coef[j, c] K_ij sign(u) |u|^(p - 1)   (per coordinate)

(``L`` the bandwidth, ``p`` the exponent). The sum over ``j`` splits into matrix products,
``x_i (W coef)_ic - (W (coef_c * X))_i``, so no ``s x n x d`` tensor is ever formed. The self pair
``x_j = x_i`` contributes nothing (its gradient is 0/0 for the Laplace kernels, 0 for the Gaussian):
those entries of ``W`` are zeroed by index. ``W`` is a function of the kernel values alone (for the
Laplace kernel ``d_ij^p = -L log K_ij``), so the kernel rows of the sample, when kept from the solve
(``K_rows``), are reused as they are; otherwise they are recomputed block by block.
"""

from __future__ import annotations

import logging

import torch

from rfmbench.models.kernels import Kernel, _apply, row_blocks

logger = logging.getLogger(__name__)


def agop(
    kernel: Kernel,
    X: torch.Tensor,
    coef: torch.Tensor,
    M: torch.Tensor | None = None,
    *,
    sample: torch.Tensor | None = None,
    K_rows: torch.Tensor | None = None,
    diag: bool = False,
    center_grads: bool = False,
    block_rows: int | None = None,
    form: str = "auto",
) -> torch.Tensor:
    """AGOP of ``f(x) = sum_j coef[j] K(x, X[j])`` over the sample rows of ``X``, in closed form.

    Parameters
    ----------
    kernel : Kernel
        The kernel of the predictor (`rfmbench.models.kernels.make_kernel`): its formula and its
        gradient.
    X : tensor of shape (n, d)
        The training points (centres of the predictor).
    coef : tensor of shape (n, c) or (n,)
        The dual coefficients, one column per output.
    M : tensor of shape (d, d) or (d,), optional
        The metric of the kernel (None: the identity).
    sample : integer tensor of shape (s,), optional
        Rows of ``X`` where the gradients are taken (None: every row).
    K_rows : tensor of shape (s, n), optional
        The kernel rows of the sample, ``kernel.matrix(X, X, M)[sample]``, kept from the
        solve: reused instead of recomputing kernel blocks. The self pairs must hold the kernel's
        value at distance 0 (exactly 1, as `Kernel.matrix` makes them when ``X is Z``).
    diag : bool
        Return only the diagonal of the AGOP (a length-``d`` vector).
    center_grads : bool
        Subtract from the gradients of each output their mean over the sample before the outer
        product (xRFM subtracts one mean over all outputs and sample rows of each of its batches).
    block_rows : int, optional
        Sample rows per block (None: all at once). Memory: see `Kernel.agop_bytes_per_row`.
    form : {"auto", "per-output", "gram"}
        How the radial kernels' sum is arranged (both exact; product_laplace has only the first).
        ``per-output`` forms each output's gradients, ``s n d c`` multiply-adds. ``gram`` never
        forms them: with ``a = W coef`` and ``b_ic = sum_j W_ij coef_jc x_j``,

            sum_c sum_i g g^T = X_s^T diag(|a_i|^2) X_s - X_s^T C - C^T X_s
                                + X^T ((W^T W) o (coef coef^T)) X,      C = (W o (a coef^T)) X,

        (before M on both sides), ``s n^2 + n^2 (c + d) + s n (c + d)`` multiply-adds and one more
        ``n x n`` matrix: far less with many outputs (the grokking tasks' 61). ``auto`` takes the
        form of fewer multiply-adds (`gram_is_cheaper`: both run at about the same rate on a quiet
        2-core machine, ``benchmarks/agop.py``), the gram form only while its two ``n x n``
        matrices take at most 512 MiB.

    Returns
    -------
    tensor of shape (d, d), or (d,) when ``diag``
        ``(1 / s) sum_i sum_c g_ic g_ic^T`` (centred when ``center_grads``).
    """
    if coef.ndim == 1:
        coef = coef.unsqueeze(1)
    n, d = X.shape
    n_outputs = coef.shape[1]
    if sample is None:
        sample = torch.arange(n, device=X.device)
    s = sample.shape[0]
    if form not in ("auto", "per-output", "gram"):
        raise ValueError(f"form must be auto, per-output or gram, got {form!r}")
    gram_bytes = 2 * n * n * X.element_size()
    if kernel.radial and (
        form == "gram"
        or (form == "auto" and gram_is_cheaper(n, d, n_outputs, s) and gram_bytes <= 2**29)
    ):
        return _gram_agop(kernel, X, coef, M, sample, K_rows, diag, center_grads, block_rows)
    G = torch.zeros((d,) if diag else (d, d), dtype=X.dtype, device=X.device)
    grad_sums = torch.zeros(n_outputs, d, dtype=X.dtype, device=X.device) if center_grads else None
    gradients = kernel.gradient_blocks(X, M)
    blocks = row_blocks(s, block_rows)
    logger.debug("AGOP of %d outputs over %d samples in %d blocks", n_outputs, s, len(blocks))
    for rows in blocks:
        idx = sample[rows]
        K_block = K_rows[rows] if K_rows is not None else kernel.matrix(X[idx], X, M)
        grads = gradients(K_block, idx, coef)
        # grads: (b, c, d); merge the sample and output axes for one Gram product.
        if grad_sums is not None:
            grad_sums += grads.sum(dim=0)
        flat = grads.reshape(-1, d)
        if diag:
            G += flat.square().sum(dim=0)
        else:
            G.addmm_(flat.mT, flat)
        del K_block, grads, flat
    G /= s
    if grad_sums is not None:
        means = grad_sums / s
        G -= means.square().sum(dim=0) if diag else means.mT @ means
    return G


def gram_is_cheaper(n: int, d: int, c: int, s: int | None = None) -> bool:
    """Whether the gram form of `agop` takes fewer multiply-adds than the per-output form.

    Per-output: ``s n c d`` (the ``c`` products ``(s x n)(n x d)``); gram: ``s n^2 + n^2 (c + d)
    + s n (c + d)``. Both sets of products ran at 70-95 GFLOP/s on a quiet 2-core machine
    (per-output 0.029 s at n = 2000, d = 50, c = 10; gram 0.081 s at 1860, 122, 61), so the
    count alone decides: gram for many outputs times many features, per-output otherwise.
    """
    s = n if s is None else s
    return s * n * n + n * n * (c + d) + s * n * (c + d) < s * n * c * d


def _gram_agop(kernel, X, coef, M, sample, K_rows, diag, center_grads, block_rows):
    """The ``gram`` form of `agop` for the radial kernels (see its ``form``)."""
    n, d = X.shape
    s = sample.shape[0]
    H = torch.zeros(n, n, dtype=X.dtype, device=X.device)  # sum over blocks of W^T W
    inner = torch.zeros(d, d, dtype=X.dtype, device=X.device)  # the terms in x_i
    grad_sums = torch.zeros(coef.shape[1], d, dtype=X.dtype, device=X.device)
    alpha = None
    blocks = row_blocks(s, block_rows)
    logger.debug(
        "AGOP (gram form) of %d outputs over %d samples in %d blocks", coef.shape[1], s, len(blocks)
    )
    for rows in blocks:
        idx = sample[rows]
        K_block = K_rows[rows] if K_rows is not None else kernel.matrix(X[idx], X, M)
        W, scale = kernel.gradient_weights(K_block)
        if W is not K_block:
            W[torch.arange(len(idx), device=X.device), idx] = 0.0  # the self pair: no gradient
        alpha = coef * scale
        A = W @ alpha  # (b, c)
        X_b = X[idx]
        C = (W * (A @ alpha.mT)) @ X  # (b, d): sum_c a_ic b_ic
        inner += (X_b * A.square().sum(dim=1, keepdim=True)).mT @ X_b
        cross = X_b.mT @ C
        inner -= cross + cross.mT
        H.addmm_(W.mT, W)
        if center_grads:  # sum_i g_ic = sum_i x_i a_ic - sum_j (sum_i W_ij) alpha_jc x_j
            grad_sums += A.mT @ X_b - (W.sum(dim=0)[:, None] * alpha).mT @ X
        del K_block, W, A, C
    for rows in row_blocks(n, block_rows):  # H o (alpha alpha^T), a block of rows at a time
        H[rows] *= alpha[rows] @ alpha.mT
    G = inner + X.mT @ (H @ X)
    del H
    if M is not None:
        G = _apply(_apply(G, M).mT, M)  # M G M (M symmetric, or a diagonal vector)
        grad_sums = _apply(grad_sums, M)
    G /= s
    if center_grads:
        means = grad_sums / s
        G -= means.mT @ means
    return torch.diagonal(G).clone() if diag else G
