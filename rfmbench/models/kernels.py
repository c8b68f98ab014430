"""Kernels on a Mahalanobis metric, computed in blocks of rows (pure torch functions).

The metric is ``d_M(x, z) = sqrt((x - z)^T M (x - z))`` with ``M`` a symmetric positive semi-definite
``d x d`` matrix, a length-``d`` vector (a diagonal ``M``), or ``None`` (the identity). The kernels are

- ``laplace``:          ``exp(-d_M(x, z)^exponent / bandwidth)``
- ``gaussian``:         ``exp(-d_M(x, z)^2 / (2 bandwidth^2))``
- ``product_laplace``:  ``exp(-||S (x - z)||_p^p / bandwidth)`` with ``S = M^(1/2)`` and ``p = exponent``,
  xRFM's ``l1`` ("product Laplace") kernel: a product over coordinates of one-dimensional Laplace kernels
  after the transform ``S``. xRFM measures ``||sqrtM (x - z)||_p^p / bandwidth^p``; at ``exponent=1``
  (its default and the only value the paper uses) the two coincide.

Note on ``exponent`` for ``laplace``: we divide ``d^exponent`` by ``bandwidth``; xRFM divides by
``bandwidth^exponent``. The two agree at ``exponent=1``; otherwise our ``bandwidth`` equals xRFM's
``bandwidth ** exponent``.

Every function returns the full ``n_x x n_z`` matrix (written into ``out`` when given), computed
``block_rows`` rows of ``X`` at a time so that temporaries stay ``O(block_rows x n_z)``.
"""

from __future__ import annotations

import torch

KERNELS = ("laplace", "gaussian", "product_laplace")

# Elements per block when the caller gives no block size: 32 MiB of float32, small enough to stay in
# cache between the matrix product and the elementwise passes that finish the block.
DEFAULT_BLOCK_ELEMENTS = 2**23


def row_blocks(n_rows: int, block_rows: int | None) -> list[slice]:
    """Split ``range(n_rows)`` into consecutive slices of at most ``block_rows`` rows."""
    step = max(1, int(block_rows)) if block_rows else max(1, n_rows)
    return [slice(start, min(start + step, n_rows)) for start in range(0, n_rows, step)]


def block_rows_for(budget_bytes: float, bytes_per_row: float, n_rows: int) -> int:
    """Largest block of rows whose temporaries (``bytes_per_row`` each) fit in ``budget_bytes``."""
    if bytes_per_row <= 0:
        return max(1, n_rows)
    return int(max(1, min(n_rows, budget_bytes // bytes_per_row)))


def psd_power(M: torch.Tensor, power: float) -> torch.Tensor:
    """``M ** power`` for a symmetric PSD matrix (eigenvalues clipped at 0) or a diagonal vector."""
    if M.ndim == 1:
        return M.clamp(min=0) ** power
    eigvals, eigvecs = torch.linalg.eigh((M + M.mT) / 2)
    eigvals = eigvals.clamp(min=0) ** power
    return (eigvecs * eigvals) @ eigvecs.mT


def _apply(X: torch.Tensor, M: torch.Tensor | None) -> torch.Tensor:
    """``X M`` for a full symmetric ``M``, ``X * M`` for a diagonal vector, ``X`` for None."""
    if M is None:
        return X
    if M.ndim == 1:
        return X * M
    return X @ M


def _check(X: torch.Tensor, Z: torch.Tensor, M: torch.Tensor | None) -> None:
    if X.ndim != 2 or Z.ndim != 2 or X.shape[1] != Z.shape[1]:
        raise ValueError(
            f"X and Z must be 2-D with equal columns, got {tuple(X.shape)}, {tuple(Z.shape)}"
        )
    if M is not None:
        d = X.shape[1]
        if M.shape not in ((d,), (d, d)):
            raise ValueError(f"M must have shape ({d},) or ({d}, {d}), got {tuple(M.shape)}")


def _output(X: torch.Tensor, Z: torch.Tensor, out: torch.Tensor | None) -> torch.Tensor:
    if out is None:
        return torch.empty(X.shape[0], Z.shape[0], dtype=X.dtype, device=X.device)
    if out.shape != (X.shape[0], Z.shape[0]) or not out.is_contiguous():
        raise ValueError(f"out must be a contiguous {X.shape[0]} x {Z.shape[0]} tensor")
    return out


def _default_block_rows(n_z: int) -> int:
    return max(16, DEFAULT_BLOCK_ELEMENTS // max(1, n_z))


def _sq_distance_blocks(X, Z, M, out, block_rows):
    """Write squared distances into ``out`` block by block; yield each block to be finished in place.

    ``|x|^2 + |z|^2 - 2 x^T M z`` with one matrix product per block. For the symmetric case
    (``X is Z``, the training kernel) the norms ride along as extra columns of that product
    (``[x, 1, |x|^2] . [-2 M z, |z|^2, 1]``), which saves two passes over the block. Otherwise they
    are added elementwise, so that a row's distances do not depend on its position in ``X`` (the
    accumulation order of a product can). Finishing a block (sqrt, exp, ...) right after its
    product, while it is still in cache, saves a pass over the ``n_x x n_z`` matrix per operation.
    """
    _check(X, Z, M)
    shift = Z.mean(dim=0, keepdim=True)
    Zc = Z - shift
    ZcM = _apply(Zc, M)
    z_norms = (ZcM * Zc).sum(dim=1, keepdim=True)
    if X is Z:
        ones = torch.ones_like(z_norms)
        right = torch.cat([-2.0 * ZcM, z_norms, ones], dim=1)
        left_all = torch.cat([Zc, ones, z_norms], dim=1)
    del Zc
    for rows in row_blocks(X.shape[0], block_rows or _default_block_rows(Z.shape[0])):
        block = out[rows]
        if X is Z:
            torch.mm(left_all[rows], right.mT, out=block)
        else:
            Xc = X[rows] - shift
            x_norms = (_apply(Xc, M) * Xc).sum(dim=1, keepdim=True)
            torch.addmm(z_norms.mT, Xc, ZcM.mT, beta=1.0, alpha=-2.0, out=block)
            block.add_(x_norms)
        block.clamp_(min=0)
        if X is Z:
            block.diagonal(offset=rows.start).zero_()
        yield block


def mahalanobis_sq_distances(
    X: torch.Tensor,
    Z: torch.Tensor,
    M: torch.Tensor | None = None,
    *,
    block_rows: int | None = None,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """Squared Mahalanobis distances ``(x_i - z_j)^T M (x_i - z_j)``, shape ``(n_x, n_z)``.

    Computed as ``|x|_M^2 + |z|_M^2 - 2 x^T M z`` with one matrix product per block, after both sets
    are shifted by the mean of ``Z`` (distances are translation invariant, and the shift keeps the
    cancellation error of the expansion small for uncentred data). Negative round-off is clipped
    at 0; when ``X is Z`` the diagonal is set to exactly 0.
    """
    out = _output(X, Z, out)
    for _ in _sq_distance_blocks(X, Z, M, out, block_rows):
        pass
    return out


def mahalanobis_distances(
    X: torch.Tensor,
    Z: torch.Tensor,
    M: torch.Tensor | None = None,
    *,
    block_rows: int | None = None,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mahalanobis distances ``d_M(x_i, z_j)``, shape ``(n_x, n_z)``; see `mahalanobis_sq_distances`."""
    out = _output(X, Z, out)
    for block in _sq_distance_blocks(X, Z, M, out, block_rows):
        block.sqrt_()
    return out


def laplace_kernel(
    X: torch.Tensor,
    Z: torch.Tensor,
    M: torch.Tensor | None = None,
    *,
    bandwidth: float,
    exponent: float = 1.0,
    block_rows: int | None = None,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """Laplace kernel ``exp(-d_M(x, z)^exponent / bandwidth)``, shape ``(n_x, n_z)``."""
    out = _output(X, Z, out)
    for block in _sq_distance_blocks(X, Z, M, out, block_rows):
        if exponent == 1.0:  # d^exponent = (d^2)^(exponent / 2)
            block.sqrt_()
        else:
            block.pow_(exponent / 2)
        block.mul_(-1.0 / bandwidth).exp_()
    return out


def gaussian_kernel(
    X: torch.Tensor,
    Z: torch.Tensor,
    M: torch.Tensor | None = None,
    *,
    bandwidth: float,
    block_rows: int | None = None,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """Gaussian kernel ``exp(-d_M(x, z)^2 / (2 bandwidth^2))``, shape ``(n_x, n_z)``."""
    out = _output(X, Z, out)
    for block in _sq_distance_blocks(X, Z, M, out, block_rows):
        block.mul_(-0.5 / bandwidth**2).exp_()
    return out


def product_laplace_kernel(
    X: torch.Tensor,
    Z: torch.Tensor,
    M: torch.Tensor | None = None,
    *,
    bandwidth: float,
    exponent: float = 1.0,
    block_rows: int | None = None,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """Product-Laplace (xRFM ``l1``) kernel ``exp(-||M^(1/2) (x - z)||_p^p / bandwidth)``, p = exponent.

    ``M^(1/2)`` is the symmetric square root (eigenvalues clipped at 0), which is what xRFM stores as
    ``sqrtM`` when its ``agop_power`` is 0.5. Temporaries: one ``block_rows x n_z`` block.
    """
    _check(X, Z, M)
    out = _output(X, Z, out)
    S = None if M is None else psd_power(M, 0.5)
    XS, ZS = _apply(X, S), _apply(Z, S)
    for rows in row_blocks(X.shape[0], block_rows or _default_block_rows(Z.shape[0])):
        block = out[rows]
        block.copy_(torch.cdist(XS[rows], ZS, p=exponent))
        if exponent != 1.0:
            block.pow_(exponent)
        if X is Z:
            block.diagonal(offset=rows.start).zero_()
        block.mul_(-1.0 / bandwidth).exp_()
    return out


def kernel_matrix(
    kernel: str,
    X: torch.Tensor,
    Z: torch.Tensor,
    M: torch.Tensor | None = None,
    *,
    bandwidth: float,
    exponent: float = 1.0,
    block_rows: int | None = None,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """Dispatch to the kernel named ``kernel`` (one of `KERNELS`); ``exponent`` is unused by gaussian."""
    if kernel == "laplace":
        return laplace_kernel(
            X, Z, M, bandwidth=bandwidth, exponent=exponent, block_rows=block_rows, out=out
        )
    if kernel == "gaussian":
        return gaussian_kernel(X, Z, M, bandwidth=bandwidth, block_rows=block_rows, out=out)
    if kernel == "product_laplace":
        return product_laplace_kernel(
            X, Z, M, bandwidth=bandwidth, exponent=exponent, block_rows=block_rows, out=out
        )
    raise ValueError(f"unknown kernel {kernel!r}; choose from {', '.join(KERNELS)}")


def kernel_rows(
    kernel: str,
    X: torch.Tensor,
    rows: slice,
    M: torch.Tensor | None = None,
    *,
    bandwidth: float,
    exponent: float = 1.0,
) -> torch.Tensor:
    """Rows ``rows`` of the training kernel ``K(X, X)``, shape ``(len(rows), n)``, without the rest.

    The same arithmetic as `kernel_matrix` with ``X is Z`` (the norms ride along in the product, the
    self pairs are exactly 0 apart), so the values agree with the full matrix's to the rounding of
    one matrix product (lifted to ``sqrt(eps)`` by the Laplace kernel's square root between
    duplicated rows): what the residual check of a factored matrix and the matrix-free products of
    the iterative solver need. Temporaries: ``O(n d)`` and the block.
    """
    if kernel == "product_laplace":
        block = kernel_matrix(kernel, X[rows], X, M, bandwidth=bandwidth, exponent=exponent)
        block.diagonal(offset=rows.start).fill_(1.0)
        return block
    _check(X, X, M)
    Xc = X - X.mean(dim=0, keepdim=True)
    XcM = _apply(Xc, M)
    norms = (XcM * Xc).sum(dim=1, keepdim=True)
    ones = torch.ones_like(norms)
    left = torch.cat([Xc[rows], ones[rows], norms[rows]], dim=1)
    block = left @ torch.cat([-2.0 * XcM, norms, ones], dim=1).mT
    block.clamp_(min=0).diagonal(offset=rows.start).zero_()
    if kernel == "gaussian":
        return block.mul_(-0.5 / bandwidth**2).exp_()
    if exponent == 1.0:
        block.sqrt_()
    else:
        block.pow_(exponent / 2)
    return block.mul_(-1.0 / bandwidth).exp_()
