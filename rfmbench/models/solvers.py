"""Solves of the kernel ridge system ``(K + reg I) alpha = Y``: exact and checked, or iterative.

Two paths, both returning a `Solve` that says how the coefficients were obtained and how well they
solve the system:

- `exact_solve`: Cholesky of the ``n x n`` matrix (jitter and least-squares fallbacks in
  `solve_kernel_system`), then a **residual check**: ``||Y - (K + reg I) alpha|| / ||Y||``
  (Frobenius norms), the kernel recomputed in blocks with the factored matrix's own arithmetic
  (`rfmbench.models.kernels.Kernel.rows`), the products summed in float64. Above `RESIDUAL_TOL` the
  coefficients are repaired: up to two steps of iterative refinement (the residual in float64, the
  correction from the Cholesky factor already at hand), and if that is still not enough, a float64
  solve with the kernel rebuilt in float64 (when it fits in memory). Why: a float32 Cholesky of a
  kernel matrix whose condition number approaches ``1 / eps_float32 ~ 1.7e7`` (duplicate rows and a
  small ridge do that: 14 distinct rows among 2,201 give eigenvalues ~ n / 14) succeeds without a
  complaint and returns coefficients whose residual is of order 1. Nothing is returned silently
  wrong: what is still above the tolerance after every repair is logged as a warning, and the
  residual is always recorded.
- `pcg_solve`: preconditioned conjugate gradients with blocked, matrix-free kernel products (the
  matrix is never formed) and a rank-``m`` Nystrom preconditioner on ``m`` sampled landmark rows
  (Frangella, Tropp and Udell 2023, "Randomized Nystrom preconditioning"; Falkon uses the same
  Nystrom factor, for its reduced problem). Warm-started from ``x0`` (the previous RFM iteration's
  coefficients), stopped when the relative residual is at most ``tol``; the true residual of the
  returned coefficients is recomputed and recorded.

Memory (``b`` rows per block, ``n`` rows, ``c`` outputs, ``m`` landmarks, ``s`` bytes per item):
the exact path needs ``n^2 s`` (the Cholesky factor overwrites the matrix in place, and a failed
attempt is retried with jitter in the same buffer, the kernel recomputed into it) plus ``8 b n``
for a float64 residual block; its float64 repair needs ``8 n^2``; the least-squares fallback
(eigenvectors) ``3 n^2 s``, and is refused with a `MemoryError` where the plan cannot hold that.
The iterative path needs ``s (n m + b n + 6 n c)`` (the Nystrom factor's transformations
overwrite its ``n x m`` columns in place).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from rfmbench.models.kernels import DEFAULT_BLOCK_ELEMENTS, Kernel, block_rows_for, row_blocks

logger = logging.getLogger(__name__)

# Relative residual above which exact coefficients are repaired. A sound float32 solve of a kernel
# system lands between 1e-7 and 1e-4; at 1e-3 the fitted values on the training rows are off by
# 0.1% of the targets' scale, far below any benchmark metric's noise; an unsound one lands near 1.
RESIDUAL_TOL = 1e-3
REFINE_STEPS = 2


@dataclass
class KernelSystem:
    """The matrix ``K(X, X) + reg I`` of a kernel on a metric ``M``, without forming it.

    ``block_bytes`` bounds the temporaries of every blocked computation on it: the blocks of
    `matrix` and `columns` (sized by the kernel's `Kernel.bytes_per_row`) and of `matmul` (one
    ``b x n`` kernel block in the accumulation dtype).
    """

    kernel: Kernel
    X: torch.Tensor
    M: torch.Tensor | None
    reg: float
    block_bytes: float = 256 * 2**20
    # A copy of the full matrix K when the caller keeps one anyway (the AGOP reuses it): the
    # blocked products then read it instead of recomputing the kernel.
    cached: torch.Tensor | None = None

    @property
    def n(self) -> int:
        return self.X.shape[0]

    def to(self, dtype: torch.dtype) -> KernelSystem:
        """The same system with ``X`` and ``M`` in ``dtype`` (float64: the exact reference)."""
        M = None if self.M is None else self.M.to(dtype)
        return replace(self, X=self.X.to(dtype), M=M, cached=None)

    def _block_rows(self, n_z: int) -> int:
        """Rows per block of ``K(X, Z)`` for ``n_z`` columns: within ``block_bytes``, and at most
        `DEFAULT_BLOCK_ELEMENTS` per block so that a block stays in cache while it is finished."""
        per_row = self.kernel.bytes_per_row(n_z, self.X.shape[1], self.X.element_size())
        cache_rows = max(16, DEFAULT_BLOCK_ELEMENTS // max(1, n_z))
        return min(cache_rows, block_rows_for(self.block_bytes, per_row, self.n))

    def matrix(self, out: torch.Tensor | None = None) -> torch.Tensor:
        """``K(X, X)`` as a full ``n x n`` matrix (no ridge), written into ``out`` if given."""
        return self.kernel.matrix(
            self.X, self.X, self.M, block_rows=self._block_rows(self.n), out=out
        )

    def rows(self, rows: slice) -> torch.Tensor:
        if self.cached is not None:
            return self.cached[rows]
        return self.kernel.rows(self.X, rows, self.M)

    def columns(self, idx: torch.Tensor) -> torch.Tensor:
        """``K(X, X[idx])``, shape ``(n, len(idx))``, with the self pairs exactly 1."""
        C = self.kernel.matrix(self.X, self.X[idx], self.M, block_rows=self._block_rows(len(idx)))
        C[idx, torch.arange(len(idx), device=C.device)] = 1.0
        return C

    def matmul(self, A: torch.Tensor) -> torch.Tensor:
        """``(K + reg I) A`` in blocks of rows, accumulated in ``A``'s dtype."""
        out = torch.empty_like(A)
        step = max(1, int(self.block_bytes // (self.n * max(A.element_size(), 8))))
        for rows in row_blocks(self.n, step):
            block = self.rows(rows).to(A.dtype)
            torch.addmm(A[rows], block, A, beta=self.reg, out=out[rows])
        return out


@dataclass
class Solve:
    """Coefficients and how they were obtained."""

    coef: torch.Tensor
    method: str
    residual: float
    steps: int = 0
    notes: list[str] = field(default_factory=list)


def relative_residual(system: KernelSystem, coef: torch.Tensor, Y: torch.Tensor) -> float:
    """``||Y - (K + reg I) coef||_F / ||Y||_F``, the kernel in its dtype, the sums in float64."""
    Y64 = Y.to(torch.float64)
    R = Y64 - system.matmul(coef.to(torch.float64))
    return float(R.norm() / Y64.norm().clamp(min=torch.finfo(torch.float64).tiny))


def exact_solve(
    system: KernelSystem,
    Y: torch.Tensor,
    *,
    tol: float = RESIDUAL_TOL,
    fits: Callable[[float], bool] = lambda nbytes: True,
    on_matrix: Callable[[torch.Tensor], None] | None = None,
) -> Solve:
    """Cholesky solve of ``(K + reg I) alpha = Y``, residual-checked and repaired; see the module.

    ``fits(nbytes)`` says whether ``nbytes`` more can be allocated on the device (the memory plan):
    the float64 repair of a float32 system runs only if its ``8 n^2`` bytes fit. The coefficients
    are float64 when a repair made them so (the model then predicts in float64). ``on_matrix(K)``
    is called with the kernel matrix before it is factored in place (to keep rows of it).
    """
    K = system.matrix()
    if on_matrix is not None:
        on_matrix(K)
    alpha, method, factor = _factor_solve(K, Y, system.reg, rebuild=system.matrix, fits=fits)
    del K  # overwritten by its Cholesky factor: the factor is what is kept
    Y64 = Y.to(torch.float64)
    y_norm = float(Y64.norm().clamp(min=torch.finfo(torch.float64).tiny))
    R = Y64 - system.matmul(alpha.to(torch.float64))
    residual = float(R.norm()) / y_norm
    if residual <= tol:
        return Solve(alpha, method, residual)
    first = residual
    if factor is not None:  # iterative refinement: float64 residual, correction from the factor
        a = alpha.to(torch.float64)
        for _ in range(REFINE_STEPS):
            a += _cholesky_apply(factor, R.to(factor.dtype)).to(torch.float64)
            R = Y64 - system.matmul(a)
            residual = float(R.norm()) / y_norm
            if residual <= tol:
                break
        if residual < first:
            alpha, method = a, f"{method}+refined"
    del factor
    if residual > tol and system.X.dtype != torch.float64 and fits(8.0 * system.n**2):
        ref = system.to(torch.float64)
        try:
            a64, method64, _ = _factor_solve(
                ref.matrix(), Y64, system.reg, rebuild=ref.matrix, fits=fits
            )
        except MemoryError as error:  # its least-squares fallback: the solve at hand stays
            logger.warning("kernel system (n=%d): no float64 repair: %s", system.n, error)
        else:
            residual64 = relative_residual(ref, a64, Y64)
            if residual64 < residual:
                alpha, residual = a64, residual64
                method = method64.replace("cholesky", "cholesky-float64", 1)
                method = method if method != "lstsq" else "lstsq-float64"
    if residual > tol:
        logger.warning(
            "kernel system (n=%d, reg=%g): relative residual %.2g after %s is above %g; the "
            "matrix is numerically singular at this ridge (a larger reg avoids it)",
            system.n, system.reg, residual, method, tol,
        )  # fmt: skip
    else:
        logger.info(
            "kernel system (n=%d, reg=%g): residual %.2g of the first solve repaired to %.2g by %s",
            system.n, system.reg, first, residual, method,
        )  # fmt: skip
    return Solve(alpha, method, residual)


def pcg_solve(
    system: KernelSystem,
    Y: torch.Tensor,
    *,
    x0: torch.Tensor | None = None,
    tol: float = RESIDUAL_TOL,
    rank: int = 500,
    max_steps: int = 500,
    generator: torch.Generator | None = None,
) -> Solve:
    """Nystrom-preconditioned conjugate gradients for ``(K + reg I) alpha = Y``; see the module.

    All columns of ``Y`` are iterated together (one blocked kernel product per step for all of
    them). ``rank`` landmark rows (uniform, seeded by ``generator``) give the preconditioner
    ``P^-1 = (lam_r + reg) U (Lam + reg)^-1 U^T + (I - U U^T)`` from the Nystrom factor
    ``K ~ U Lam U^T``. A zero ``reg`` gets the floor ``1e-6 * trace(K) / n`` for the
    preconditioner only (``reg`` of the system is unchanged). Stops at relative residual
    ``<= tol`` or after ``max_steps``; the recorded residual is recomputed from the coefficients.
    """
    n, dtype = system.n, system.X.dtype
    precond = _nystrom_preconditioner(system, min(rank, n), generator)
    Y = Y.to(dtype)
    y_norms = Y.norm(dim=0).clamp(min=torch.finfo(dtype).tiny)
    x = torch.zeros_like(Y) if x0 is None else x0.to(dtype).clone()
    R = Y - system.matmul(x) if x0 is not None else Y.clone()
    if x0 is not None and float(R.norm()) > float(Y.norm()):  # a worse start than zero
        x.zero_()
        R = Y.clone()
    Z = precond(R)
    P = Z.clone()
    rz = (R * Z).sum(dim=0)
    steps = 0
    while steps < max_steps and float((R.norm(dim=0) / y_norms).max()) > tol:
        AP = system.matmul(P)
        step = rz / (P * AP).sum(dim=0).clamp(min=torch.finfo(dtype).tiny)
        x.addcmul_(P, step)
        R.addcmul_(AP, step, value=-1.0)
        Z = precond(R)
        rz_new = (R * Z).sum(dim=0)
        P.mul_(rz_new / rz.clamp(min=torch.finfo(dtype).tiny)).add_(Z)
        rz = rz_new
        steps += 1
    residual = relative_residual(system, x, Y)
    if residual > tol:
        logger.warning(
            "conjugate gradients (n=%d, reg=%g) stopped after %d steps at relative residual %.2g "
            "(tolerance %g)", n, system.reg, steps, residual, tol,
        )  # fmt: skip
    return Solve(x, "pcg", residual, steps)


def _nystrom_preconditioner(system: KernelSystem, rank: int, generator):
    """``r -> P^-1 r`` from a rank-``rank`` Nystrom factor on uniformly sampled landmark rows."""
    n = system.n
    idx = torch.randperm(n, generator=generator)[:rank].to(system.X.device)
    C = system.columns(idx)  # n x m
    W = C[idx].to(torch.float64)
    w, V = torch.linalg.eigh((W + W.mT) / 2)
    keep = w > w.max() * rank * torch.finfo(torch.float32).eps
    # B and U overwrite C's columns: the preconditioner holds one n x m matrix, as planned.
    rows = block_rows_for(system.block_bytes, C.shape[1] * C.element_size(), n)
    B = _times_in_place(C, (V[:, keep] / w[keep].sqrt()).to(C.dtype), rows)  # K ~ B B^T
    s, Q = torch.linalg.eigh((B.mT @ B).to(torch.float64))  # B = U diag(s)^1/2 Q^T
    good = s > s.max() * torch.finfo(torch.float32).eps
    U = _times_in_place(B, (Q[:, good] / s[good].sqrt()).to(B.dtype), rows)
    lam = s[good]
    mu = system.reg if system.reg > 0 else 1e-6  # trace(K) / n = 1: the kernel's diagonal is 1
    scale = ((float(lam.min()) + mu) / (lam + mu) - 1.0).to(U.dtype)

    def apply(R: torch.Tensor) -> torch.Tensor:
        return R + U @ (scale.unsqueeze(1) * (U.mT @ R))

    return apply


def _times_in_place(A: torch.Tensor, T: torch.Tensor, block_rows: int) -> torch.Tensor:
    """``A @ T`` written over the first ``T.shape[1]`` columns of ``A`` (returned as a view of
    them), a block of rows at a time, so that no second ``n x m`` matrix is allocated."""
    k = T.shape[1]
    for rows in row_blocks(A.shape[0], block_rows):
        A[rows, :k] = A[rows] @ T
    return A[:, :k]


def solve_kernel_system(
    K: torch.Tensor,
    Y: torch.Tensor,
    reg: float,
    *,
    rebuild: Callable[[torch.Tensor], torch.Tensor] | None = None,
    fits: Callable[[float], bool] = lambda nbytes: True,
) -> tuple[torch.Tensor, str]:
    """Solve ``(K + reg I) alpha = Y``; return ``alpha`` and the method that succeeded.

    Cholesky first. If the matrix is not numerically positive definite (the factorization fails, or a
    pivot is below the rounding level ``eps * max diag``), retry with jitter ``10^k eps max(diag)``
    (k = 1, 3, 5) added to the diagonal, then fall back to the minimum-norm least-squares solution
    from the symmetric eigendecomposition (eigenvalues below ``n eps max|eig|`` are dropped). Each
    fallback is logged. No residual check: `exact_solve` adds it.

    Memory. Without ``rebuild``, ``K`` is kept (its diagonal is modified during the call and restored
    exactly) and each Cholesky factor is a second ``n x n`` matrix. With ``rebuild`` (a function that
    recomputes ``K`` into the buffer it is given), every factorization overwrites ``K`` in place and a
    failed one is followed by ``K`` recomputed into the same buffer, so the Cholesky attempts hold one
    ``n x n`` matrix; ``K`` is then garbage for the caller. The least-squares fallback needs about two
    more (eigenvectors and LAPACK's workspace): ``fits(nbytes)`` (the memory plan) is asked for the
    three first, and a `MemoryError` names the ridge that avoids it when they do not fit.
    """
    alpha, method, _ = _factor_solve(K, Y, reg, rebuild=rebuild, fits=fits)
    return alpha, method


def _factor_solve(K, Y, reg, *, rebuild=None, fits=lambda nbytes: True):
    """`solve_kernel_system`, also returning the Cholesky factor used (None after ``lstsq``)."""
    eps = torch.finfo(K.dtype).eps
    diag = K.diagonal().clone()
    scale = max(float(diag.abs().max()), float(np.finfo(np.float64).tiny))
    info = torch.empty((), dtype=torch.int32, device=K.device)
    try:
        for jitter in (0.0, 1e1 * eps * scale, 1e3 * eps * scale, 1e5 * eps * scale):
            if rebuild is not None:
                if jitter > 0:  # the failed attempt overwrote K with a partial factor
                    K = rebuild(K)
                K.diagonal().add_(reg + jitter)
                factor = K.mT  # K is symmetric: K.mT is K column-major, LAPACK factors it in place
                torch.linalg.cholesky_ex(factor, out=(factor, info))
            else:
                K.diagonal().copy_(diag).add_(reg + jitter)
                factor = torch.empty_like(K).mT  # column-major, as LAPACK writes it: no extra copy
                torch.linalg.cholesky_ex(K, out=(factor, info))
            alpha = _checked_solve(factor, info, Y, scale + reg + jitter)
            if alpha is not None:
                method = "cholesky" if jitter == 0.0 else f"cholesky+jitter={jitter:.3g}"
                return alpha, method, factor
            del factor
            _log_retry(K.shape[0], reg, jitter)
        # K, its eigenvectors and LAPACK's workspace (``fits`` counts from an empty device).
        if not fits(3.0 * K.numel() * K.element_size()):
            raise MemoryError(
                f"the kernel system on {K.shape[0]} rows is numerically singular at reg={reg:g} "
                f"even with jitter, and its least-squares solution needs three {K.shape[0]} x "
                f"{K.shape[0]} matrices, more than the memory plan allows; a larger reg avoids it"
            )
        if rebuild is not None:
            K = rebuild(K)
        K.diagonal().copy_(diag).add_(reg)
        eigvals, eigvecs = torch.linalg.eigh(K)
        cutoff = K.shape[0] * eps * float(eigvals.abs().max())
        inv = torch.where(eigvals.abs() > cutoff, 1.0 / eigvals, torch.zeros_like(eigvals))
        alpha = eigvecs @ (inv.unsqueeze(1) * (eigvecs.mT @ Y))
        logger.warning("Cholesky failed even with jitter; used the least-squares solution")
        return alpha, "lstsq", None
    finally:
        if rebuild is None:
            K.diagonal().copy_(diag)


def _cholesky_apply(factor, R):
    # Two triangular solves on the column-major factor: cholesky_solve would copy the n x n factor.
    z = torch.linalg.solve_triangular(factor, R, upper=False)
    return torch.linalg.solve_triangular(factor.mT, z, upper=True)


def _checked_solve(factor, info, Y, top):
    """The solution from a Cholesky factor if the factorization is numerically sound, else None.

    Sound: LAPACK succeeded and every pivot ``L_jj^2`` is above the rounding level ``eps * top`` of the
    largest diagonal entry ``top`` (a smaller pivot means a numerically singular matrix).
    """
    eps = torch.finfo(factor.dtype).eps
    if int(info) != 0 or float(factor.diagonal().min()) ** 2 <= eps * top:
        return None
    alpha = _cholesky_apply(factor, Y)
    return alpha if bool(torch.isfinite(alpha).all()) else None


def _log_retry(n, reg, jitter):
    # Routine with tiny reg (tuning samples them); the method used is in ``solve_methods_``.
    logger.info(
        "kernel matrix (n=%d, reg=%g) is not numerically positive definite with jitter %.3g; retrying",
        n,
        reg,
        jitter,
    )
