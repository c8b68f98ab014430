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

from collections.abc import Callable

import torch

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


def _eigh(S: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``torch.linalg.eigh``, on the CPU with one thread.

    The threaded LAPACK eigensolver stalls on a busy machine: measured on the 2-core machine at
    load 7, 0.46 s (float32, a random 122 x 122 matrix) and 0.86 s (float64, the grokking task's
    AGOP) with two threads against under 1 ms with one, either dtype; 30 such calls were half of
    the 30-iteration grokking fit. Float64 whatever ``M``'s dtype: the clipped small eigenvalues
    are more accurate, at no cost for a d x d matrix.
    """
    if S.device.type != "cpu":
        return torch.linalg.eigh(S)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return torch.linalg.eigh(S)
    finally:
        torch.set_num_threads(threads)


def psd_power(M: torch.Tensor, power: float) -> torch.Tensor:
    """``M ** power`` for a symmetric PSD matrix (eigenvalues clipped at 0) or a diagonal vector."""
    if M.ndim == 1:
        return M.clamp(min=0) ** power
    eigvals, eigvecs = _eigh(((M + M.mT) / 2).to(torch.float64))
    eigvals = eigvals.clamp(min=0) ** power
    return ((eigvecs * eigvals) @ eigvecs.mT).to(M.dtype)


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
    return LaplaceKernel(bandwidth, exponent).matrix(X, Z, M, block_rows=block_rows, out=out)


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
    return GaussianKernel(bandwidth).matrix(X, Z, M, block_rows=block_rows, out=out)


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


class Kernel:
    """A kernel on the metric ``d_M``: its formula, its gradient (for the AGOP) and its memory cost.

    One subclass per kernel (`LaplaceKernel`, `GaussianKernel`, `ProductLaplaceKernel`); a model
    makes one with `make_kernel` from its ``kernel`` parameter, so the name is looked up once and
    everything that differs between kernels lives here instead of in ``if kernel == ...`` branches.
    ``radial`` kernels are functions of ``d_M`` alone: their gradient weights are a function of the
    kernel values, which the AGOP's ``gram`` form needs.
    """

    name: str = ""
    radial: bool = True

    def __init__(self, bandwidth: float, exponent: float = 1.0) -> None:
        self.bandwidth = float(bandwidth)
        self.exponent = float(exponent)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(bandwidth={self.bandwidth:g}, exponent={self.exponent:g})"

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and (other.bandwidth, other.exponent) == (
            self.bandwidth,
            self.exponent,
        )

    def __hash__(self) -> int:
        return hash((type(self), self.bandwidth, self.exponent))

    def matrix(
        self,
        X: torch.Tensor,
        Z: torch.Tensor,
        M: torch.Tensor | None = None,
        *,
        block_rows: int | None = None,
        out: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``K(X, Z)`` on the metric ``M``, shape ``(n_x, n_z)``, ``block_rows`` rows at a time.

        Radial kernels finish each block of squared distances in place while it is in cache.
        """
        out = _output(X, Z, out)
        for block in _sq_distance_blocks(X, Z, M, out, block_rows):
            self._finish(block)
        return out

    def rows(self, X: torch.Tensor, rows: slice, M: torch.Tensor | None = None) -> torch.Tensor:
        """Rows ``rows`` of the training kernel ``K(X, X)``, shape ``(len(rows), n)``.

        The same arithmetic as `matrix` with ``X is Z`` (the norms ride along in the product, the
        self pairs are exactly 0 apart), so the values agree with the full matrix's to the
        rounding of one matrix product (lifted to ``sqrt(eps)`` by the Laplace kernel's square
        root between duplicated rows): what the residual check of a factored matrix and the
        matrix-free products of the iterative solver need. Temporaries: ``O(n d)`` and the block.
        """
        _check(X, X, M)
        Xc = X - X.mean(dim=0, keepdim=True)
        XcM = _apply(Xc, M)
        norms = (XcM * Xc).sum(dim=1, keepdim=True)
        ones = torch.ones_like(norms)
        left = torch.cat([Xc[rows], ones[rows], norms[rows]], dim=1)
        block = left @ torch.cat([-2.0 * XcM, norms, ones], dim=1).mT
        block.clamp_(min=0).diagonal(offset=rows.start).zero_()
        return self._finish(block)

    def _finish(self, sq_distances: torch.Tensor) -> torch.Tensor:
        """Kernel values from a block of squared distances, in place (radial kernels)."""
        raise NotImplementedError

    def bytes_per_row(self, n_z: int, d: int, itemsize: int) -> int:
        """Bytes one row of a block of ``K(X, Z)`` takes when computed on its own (the row and
        the temporaries of its computation): what sizes every block of kernel rows to a budget."""
        return itemsize * (n_z + d)

    def agop_bytes_per_row(self, n: int, d: int, n_outputs: int, itemsize: int) -> int:
        """Temporary bytes per sample row of `rfmbench.models.agop.agop`: ``itemsize * (3 n + 2 c d
        + c)``.

        Per block of ``b`` sample rows the AGOP holds the computed kernel rows and the weight
        matrix ``W`` (plus, for product_laplace, one coordinate-difference block): at most three
        ``b x n`` blocks; and the gradients of one output (``b x d``, twice: before and after
        ``M``) or, for product_laplace, of all outputs (``b x c x d``, twice). So the extra memory
        of the AGOP, beyond ``X`` and the optional kernel rows it is handed, is

            itemsize * (block_rows * (3 n + 2 c d + c) + n d + 2 d^2 + c d)

        and ``block_rows = budget / (itemsize * (3 n + 2 c d + c))`` keeps it within ``budget``.
        One bound for every kernel keeps the formula simple and safe.
        """
        return itemsize * (3 * n + 2 * n_outputs * d + n_outputs)

    def gradient_weights(self, K_block: torch.Tensor) -> tuple[torch.Tensor, float]:
        """``W / scale`` and ``scale`` of a radial kernel's gradient, from the kernel values alone.

        ``grad_x K(x, x_j) = scale * W_j M (x - x_j)``; the constant ``scale`` is applied to the
        coefficients instead of the ``b x n`` block. ``W`` may be ``K_block`` itself (overwritten
        by nothing) or a new block whose self pairs the caller zeroes.
        """
        raise NotImplementedError(f"{self.name} is not radial")

    def gradient_blocks(
        self, X: torch.Tensor, M: torch.Tensor | None
    ) -> Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]:
        """A function ``(K_block, idx, coef) -> grads`` of shape ``(b, c, d)``: the gradients of
        ``f_c(x) = sum_j coef[j, c] K(x, X[j])`` at the rows ``X[idx]``, from their kernel rows.

        Radial kernels: ``scale * M sum_j W_ij coef_jc (x_i - x_j)``, split into matrix products
        (``x_i (W coef)_ic - (W (coef_c * X))_i``) so no ``b x n x d`` tensor is formed; the self
        pair contributes nothing (its direction is undefined): zeroed by index.
        """

        def grads(K_block: torch.Tensor, idx: torch.Tensor, coef: torch.Tensor) -> torch.Tensor:
            W, scale = self.gradient_weights(K_block)
            if W is not K_block:
                W[torch.arange(len(idx), device=W.device), idx] = 0.0
            return _radial_grads(W, X, idx, coef * scale, M)

        return grads


def _radial_grads(W, X, idx, coef, M):
    """Gradients ``M sum_j W_ij coef_jc (x_i - x_j)`` for the sample rows, shape (b, c, d)."""
    WA = W @ coef  # (b, c)
    X_b = X[idx]
    out = torch.empty(idx.shape[0], coef.shape[1], X.shape[1], dtype=X.dtype, device=X.device)
    # One output at a time keeps the temporaries at b x d and n x d (no n x c x d tensor).
    for c in range(coef.shape[1]):
        g = torch.mm(W, coef[:, c : c + 1] * X)
        g.neg_().add_(X_b * WA[:, c : c + 1])
        out[:, c] = _apply(g, M)
    return out


class LaplaceKernel(Kernel):
    """``exp(-d_M(x, z)^exponent / bandwidth)``; see the module docstring."""

    name = "laplace"

    def _finish(self, sq_distances):
        if self.exponent == 1.0:  # d^exponent = (d^2)^(exponent / 2)
            sq_distances.sqrt_()
        else:
            sq_distances.pow_(self.exponent / 2)
        return sq_distances.mul_(-1.0 / self.bandwidth).exp_()

    def gradient_weights(self, K_block):
        # d^p = -L log K. With p = 1, W = -(1 / L) K / d = K / (L^2 log K). K = 0 gives 0; K = 1
        # (distance 0: the self pair or an exact duplicate, direction undefined) gives inf, zeroed.
        W = torch.log(K_block)
        if self.exponent == 1.0:
            torch.div(K_block, W, out=W)
            scale = 1.0 / self.bandwidth**2
        else:
            W.mul_(-self.bandwidth).pow_((self.exponent - 2.0) / self.exponent).mul_(K_block)
            scale = -self.exponent / self.bandwidth
        return W.nan_to_num_(nan=0.0, posinf=0.0, neginf=0.0), scale


class GaussianKernel(Kernel):
    """``exp(-d_M(x, z)^2 / (2 bandwidth^2))``; ``exponent`` is unused."""

    name = "gaussian"

    def _finish(self, sq_distances):
        return sq_distances.mul_(-0.5 / self.bandwidth**2).exp_()

    def gradient_weights(self, K_block):
        # W = K: the self pair adds x_i - x_i = 0, nothing to mask.
        return K_block, -1.0 / self.bandwidth**2


class ProductLaplaceKernel(Kernel):
    """xRFM's ``l1`` kernel ``exp(-||M^(1/2) (x - z)||_p^p / bandwidth)``; not radial."""

    name = "product_laplace"
    radial = False

    def matrix(self, X, Z, M=None, *, block_rows=None, out=None):
        return product_laplace_kernel(
            X, Z, M, bandwidth=self.bandwidth, exponent=self.exponent, block_rows=block_rows,
            out=out,
        )  # fmt: skip

    def rows(self, X, rows, M=None):
        block = self.matrix(X[rows], X, M)
        block.diagonal(offset=rows.start).fill_(1.0)
        return block

    def bytes_per_row(self, n_z, d, itemsize):
        return itemsize * (2 * n_z + d)  # cdist's result beside the block

    def gradient_blocks(self, X, M):
        """Per coordinate ``k`` (``u = S (x_i - x_j)``, ``S = M^(1/2)``):
        ``grad f_c(x_i) = -(p / L) S sum_j coef[j, c] K_ij sign(u_k) |u_k|^(p - 1)``."""
        S = None if M is None else psd_power(M, 0.5)
        XS = _apply(X, S)
        p, bandwidth = self.exponent, self.bandwidth

        def grads(K_block: torch.Tensor, idx: torch.Tensor, coef: torch.Tensor) -> torch.Tensor:
            b, d = idx.shape[0], XS.shape[1]
            H = torch.empty(b, coef.shape[1], d, dtype=XS.dtype, device=XS.device)
            XS_b = XS[idx]
            for k in range(d):  # one coordinate at a time: b x n temporaries
                U = XS_b[:, k : k + 1] - XS[:, k]  # (b, n): u_ijk
                if p == 1.0:
                    U.sign_()
                else:
                    # sign(u) |u|^(p - 1); u = 0 (self pair, ties) has no defined derivative: 0.
                    T = U.abs().pow_(p - 1.0)
                    U = U.sign_().mul_(T).nan_to_num_(nan=0.0, posinf=0.0, neginf=0.0)
                    del T
                U.mul_(K_block)
                H[:, :, k] = U @ coef
            H.mul_(-p / bandwidth)
            return H if S is None else _apply(H, S)

        return grads


_KERNEL_CLASSES = {cls.name: cls for cls in (LaplaceKernel, GaussianKernel, ProductLaplaceKernel)}
KERNELS = tuple(_KERNEL_CLASSES)


def make_kernel(name: str, bandwidth: float, exponent: float = 1.0) -> Kernel:
    """The kernel called ``name`` (one of `KERNELS`) with its parameters."""
    try:
        cls = _KERNEL_CLASSES[name]
    except KeyError:
        raise ValueError(f"unknown kernel {name!r}; choose from {', '.join(KERNELS)}") from None
    return cls(bandwidth, exponent)
