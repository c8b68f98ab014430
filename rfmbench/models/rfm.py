"""Recursive Feature Machines: `RFMRegressor`, `RFMClassifier` and the registry's `SPEC` for ``rfm``.

The algorithm (Radhakrishnan et al., Science 2024; the authors' package is ``xrfm``):

1. Start from ``M = I``. Solve kernel ridge regression ``(K_M + reg I) alpha = Y`` by Cholesky.
2. Score the predictor on the validation rows.
3. Take the AGOP ``G`` of the fitted predictor over a seeded random sample of at most
   ``agop_samples`` training rows (`rfmbench.models.agop`), and set ``M = (G / max_ij G_ij) ^ agop_power``
   (eigenvalues clipped at 0; elementwise for ``diag``). Repeat from 1, ``iters`` times.
4. Keep the ``M`` and coefficients of the iteration (0 = plain kernel machine included) with the best
   validation score.

Classification is regression on one-hot labels; the predicted class is the argmax.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from numbers import Integral, Real

import numpy as np
import scipy.optimize
import scipy.special
import scipy.stats
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, _fit_context
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_array, check_is_fitted, validate_data

from rfmbench.devices import resolve_device
from rfmbench.metrics import beats
from rfmbench.models.agop import agop, agop_bytes_per_row
from rfmbench.models.kernels import KERNELS, block_rows_for, kernel_matrix, psd_power, row_blocks
from rfmbench.models.spec import ModelSpec

logger = logging.getLogger(__name__)

PROBA_EPS = 1e-3
_DTYPES = {"float32": torch.float32, "float64": torch.float64}


def solve_kernel_system(
    K: torch.Tensor,
    Y: torch.Tensor,
    reg: float,
    *,
    rebuild: Callable[[], torch.Tensor] | None = None,
) -> tuple[torch.Tensor, str]:
    """Solve ``(K + reg I) alpha = Y``; return ``alpha`` and the method that succeeded.

    Cholesky first. If the matrix is not numerically positive definite (the factorization fails, or a
    pivot is below the rounding level ``eps * max diag``), retry with jitter ``10^k eps max(diag)``
    (k = 1, 3, 5) added to the diagonal, then fall back to the minimum-norm least-squares solution
    from the symmetric eigendecomposition (eigenvalues below ``n eps max|eig|`` are dropped). Each
    fallback is logged.

    Memory. Without ``rebuild``, ``K`` is kept (its diagonal is modified during the call and restored
    exactly) and the Cholesky factor is a second ``n x n`` matrix. With ``rebuild`` (a function that
    recomputes ``K``), the first factorization overwrites ``K`` in place, so the solve needs no second
    ``n x n`` matrix; ``K`` is then garbage for the caller. Only if that attempt fails is ``K``
    rebuilt for the fallbacks.
    """
    if rebuild is not None:
        top = float(K.diagonal().max()) + reg
        K.diagonal().add_(reg)
        # K is symmetric, so K.mT is the same matrix, column-major: LAPACK factors it in place.
        factor, info = K.mT, torch.empty((), dtype=torch.int32, device=K.device)
        torch.linalg.cholesky_ex(factor, out=(factor, info))
        alpha = _checked_solve(factor, info, Y, top)
        if alpha is not None:
            return alpha, "cholesky"
        _log_retry(K.shape[0], reg, 0.0)
        K = rebuild()
    diag = K.diagonal().clone()
    eps = torch.finfo(K.dtype).eps
    scale = max(float(diag.abs().max()), float(np.finfo(np.float64).tiny))
    jitters = (0.0, 1e1 * eps * scale, 1e3 * eps * scale, 1e5 * eps * scale)
    try:
        for jitter in jitters[1:] if rebuild is not None else jitters:
            K.diagonal().copy_(diag).add_(reg + jitter)
            factor = torch.empty_like(K).mT  # column-major, as LAPACK writes it: no extra copy
            info = torch.empty((), dtype=torch.int32, device=K.device)
            torch.linalg.cholesky_ex(K, out=(factor, info))
            alpha = _checked_solve(factor, info, Y, scale + reg + jitter)
            del factor
            if alpha is not None:
                return alpha, "cholesky" if jitter == 0.0 else f"cholesky+jitter={jitter:.3g}"
            _log_retry(K.shape[0], reg, jitter)
        K.diagonal().copy_(diag).add_(reg)
        eigvals, eigvecs = torch.linalg.eigh(K)
        cutoff = K.shape[0] * eps * float(eigvals.abs().max())
        inv = torch.where(eigvals.abs() > cutoff, 1.0 / eigvals, torch.zeros_like(eigvals))
        alpha = eigvecs @ (inv.unsqueeze(1) * (eigvecs.mT @ Y))
        logger.warning("Cholesky failed even with jitter; used the least-squares solution")
        return alpha, "lstsq"
    finally:
        K.diagonal().copy_(diag)


def _checked_solve(factor, info, Y, top):
    """The solution from a Cholesky factor if the factorization is numerically sound, else None.

    Sound: LAPACK succeeded and every pivot ``L_jj^2`` is above the rounding level ``eps * top`` of the
    largest diagonal entry ``top`` (a smaller pivot means a numerically singular matrix).
    """
    eps = torch.finfo(factor.dtype).eps
    if int(info) != 0 or float(factor.diagonal().min()) ** 2 <= eps * top:
        return None
    # Two triangular solves on the column-major factor: cholesky_solve would copy the n x n factor.
    z = torch.linalg.solve_triangular(factor, Y, upper=False)
    alpha = torch.linalg.solve_triangular(factor.mT, z, upper=True)
    return alpha if bool(torch.isfinite(alpha).all()) else None


def _log_retry(n, reg, jitter):
    # Routine with tiny reg (tuning samples them); the method used is in ``solve_methods_``.
    logger.info(
        "kernel matrix (n=%d, reg=%g) is not numerically positive definite with jitter %.3g; retrying",
        n,
        reg,
        jitter,
    )


class _BaseRFM(BaseEstimator):
    """Shared fit / predict machinery; the public classes add the target handling."""

    _parameter_constraints: dict = {
        "kernel": [StrOptions(set(KERNELS))],
        "bandwidth": [Interval(Real, 0, None, closed="neither")],
        "exponent": [Interval(Real, 0, 2, closed="right")],
        "reg": [Interval(Real, 0, None, closed="left")],
        "iters": [Interval(Integral, 0, None, closed="left")],
        "diag": ["boolean"],
        "agop_power": [Interval(Real, 0, None, closed="neither")],
        "agop_samples": [Interval(Integral, 1, None, closed="left")],
        "center_grads": ["boolean"],
        "val_fraction": [Interval(Real, 0, 1, closed="left")],
        "row_norm": ["boolean"],
        "block_memory_mb": [Interval(Real, 0, None, closed="neither")],
        "dtype": [StrOptions(set(_DTYPES))],
        "device": [str, torch.device],
        "random_state": ["random_state"],
        "temperature": [Interval(Real, 0, None, closed="neither"), None],
    }

    def __init__(
        self,
        *,
        kernel: str = "laplace",
        bandwidth: float = 10.0,
        exponent: float = 1.0,
        reg: float = 1e-3,
        iters: int = 5,
        diag: bool = False,
        agop_power: float = 1.0,
        agop_samples: int = 20_000,
        center_grads: bool = False,
        val_fraction: float = 0.2,
        row_norm: bool = False,
        block_memory_mb: float = 512.0,
        dtype: str = "float32",
        device: str = "auto",
        random_state=None,
        temperature: float | None = None,
    ):
        self.kernel = kernel
        self.bandwidth = bandwidth
        self.exponent = exponent
        self.reg = reg
        self.iters = iters
        self.diag = diag
        self.agop_power = agop_power
        self.agop_samples = agop_samples
        self.center_grads = center_grads
        self.val_fraction = val_fraction
        self.row_norm = row_norm
        self.block_memory_mb = block_memory_mb
        self.dtype = dtype
        self.device = device
        self.random_state = random_state
        self.temperature = temperature

    # -- data ---------------------------------------------------------------------------------------

    def _tensor(self, X: np.ndarray) -> torch.Tensor:
        """Rows as a tensor on the fitted device and dtype (a copy), row-normalised if asked."""
        T = torch.tensor(np.asarray(X), dtype=_DTYPES[self.dtype], device=self.device_)
        if self.row_norm:
            T /= T.norm(dim=1, keepdim=True).clamp_(min=torch.finfo(T.dtype).tiny)
        return T

    def _split(self, n: int, labels: np.ndarray | None, rng: np.random.RandomState):
        """Seeded train / validation row indices; stratified on ``labels`` when every class can be."""
        if n < 2:
            raise ValueError(
                f"{type(self).__name__}: needs at least 2 samples to carve a validation split "
                f"(iters > 0 and no X_val), got {n} sample"
            )
        n_val = min(n - 1, max(1, round(self.val_fraction * n)))
        stratify = None
        if labels is not None:
            counts = np.bincount(labels)
            counts = counts[counts > 0]
            if counts.min() >= 2 and len(counts) <= min(n_val, n - n_val):
                stratify = labels
        return train_test_split(
            np.arange(n), test_size=n_val, random_state=rng, shuffle=True, stratify=stratify
        )

    # -- the algorithm ------------------------------------------------------------------------------

    def _kernel(self, X: torch.Tensor, Z: torch.Tensor, M, **kw) -> torch.Tensor:
        return kernel_matrix(
            self.kernel, X, Z, M, bandwidth=self.bandwidth, exponent=self.exponent, **kw
        )

    def _scores(self, X: torch.Tensor, centers, coef, M) -> torch.Tensor:
        """Regression outputs ``K(X, centers) coef``, in blocks of rows (shape (m, c))."""
        itemsize = centers.element_size()
        per_row = itemsize * centers.shape[0] * (2 if self.kernel == "product_laplace" else 1)
        budget = self.block_memory_mb * 2**20 / 2
        out = torch.empty(X.shape[0], coef.shape[1], dtype=coef.dtype, device=coef.device)
        for rows in row_blocks(X.shape[0], block_rows_for(budget, per_row, X.shape[0])):
            out[rows] = self._kernel(X[rows], centers, M) @ coef
        return out

    def _fit_path(self, X_tr, Y_tr, X_va, score, rng):
        """Run iterations 0..iters; keep the best. ``score(outputs) -> float``, higher is better."""
        n, d = X_tr.shape
        itemsize = X_tr.element_size()
        budget = self.block_memory_mb * 2**20
        sample = None
        if self.agop_samples < n:
            gen = torch.Generator().manual_seed(int(rng.randint(2**31 - 1)))
            sample = torch.randperm(n, generator=gen)[: self.agop_samples].sort().values
            sample = sample.to(self.device_)
        # Half the budget for blocked temporaries, half for the sample's kernel rows kept from the
        # solve (when they fit; otherwise the AGOP recomputes them block by block).
        s = n if sample is None else sample.shape[0]
        keep_rows = s * n * itemsize <= budget / 2
        agop_rows = block_rows_for(
            budget / 2, agop_bytes_per_row(self.kernel, n, d, Y_tr.shape[1], itemsize), s
        )
        timings = {"kernel": 0.0, "solve": 0.0, "validation": 0.0, "agop": 0.0}
        self.val_scores_, self.solve_methods_ = [], []
        best = (-np.inf, None, None, 0)  # score, M, coef, iteration
        M = None
        for it in range(self.iters + 1):
            t0 = time.perf_counter()
            K = self._kernel(X_tr, X_tr, M)
            t1 = time.perf_counter()
            K_rows = None
            if keep_rows and it < self.iters:
                K_rows = K.clone() if sample is None else K[sample]
            coef, method = solve_kernel_system(
                K, Y_tr, self.reg, rebuild=lambda M=M: self._kernel(X_tr, X_tr, M)
            )
            del K  # overwritten by its Cholesky factor
            t2 = time.perf_counter()
            self.solve_methods_.append(method)
            val = score(self._scores(X_va, X_tr, coef, M)) if X_va is not None else np.nan
            t3 = time.perf_counter()
            self.val_scores_.append(val)
            timings["kernel"] += t1 - t0
            timings["solve"] += t2 - t1
            timings["validation"] += t3 - t2
            # NaN never wins; near-ties (metrics.TIE_RTOL) keep the earlier iteration; with no
            # validation the last one stays.
            if X_va is None or best[2] is None or beats(val, best[0]):
                best = (val, M, coef, it)
            if it == self.iters:
                break
            G = agop(
                self.kernel, X_tr, coef, M, bandwidth=self.bandwidth, exponent=self.exponent,
                sample=sample, K_rows=K_rows, diag=self.diag, center_grads=self.center_grads,
                block_rows=agop_rows,
            )  # fmt: skip
            del K_rows
            timings["agop"] += time.perf_counter() - t3
            top = float(G.max())
            if not np.isfinite(top) or top <= 0:
                logger.warning(
                    "%s: AGOP is zero or not finite at iteration %d; stopping the iterations",
                    type(self).__name__,
                    it,
                )
                break
            M = psd_power(G / top, self.agop_power)
        _, M, coef, self.best_iter_ = best
        d_eye = torch.ones(d, dtype=X_tr.dtype, device=X_tr.device)
        if M is None:
            M = d_eye if self.diag else torch.diag(d_eye)
        self._M, self._coef, self._centers = M, coef, X_tr
        M_full = torch.diag(M) if M.ndim == 1 else M
        self.M_ = M_full.double().cpu().numpy()
        self.dual_coef_ = coef.double().cpu().numpy()
        importances = np.clip(np.diag(self.M_), 0, None)
        total = importances.sum()
        self.feature_importances_ = importances / total if total > 0 else np.full(d, 1 / d)
        self.fit_timings_ = timings
        return self

    def _fit(self, X, Y, X_val, Y_val, labels, score):
        """Shared part of ``fit``: device, split, the iterations."""
        self.device_ = resolve_device(self.device)
        rng = check_random_state(self.random_state)
        X_all = self._tensor(X)
        Y_all = torch.tensor(Y, dtype=X_all.dtype, device=self.device_)
        if X_val is not None:
            X_tr, Y_tr, X_va, Y_va = X_all, Y_all, self._tensor(X_val), Y_val
        elif self.iters == 0 or self.val_fraction == 0:
            X_tr, Y_tr, X_va, Y_va = X_all, Y_all, None, None
        else:
            tr, va = self._split(X_all.shape[0], labels, rng)
            tr_t = torch.as_tensor(tr, device=self.device_)
            va_t = torch.as_tensor(va, device=self.device_)
            X_tr, Y_tr, X_va = X_all[tr_t], Y_all[tr_t], X_all[va_t]
            Y_va = Y[va] if labels is None else labels[va]
            del X_all
        return self._fit_path(X_tr, Y_tr, X_va, lambda out: score(out, Y_va), rng)

    def _decision(self, X) -> torch.Tensor:
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=[np.float64, np.float32])
        return self._scores(self._tensor(X), self._centers, self._coef, self._M)


class RFMRegressor(RegressorMixin, _BaseRFM):
    """Recursive Feature Machine for regression (single or multiple outputs).

    Kernel ridge regression with a kernel on the Mahalanobis metric ``d_M``, where ``M`` is learned
    by iterating ``M <- (AGOP / max AGOP) ^ agop_power``; the iteration with the best validation MSE
    (iteration 0, ``M = I``, included) is kept. See the module docstring for the algorithm.

    Parameters
    ----------
    kernel : {"laplace", "gaussian", "product_laplace"}, default="laplace"
        ``exp(-d_M^exponent / bandwidth)``, ``exp(-d_M^2 / (2 bandwidth^2))``, or xRFM's ``l1``
        kernel ``exp(-||M^(1/2)(x - z)||_p^p / bandwidth)`` (see `rfmbench.models.kernels`).
    bandwidth : float, default=10.0
    exponent : float in (0, 2], default=1.0
        Power of the distance in the Laplace kernels (unused by gaussian).
    reg : float >= 0, default=1e-3
        Ridge added to the kernel matrix's diagonal.
    iters : int >= 0, default=5
        AGOP updates; iterations 0 (``M = I``) to ``iters`` are candidates. ``iters=0`` is kernel
        ridge regression and carves no validation split.
    diag : bool, default=False
        Learn a diagonal ``M`` (the AGOP's diagonal only).
    agop_power : float > 0, default=1.0
        ``M = (G / max G) ^ agop_power``. The paper and xRFM use ``M = G`` (power 1 here); xRFM stores
        the transform ``sqrtM = (G / max G)^0.5`` and measures ``||sqrtM (x - z)||``, so xRFM's
        ``agop_power=0.5`` is ``agop_power=1`` here.
    agop_samples : int, default=20000
        The AGOP is averaged over a seeded random sample of at most this many training rows (xRFM
        takes the first rows instead).
    center_grads : bool, default=False
        Subtract each output's mean gradient before the outer product.
    val_fraction : float in [0, 1), default=0.2
        Fraction of the rows held out for selecting the iteration when ``fit`` gets no ``X_val``.
        The kept coefficients are those fitted on the remaining rows: there is no refit on
        train + validation (as in xRFM), so the selected ``M`` and coefficients belong together.
        ``0`` uses every row and keeps the last iteration: the benchmark's refit, once inner
        cross-validation has chosen ``iters``.
    row_norm : bool, default=False
        Scale each row to unit l2 norm first (the paper's protocol on the UCI collection).
    block_memory_mb : float, default=512
        Memory budget beyond the kernel matrix. Half of it bounds the blocked temporaries (AGOP
        blocks, see `rfmbench.models.agop.agop_bytes_per_row`; kernel rows at prediction); the
        other half keeps the AGOP sample's kernel rows from the solve when ``s n itemsize`` fits in
        it (else the AGOP recomputes them in blocks). The Cholesky factor overwrites the kernel
        matrix in place, so the fit's peak memory is about ``n^2 itemsize + block_memory_mb +
        O(n d + d^2)``, with ``n`` the training rows (validation rows excluded) and ``s`` the AGOP
        sample size.
    dtype : {"float32", "float64"}, default="float32"
    device : str, default="auto"
        ``auto``, ``cpu``, ``cuda`` or ``cuda:N``; resolved in ``fit``. Every tensor of the fit stays
        on it.
    random_state : int, RandomState or None, default=None
        Seeds the validation split and the AGOP sample.

    Attributes
    ----------
    M_ : ndarray of shape (n_features, n_features)
        The selected metric (a diagonal matrix when ``diag``).
    feature_importances_ : ndarray of shape (n_features,)
        ``diag(M_)`` normalised to sum to 1.
    best_iter_ : int
        The selected iteration (0 = ``M = I``).
    val_scores_ : list of float
        Validation score of each iteration run, higher is better: the negative mean squared error
        (NaN when there is no validation data, i.e. ``iters=0`` without ``X_val``).
    solve_methods_ : list of str
        How each iteration's linear system was solved (``cholesky``, ``cholesky+jitter=...``,
        ``lstsq``).
    dual_coef_ : ndarray of shape (n_train, n_outputs)
        The selected coefficients.
    fit_timings_ : dict
        Seconds spent in kernel matrices, solves, validation predictions and AGOPs.
    device_ : torch.device
    n_features_in_ : int

    Examples
    --------
    >>> import numpy as np
    >>> from rfmbench.models.rfm import RFMRegressor
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(200, 5)); y = X[:, 0] ** 2
    >>> RFMRegressor(iters=2, device="cpu", random_state=0).fit(X, y).predict(X[:2]).shape
    (2,)
    """

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, X_val=None, y_val=None):
        """Fit on ``(X, y)``; select the iteration on ``(X_val, y_val)`` or a carved split."""
        X, y = validate_data(
            self, X, y, dtype=[np.float64, np.float32], multi_output=True, y_numeric=True
        )
        self._y_1d = y.ndim == 1
        Y = np.asarray(y, dtype=np.float64).reshape(len(y), -1)
        Y_val = None
        if X_val is not None or y_val is not None:
            X_val, Y_val = self._check_val(X_val, y_val, Y.shape[1])

        def score(out, Y_va):
            return -float(np.mean((out.double().cpu().numpy() - Y_va) ** 2))

        return self._fit(X, Y, X_val, Y_val, None, score)

    def _check_val(self, X_val, y_val, n_outputs):
        if X_val is None or y_val is None:
            raise ValueError(f"{type(self).__name__}: pass both X_val and y_val, or neither")
        X_val = check_array(X_val, dtype=[np.float64, np.float32])
        if X_val.shape[1] != self.n_features_in_:
            raise ValueError(
                f"{type(self).__name__}: X_val has {X_val.shape[1]} features, X has "
                f"{self.n_features_in_}"
            )
        Y_val = np.asarray(y_val, dtype=np.float64).reshape(len(X_val), -1)
        if Y_val.shape[1] != n_outputs:
            raise ValueError(
                f"{type(self).__name__}: y_val has {Y_val.shape[1]} outputs, y has {n_outputs}"
            )
        return X_val, Y_val

    def predict(self, X):
        """Predicted targets, shape (n_samples,) or (n_samples, n_outputs) as ``y`` in ``fit``."""
        out = self._decision(X).double().cpu().numpy()
        return out[:, 0] if self._y_1d else out


class RFMClassifier(ClassifierMixin, _BaseRFM):
    """Recursive Feature Machine for classification: RFM regression on one-hot labels.

    The parameters are those of `RFMRegressor`; the iteration is selected by validation accuracy
    (split stratified by class when every class has at least 2 rows).

    Scores and probabilities: the one-hot regression outputs ``s`` (one per class; there is no
    ``decision_function``, whose binary convention is a single column) map to probabilities by a
    softmax with a temperature, ``p_k = exp(s_k / T) / sum_j exp(s_j / T)`` (temperature scaling,
    Guo et al. 2017). ``T`` is fitted on the validation rows the fit already holds out to choose
    the iteration, with the selected iteration's scores: it minimizes their cross-entropy against
    labels smoothed by one pseudo-row, ``(1 - e) onehot + e / K`` with ``e = 1 / (n_val + 1)``, so
    a validation split without errors still gives a finite ``T`` (the fewer rows, the less
    confidence it earns). The softmax keeps the scores' order, so ``predict`` (the largest score)
    is the class of the largest probability; for two classes ``p_1`` is a strictly increasing
    function of ``s_1 - s_0``, so ROC AUC ranks the raw scores, without the ties that clipping
    made. Every probability is positive and the log loss finite. (The iteration is selected by
    the accuracy of the largest score.)

    Without validation rows (``val_fraction=0`` or ``iters=0`` and no ``X_val``) and without a
    given ``temperature`` there is nothing to fit ``T`` on; the scores are then clipped at
    ``eps = 1e-3`` and normalised, ``p_k = max(s_k, eps) / sum_j max(s_j, eps)``, as xRFM does,
    and ``predict`` is the class of the largest of those (the first class when every score is
    below ``eps``), so kernel ridge (``iters=0``) predicts as before.
    The benchmark's refit on all training rows gets the median of the inner folds' fitted
    temperatures as ``temperature`` (``refit_params``).

    Parameters
    ----------
    temperature : float > 0 or None, default=None
        ``T`` given instead of fitted (None: fitted on the validation rows, see above). The other
        parameters are those of `RFMRegressor`.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
    M_, feature_importances_, best_iter_, val_scores_, solve_methods_, dual_coef_, fit_timings_,
    device_, n_features_in_ :
        As in `RFMRegressor`; ``val_scores_`` holds validation accuracies.
    temperature_ : float or None
        The ``T`` of ``predict_proba``: ``temperature`` if given, else fitted on the validation
        rows; None when there were none (clipped scores).
    """

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, X_val=None, y_val=None):
        """Fit on ``(X, y)``; select the iteration on ``(X_val, y_val)`` or a stratified split."""
        X, y = validate_data(self, X, y, dtype=[np.float64, np.float32])
        check_classification_targets(y)
        self.classes_, labels = np.unique(y, return_inverse=True)
        Y = np.eye(len(self.classes_))[labels]
        val_labels = None
        if X_val is not None or y_val is not None:
            X_val, val_labels = self._check_val(X_val, y_val)

        val_scores = []  # each iteration's validation scores, for the temperature

        def score(out, labels_va):
            val_scores.append((out.double().cpu().numpy(), labels_va))
            return float(np.mean(out.argmax(dim=1).cpu().numpy() == labels_va))

        self._fit(X, Y, X_val, val_labels, labels, score)
        if self.temperature is not None:
            self.temperature_ = float(self.temperature)
        elif val_scores:
            self.temperature_ = fit_temperature(*val_scores[self.best_iter_])
        else:
            self.temperature_ = None
        return self

    def _check_val(self, X_val, y_val):
        if X_val is None or y_val is None:
            raise ValueError(f"{type(self).__name__}: pass both X_val and y_val, or neither")
        X_val = check_array(X_val, dtype=[np.float64, np.float32])
        if X_val.shape[1] != self.n_features_in_:
            raise ValueError(
                f"{type(self).__name__}: X_val has {X_val.shape[1]} features, X has "
                f"{self.n_features_in_}"
            )
        y_val = np.asarray(y_val).ravel()
        labels = np.searchsorted(self.classes_, y_val).clip(0, len(self.classes_) - 1)
        if len(y_val) != len(X_val) or np.any(self.classes_[labels] != y_val):
            raise ValueError(
                f"{type(self).__name__}: y_val must have one label of y per row of X_val"
            )
        return X_val, labels

    def predict_proba(self, X):
        """Class probabilities ``softmax(s / temperature_)`` of the scores ``s``; see the class."""
        scores = self._decision(X).double().cpu().numpy()
        if self.temperature_ is None:
            p = np.maximum(scores, PROBA_EPS)
            return p / p.sum(axis=1, keepdims=True)
        return scipy.special.softmax(scores / self.temperature_, axis=1)

    def predict(self, X):
        """The class of the largest probability: of the largest score with a temperature."""
        scores = self._decision(X)
        if self.temperature_ is None:  # clipped scores: all below eps tie, the first class wins
            scores = scores.clamp(min=PROBA_EPS)
        return self.classes_[scores.argmax(dim=1).cpu().numpy()]


# Bounds of the fitted inverse temperature 1 / T: scores are one-hot regression outputs, of order 1.
_INV_TEMPERATURE_BOUNDS = (1e-3, 1e4)


def fit_temperature(scores: np.ndarray, labels: np.ndarray) -> float:
    """The ``T`` whose ``softmax(scores / T)`` has the least smoothed cross-entropy on ``labels``.

    Targets are ``(1 - e) onehot + e / K`` with ``e = 1 / (n + 1)`` (one pseudo-row of uniform
    label among ``n``), which bounds the confidence a small, error-free validation split earns.
    The loss is convex in ``1 / T``; bounded Brent search on ``log(1 / T)``, deterministic;
    ``T`` is rounded to three significant digits.
    """
    n, k = scores.shape
    smooth = 1.0 / (n + 1)
    targets = np.full((n, k), smooth / k)
    targets[np.arange(n), labels] += 1.0 - smooth

    def loss(log_beta: float) -> float:
        logp = scipy.special.log_softmax(np.exp(log_beta) * scores, axis=1)
        return -float(np.sum(targets * logp)) / n

    low, high = np.log(_INV_TEMPERATURE_BOUNDS)
    result = scipy.optimize.minimize_scalar(
        loss, bounds=(low, high), method="bounded", options={"xatol": 1e-6}
    )
    # Three significant digits: more is noise from a small split, and a last-bit difference between
    # machines must not reach the refit's parameters (they are written to the results).
    return float(f"{np.exp(-result.x):.3g}")


def _build(kind: str, params: dict, *, device: str, seed: int, n_jobs: int):
    """The registry's builder: an unfitted RFM for ``kind`` (``n_jobs`` unused: torch threads)."""
    del n_jobs
    cls = RFMClassifier if kind == "classification" else RFMRegressor
    return cls(device=device, random_state=seed, **params)


def _refit_params(model: _BaseRFM) -> dict:
    """The iteration chosen on validation; the refit runs that many on all rows and keeps the last.

    A classifier's refit also gets the temperature fitted on the validation rows (it has none).
    """
    params = {"iters": int(model.best_iter_), "val_fraction": 0.0}
    if getattr(model, "temperature_", None) is not None:
        params["temperature"] = model.temperature_
    return params


SPEC = ModelSpec(
    name="rfm",
    summary="Recursive Feature Machine: Laplace kernel ridge with a learned Mahalanobis metric (AGOP)",
    build=_build,
    # TabArena's xRFM space (200 random configurations there), kernel fixed to Laplace (l2).
    space={
        "bandwidth": scipy.stats.loguniform(0.5, 200),
        "reg": scipy.stats.loguniform(1e-6, 10),
        "exponent": scipy.stats.uniform(0.7, 0.7),
        "diag": [False, True],
        "kernel": ["laplace"],
        "iters": [5],
    },
    # TabArena's default (diag=True, reg 1e-3, 5 iterations, bandwidth 10, exponent 1): a diagonal
    # M is a feature reweighting, harder to overfit on the small data sets of a default run.
    defaults={
        "kernel": "laplace",
        "bandwidth": 10.0,
        "reg": 1e-3,
        "exponent": 1.0,
        "diag": True,
        "iters": 5,
    },
    uses_device=True,
    refit_params=_refit_params,
    precision_param="dtype",
    # The RFM paper's UCI grid: ridge x row normalisation, bandwidth 10, full M, up to 5 iterations.
    paper_space={
        "reg": [10.0, 1.0, 0.1, 0.01, 0.001],
        "row_norm": [True, False],
        "bandwidth": [10.0],
        "diag": [False],
        "iters": [5],
    },
)
