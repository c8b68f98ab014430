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

At scale (see ``solver``, ``max_leaf_size`` and ``memory_gb``): a memory plan (`memory`) decides
before any allocation whether the exact solve fits; beyond ``max_leaf_size`` rows the fit is
partitioned into a tree of leaf RFMs (`partition`); a system too large to factor is solved by
Nystrom-preconditioned conjugate gradients (`solvers.pcg_solve`). Every exact solve is
residual-checked (`solvers.exact_solve`).
"""

from __future__ import annotations

import functools
import logging
import time
from dataclasses import dataclass
from numbers import Integral, Real

import numpy as np
import scipy.optimize
import scipy.special
import scipy.stats
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, _fit_context
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_array, check_is_fitted, validate_data

from rfmbench.devices import resolve_device
from rfmbench.metrics import beats
from rfmbench.models.agop import agop
from rfmbench.models.kernels import (
    KERNELS,
    Kernel,
    block_rows_for,
    make_kernel,
    psd_power,
    row_blocks,
)
from rfmbench.models.memory import GIB, MemoryPlan, exact_bytes, iterative_bytes, max_exact_rows
from rfmbench.models.partition import (
    SPLIT_TEMPERATURES,
    agop_direction,
    build_tree,
    leaf_weights,
    overlapping_rows,
    route,
)
from rfmbench.models.solvers import KernelSystem, exact_solve, pcg_solve
from rfmbench.models.solvers import solve_kernel_system as solve_kernel_system  # re-export
from rfmbench.models.spec import ModelSpec
from rfmbench.models.validation import validation_split

logger = logging.getLogger(__name__)

PROBA_EPS = 1e-3
_DTYPES = {"float32": torch.float32, "float64": torch.float64}


# Rows per leaf the "auto" max_leaf_size aims at when memory allows more: on 2 CPU cores an exact
# RFM fit (5 iterations) on 5,000 rows takes ~10 s, on 20,000 rows ~160 s; a GPU affords xRFM's.
AUTO_LEAF_ROWS = {"cpu": 5_000, "cuda": 60_000}


# Partitioned RFM: each leaf also trains on this share of its rows from across its boundaries
# (`partition.overlapping_rows`); see ``leaf_overlap`` in `RFMRegressor`. 0: at n = 100,000 an
# overlap of 0.25 cost 1.4x the fit time for no better error (benchmarks/rfm_scale.py).
LEAF_OVERLAP = 0.0
# Rows of the kernel ridge fit whose AGOP gives a partition node's split direction (see partition.py).
SPLIT_ROWS = 2_000
# Validation rows the soft routing's temperature is tuned on, at most (each is scored by the few
# leaves near it, at every temperature tried).
SOFT_TUNE_ROWS = 20_000
# Rows routed at once at prediction (the leaf-weight matrix is rows x leaves).
_ROUTE_CHUNK = 65_536


@dataclass
class _IterationPlan:
    """What the iterations of one RFM path share (see `_BaseRFM._iteration_plan`)."""

    path: str  # "cholesky" or "pcg"
    sample: torch.Tensor | None  # rows of the AGOP (None: all)
    keep_rows: bool  # the sample's kernel rows fit in half the budget: keep them from the solve
    agop_rows: int  # AGOP block rows
    block_bytes: float  # temporaries of the kernel system
    nystrom_gen: torch.Generator


@dataclass
class _Leaf:
    """One fitted RFM: the selected metric and coefficients, and how the fit went."""

    M: torch.Tensor
    coef: torch.Tensor
    centers: torch.Tensor
    best_iter: int
    val_scores: list
    solve_methods: list
    solve_residuals: list
    solve_steps: list
    timings: dict


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
        "agop_scale": [StrOptions({"max", "none"})],
        "M_init": ["array-like", None],
        "agop_samples": [Interval(Integral, 1, None, closed="left")],
        "center_grads": ["boolean"],
        "val_fraction": [Interval(Real, 0, 1, closed="left")],
        "row_norm": ["boolean"],
        "solver": [StrOptions({"auto", "cholesky", "pcg"})],
        "max_leaf_size": [StrOptions({"auto"}), Interval(Integral, 3, None, closed="left"), None],
        "leaf_overlap": [Interval(Real, 0, 1, closed="both")],
        "memory_gb": [Interval(Real, 0, None, closed="neither"), None],
        "nystrom_rank": [Interval(Integral, 1, None, closed="left")],
        "block_memory_mb": [Interval(Real, 0, None, closed="neither")],
        "dtype": [StrOptions(set(_DTYPES))],
        "device": [str, torch.device],
        "random_state": ["random_state"],
        "temperature": [Interval(Real, 0, None, closed="neither"), None],
        "split_temperature": [StrOptions({"auto"}), Interval(Real, 0, None, closed="left")],
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
        agop_scale: str = "max",
        M_init=None,
        agop_samples: int = 20_000,
        center_grads: bool = False,
        val_fraction: float = 0.2,
        row_norm: bool = False,
        solver: str = "auto",
        max_leaf_size: int | str | None = "auto",
        leaf_overlap: float = LEAF_OVERLAP,
        memory_gb: float | None = None,
        nystrom_rank: int = 1000,
        block_memory_mb: float = 512.0,
        dtype: str = "float32",
        device: str = "auto",
        random_state=None,
        temperature: float | None = None,
        split_temperature: float | str = "auto",
    ):
        self.kernel = kernel
        self.bandwidth = bandwidth
        self.exponent = exponent
        self.reg = reg
        self.iters = iters
        self.diag = diag
        self.agop_power = agop_power
        self.agop_scale = agop_scale
        self.M_init = M_init
        self.agop_samples = agop_samples
        self.center_grads = center_grads
        self.val_fraction = val_fraction
        self.row_norm = row_norm
        self.solver = solver
        self.max_leaf_size = max_leaf_size
        self.leaf_overlap = leaf_overlap
        self.memory_gb = memory_gb
        self.nystrom_rank = nystrom_rank
        self.block_memory_mb = block_memory_mb
        self.dtype = dtype
        self.device = device
        self.random_state = random_state
        self.temperature = temperature
        self.split_temperature = split_temperature

    # -- data ---------------------------------------------------------------------------------------

    def _tensor(self, X: np.ndarray) -> torch.Tensor:
        """Rows as a tensor on the fitted device and dtype (a copy), row-normalised if asked."""
        T = torch.tensor(np.asarray(X), dtype=_DTYPES[self.dtype], device=self.device_)
        if self.row_norm:
            T /= T.norm(dim=1, keepdim=True).clamp_(min=torch.finfo(T.dtype).tiny)
        return T

    def _split(self, n: int, labels: np.ndarray | None, rng: np.random.RandomState):
        """Seeded train / validation row indices (`rfmbench.models.validation`)."""
        split = validation_split(n, self.val_fraction, labels, rng)
        if split is None:
            raise ValueError(
                f"{type(self).__name__}: needs at least 2 samples to carve a validation split "
                f"(iters > 0 and no X_val), got {n} sample"
            )
        return split

    def _checked_val_rows(self, X_val, y_val) -> np.ndarray:
        """Validation rows given to ``fit``: both parts present, as many features as ``X``."""
        if X_val is None or y_val is None:
            raise ValueError(f"{type(self).__name__}: pass both X_val and y_val, or neither")
        X_val = check_array(X_val, dtype=[np.float64, np.float32])
        if X_val.shape[1] != self.n_features_in_:
            raise ValueError(
                f"{type(self).__name__}: X_val has {X_val.shape[1]} features, X has "
                f"{self.n_features_in_}"
            )
        return X_val

    # -- the plan -----------------------------------------------------------------------------------

    def _block_bytes(self) -> float:
        return self.block_memory_mb * 2**20

    def _path(self, n: int, d: int, c: int, itemsize: int) -> str:
        """``cholesky`` or ``pcg`` for a system of ``n`` rows, by the memory plan; see `memory`."""
        plan = self.memory_plan_
        exact = exact_bytes(n, d, c, itemsize, self._block_bytes())
        if self.solver == "cholesky" or (self.solver == "auto" and plan.fits(exact)):
            if not plan.fits(exact):
                raise MemoryError(
                    f"{type(self).__name__}: the exact (Cholesky) solve on {n} rows needs "
                    f"{exact / GIB:.2f} GiB, more than the {plan.describe()}; use solver='pcg' "
                    "or 'auto', or a max_leaf_size (partitioned RFM)"
                )
            return "cholesky"
        iterative = iterative_bytes(n, d, c, itemsize, self._block_bytes(), self.nystrom_rank)
        if not plan.fits(iterative):
            raise MemoryError(
                f"{type(self).__name__}: the iterative solve on {n} rows needs "
                f"{iterative / GIB:.2f} GiB, more than the {plan.describe()}; use a smaller "
                "max_leaf_size, nystrom_rank or block_memory_mb"
            )
        return "pcg"

    def _leaf_size(self, d: int, c: int, itemsize: int) -> int | None:
        """The partition's leaf size: the parameter, or for ``auto`` what the plan affords."""
        if self.max_leaf_size != "auto":
            return self.max_leaf_size
        fit_rows = max_exact_rows(self.memory_plan_.budget, d, c, itemsize, self._block_bytes())
        fit_rows = int(fit_rows / (1 + self.leaf_overlap))  # a leaf trains on its overlap too
        if self.solver == "pcg":  # no exact matrix: the leaf is bounded by time alone
            fit_rows = AUTO_LEAF_ROWS["cuda"]
        return max(3, min(fit_rows, AUTO_LEAF_ROWS.get(self.device_.type, fit_rows)))

    # -- the algorithm ------------------------------------------------------------------------------

    def _scores(self, X: torch.Tensor, centers, coef, M) -> torch.Tensor:
        """Regression outputs ``K(X, centers) coef``, in blocks of rows (shape (m, c)).

        In the coefficients' dtype: float64 after a repaired float32 solve (`solvers.exact_solve`).
        """
        if coef.dtype != centers.dtype:
            X, centers = X.to(coef.dtype), centers.to(coef.dtype)
            M = None if M is None else M.to(coef.dtype)
        itemsize = centers.element_size()
        per_row = self.kernel_.bytes_per_row(centers.shape[0], centers.shape[1], itemsize)
        budget = self.block_memory_mb * 2**20 / 2
        out = torch.empty(X.shape[0], coef.shape[1], dtype=coef.dtype, device=coef.device)
        for rows in row_blocks(X.shape[0], block_rows_for(budget, per_row, X.shape[0])):
            out[rows] = self.kernel_.matrix(X[rows], centers, M) @ coef
        return out

    def _fit_path(self, X_tr, Y_tr, X_va, score, rng) -> _Leaf:
        """Run iterations 0..iters; keep the best. ``score(outputs) -> float``, higher is better."""
        d = X_tr.shape[1]
        plan = self._iteration_plan(X_tr, Y_tr.shape[1], rng)
        timings = {"kernel": 0.0, "solve": 0.0, "validation": 0.0, "agop": 0.0}
        val_scores, methods, residuals, steps = [], [], [], []
        best = (-np.inf, None, None, 0)  # score, M, coef, iteration
        M = self._initial_metric(d, X_tr)
        coef = None
        for it in range(self.iters + 1):
            t0 = time.perf_counter()
            sol, K_rows, built = self._solve(plan, X_tr, Y_tr, M, coef, last=it == self.iters)
            t2 = time.perf_counter()
            coef = sol.coef
            methods.append(sol.method)
            residuals.append(sol.residual)
            steps.append(sol.steps)
            val = score(self._scores(X_va, X_tr, coef, M)) if X_va is not None else np.nan
            t3 = time.perf_counter()
            val_scores.append(val)
            self._score_monitor(X_tr, coef, M)
            timings["kernel"] += built - t0
            timings["solve"] += t2 - built
            timings["validation"] += t3 - t2
            # NaN never wins; near-ties (metrics.TIE_RTOL) keep the earlier iteration; with no
            # validation the last one stays.
            if X_va is None or best[2] is None or beats(val, best[0]):
                best = (val, M, coef, it)
            if it == self.iters:
                break
            M = self._next_metric(plan, X_tr, coef, M, K_rows, it)
            timings["agop"] += time.perf_counter() - max(t3, self._monitor_end)
            if M is None:
                break
        _, M, coef, best_iter = best
        d_eye = torch.ones(d, dtype=X_tr.dtype, device=X_tr.device)
        if M is None:
            M = d_eye if self.diag else torch.diag(d_eye)
        return _Leaf(M, coef, X_tr, best_iter, val_scores, methods, residuals, steps, timings)

    def _iteration_plan(self, X_tr, n_outputs: int, rng) -> _IterationPlan:
        """What every iteration of a path shares: solver, AGOP sample, block sizes, generators."""
        n, d = X_tr.shape
        itemsize = X_tr.element_size()
        budget = self._block_bytes()
        path = self._path(n, d, n_outputs, itemsize)
        sample = None
        if self.agop_samples < n:
            gen = torch.Generator().manual_seed(int(rng.randint(2**31 - 1)))
            sample = torch.randperm(n, generator=gen)[: self.agop_samples].sort().values
            sample = sample.to(self.device_)
        # Half the budget for blocked temporaries, half for the sample's kernel rows kept from the
        # solve (when they fit; otherwise the AGOP recomputes them block by block).
        s = n if sample is None else sample.shape[0]
        agop_rows = block_rows_for(
            budget / 2, self.kernel_.agop_bytes_per_row(n, d, n_outputs, itemsize), s
        )
        return _IterationPlan(
            path=path,
            sample=sample,
            keep_rows=path == "cholesky" and s * n * itemsize <= budget / 2,
            agop_rows=agop_rows,
            block_bytes=budget / 2,
            nystrom_gen=torch.Generator().manual_seed(int(rng.randint(2**31 - 1))),
        )

    def _solve(self, plan: _IterationPlan, X_tr, Y_tr, M, coef, *, last: bool):
        """One iteration's kernel system solved: (solution, kept AGOP kernel rows, built time).

        With every row in the AGOP sample the kept rows are a copy of K: the residual check reads
        it instead of recomputing the kernel (kept at the last iteration too, for that).
        """
        system = KernelSystem(self.kernel_, X_tr, M, self.reg, plan.block_bytes)
        kept = {"built": time.perf_counter(), "rows": None}
        keep = plan.keep_rows and (not last or plan.sample is None)
        on_matrix = functools.partial(
            _keep_rows, kept=kept, sample=plan.sample, keep=keep, system=system
        )
        if plan.path == "cholesky":
            sol = exact_solve(system, Y_tr, fits=self._fits_more, on_matrix=on_matrix)
        else:
            sol = pcg_solve(
                system, Y_tr, x0=coef, rank=self.nystrom_rank, generator=plan.nystrom_gen
            )
        system.cached = None
        return sol, (None if last else kept["rows"]), kept["built"]

    def _next_metric(self, plan: _IterationPlan, X_tr, coef, M, K_rows, it: int):
        """The next iteration's metric from the AGOP of this one's predictor; None to stop."""
        X_g, M_g = X_tr, M
        if coef.dtype != X_tr.dtype:  # a repaired solve: the gradients in its precision too
            X_g, K_rows = X_tr.to(coef.dtype), None
            M_g = None if M is None else M.to(coef.dtype)
        G = agop(
            self.kernel_, X_g, coef, M_g, sample=plan.sample, K_rows=K_rows, diag=self.diag,
            center_grads=self.center_grads, block_rows=plan.agop_rows,
        ).to(X_tr.dtype)  # fmt: skip
        top = float(G.max())
        if not np.isfinite(top) or top <= 0:
            logger.warning(
                "%s: AGOP is zero or not finite at iteration %d; stopping the iterations",
                type(self).__name__,
                it,
            )
            return None
        return psd_power(G / top if self.agop_scale == "max" else G, self.agop_power)

    def _set_monitor(self, monitor, score) -> None:
        """Keep ``fit(..., monitor=(X, y))`` for `_score_monitor`: rows scored, never selected on."""
        self.monitor_scores_ = None if monitor is None else []
        self.monitor_seconds_ = 0.0
        self._monitor_end = 0.0
        self._monitor = None
        if monitor is not None:
            X_mon, y_mon = monitor
            X_mon = check_array(X_mon, dtype=[np.float64, np.float32])
            self._monitor = (X_mon, lambda out: score(out, np.asarray(y_mon)))

    def _score_monitor(self, X_tr, coef, M) -> None:
        """Append this iteration's score on the monitored rows (its time kept apart from fit's)."""
        if self._monitor is None:
            return
        start = time.perf_counter()
        X_mon, score = self._monitor
        if not torch.is_tensor(X_mon):
            X_mon = self._tensor(X_mon)
            self._monitor = (X_mon, score)
        self.monitor_scores_.append(score(self._scores(X_mon, X_tr, coef, M)))
        self._monitor_end = time.perf_counter()
        self.monitor_seconds_ += self._monitor_end - start

    def _initial_metric(self, d: int, X_tr: torch.Tensor) -> torch.Tensor | None:
        """``M_init`` as a tensor (a vector when ``diag``); None means the identity."""
        if self.M_init is None:
            return None
        M = torch.as_tensor(np.asarray(self.M_init, dtype=np.float64), device=X_tr.device)
        M = M.to(X_tr.dtype)
        if M.ndim == 2 and self.diag:
            M = torch.diagonal(M).clone()
        if M.shape not in ((d,), (d, d)) or (M.ndim == 1 and not self.diag):
            raise ValueError(
                f"{type(self).__name__}: M_init has shape {tuple(M.shape)}; expected ({d}, {d})"
                + (f" or ({d},)" if self.diag else "")
            )
        return M

    def _fits_more(self, nbytes: float) -> bool:
        """Whether ``nbytes`` more fit beside what the fit holds now (the float64 repair)."""
        return self.memory_plan_.fits(nbytes + self._block_bytes())

    def _fit_leaf(self, X_all, Y_all, Y_np, X_val, Y_val, labels, score, rng) -> _Leaf:
        """Validation split and iterations on one set of rows (the whole data, or one leaf)."""
        if X_val is not None:
            X_tr, Y_tr, X_va, Y_va = X_all, Y_all, X_val, Y_val
        elif self.iters == 0 or self.val_fraction == 0:
            X_tr, Y_tr, X_va, Y_va = X_all, Y_all, None, None
        else:
            tr, X_va, Y_va = self._carve_validation(X_all, Y_np, labels, rng)
            tr_t = torch.as_tensor(tr, device=self.device_)
            X_tr, Y_tr = X_all[tr_t], Y_all[tr_t]
            del X_all
        return self._fit_path(X_tr, Y_tr, X_va, lambda out: score(out, Y_va), rng)

    def _carve_validation(self, X_all, Y_np, labels, rng):
        """``val_fraction`` of the rows held out (`_split`): (training row indices, validation
        rows, their targets as the scorer takes them: class indices, or ``Y_np`` rows)."""
        tr, va = self._split(X_all.shape[0], labels, rng)
        X_va = X_all[torch.as_tensor(va, device=X_all.device)]
        return tr, X_va, (Y_np[va] if labels is None else labels[va])

    def _fit(self, X, Y, X_val, Y_val, labels, score):
        """Shared part of ``fit``: device, memory plan, partition, the iterations per leaf."""
        self.device_ = resolve_device(self.device)
        self.kernel_: Kernel = make_kernel(self.kernel, self.bandwidth, self.exponent)
        self.memory_plan_ = MemoryPlan.for_device(self.device_, self.memory_gb)
        rng = check_random_state(self.random_state)
        X_all = self._tensor(X)
        Y_all = torch.tensor(Y, dtype=X_all.dtype, device=self.device_)
        X_va = None if X_val is None else self._tensor(X_val)
        n, d = X_all.shape
        leaf_size = self._leaf_size(d, Y.shape[1], X_all.element_size())
        self.tree_ = None
        self.split_temperature_ = None
        if leaf_size is None or n <= leaf_size:
            leaves = [self._fit_leaf(X_all, Y_all, Y, X_va, Y_val, labels, score, rng)]
            sizes = [n]
        else:
            self._monitor, self.monitor_scores_ = None, None  # leaves see parts of the rows only
            leaves, sizes = self._fit_tree(
                X_all, Y_all, X_va, Y_val, Y, labels, score, rng, leaf_size
            )
        return self._finish(leaves, sizes, d)

    def _fit_tree(self, X_all, Y_all, X_va, Y_val, Y, labels, score, rng, leaf_size):
        """Partitioned RFM (`rfmbench.models.partition`): split the rows, fit one RFM per leaf;
        with ``split_temperature="auto"`` the soft routing is then tuned on validation rows."""
        gen = torch.Generator().manual_seed(int(rng.randint(2**31 - 1)))
        tune = self.split_temperature == "auto"
        if tune and X_va is None and self.iters > 0 and self.val_fraction > 0:
            # Validation rows carved before the split (as xRFM is given them): routed down the
            # tree they serve each leaf's iteration and, all together, the routing's temperature.
            tr, X_va, Y_val = self._carve_validation(X_all, Y, labels, rng)
            tr_t = torch.as_tensor(tr, device=X_all.device)
            X_all, Y_all, Y = X_all[tr_t], Y_all[tr_t], Y[tr]
            labels = None if labels is None else labels[tr]
        split_rows = min(leaf_size, SPLIT_ROWS)

        def direction(idx):
            pick = idx[torch.randperm(idx.shape[0], generator=gen)[:split_rows].to(idx.device)]
            return agop_direction(
                self.kernel_, X_all[pick], Y_all[pick], reg=self.reg,
                agop_samples=split_rows, block_bytes=self._block_bytes() / 2,
                generator=gen, fits=self._fits_more,
            )  # fmt: skip

        self.tree_, leaf_rows = build_tree(X_all, leaf_size, direction)
        leaf_rows = overlapping_rows(self.tree_, X_all, leaf_rows, self.leaf_overlap)
        val_leaf = None if X_va is None else route(self.tree_, X_va).cpu().numpy()
        leaves, sizes = [], []
        for k, rows in enumerate(leaf_rows):
            rows_np = rows.cpu().numpy()
            X_k = Y_k = None
            if val_leaf is not None and np.any(val_leaf == k):
                mask = val_leaf == k
                X_k, Y_k = X_va[torch.as_tensor(mask, device=X_va.device)], Y_val[mask]
            leaf_labels = None if labels is None else labels[rows_np]
            leaves.append(
                self._fit_leaf(
                    X_all[rows], Y_all[rows], Y[rows_np], X_k, Y_k, leaf_labels, score, rng
                )
            )
            sizes.append(len(rows_np))
        if not tune:
            self.split_temperature_ = float(self.split_temperature) or None
        elif X_va is not None:
            self._leaves = leaves  # what _routed_scores reads (_finish sets it again)
            self.split_temperature_ = self._tune_split_temperature(X_va, Y_val, rng)
        return leaves, sizes

    def _tune_split_temperature(self, X_va, Y_val, rng) -> float | None:
        """The `SPLIT_TEMPERATURES` entry with the best validation score (`_val_score`) on at
        most `SOFT_TUNE_ROWS` validation rows; ties go to the colder one, None (hard) first."""
        if X_va.shape[0] > SOFT_TUNE_ROWS:
            pick = np.sort(rng.choice(X_va.shape[0], SOFT_TUNE_ROWS, replace=False))
            X_va, Y_val = X_va[torch.as_tensor(pick, device=X_va.device)], Y_val[pick]
        cache: dict = {}
        best_t, best = None, -np.inf
        for t in SPLIT_TEMPERATURES:
            value = self._val_score(self._routed_scores(X_va, t or None, cache), Y_val)
            if beats(value, best):
                best_t, best = t or None, value
        return best_t

    def _finish(self, leaves: list[_Leaf], sizes: list[int], d: int):
        """Public attributes from the fitted leaves (one unless partitioned)."""
        self._leaves = leaves
        weights = np.asarray(sizes, dtype=np.float64) / sum(sizes)
        Ms = []
        for leaf in leaves:
            M_full = torch.diag(leaf.M) if leaf.M.ndim == 1 else leaf.M
            Ms.append(M_full.double().cpu().numpy())
        self.leaf_M_ = Ms
        self.M_ = sum(w * M for w, M in zip(weights, Ms, strict=True))
        importances = np.clip(np.diag(self.M_), 0, None)
        total = importances.sum()
        self.feature_importances_ = importances / total if total > 0 else np.full(d, 1 / d)
        self.leaf_sizes_ = list(sizes)
        if len(leaves) == 1:
            (leaf,) = leaves
            self._M, self._coef, self._centers = leaf.M, leaf.coef, leaf.centers
            self.best_iter_ = leaf.best_iter
            self.val_scores_ = leaf.val_scores
            self.solve_methods_ = leaf.solve_methods
            self.solve_residuals_ = leaf.solve_residuals
            self.dual_coef_ = leaf.coef.double().cpu().numpy()
        else:
            # The refit (``_refit_params``) runs best_iter_ iterations on every leaf: the median.
            self.best_iter_ = int(np.median([leaf.best_iter for leaf in leaves]))
            self.val_scores_ = [leaf.val_scores for leaf in leaves]
            self.solve_methods_ = [m for leaf in leaves for m in leaf.solve_methods]
            self.solve_residuals_ = [r for leaf in leaves for r in leaf.solve_residuals]
            self.dual_coef_ = [leaf.coef.double().cpu().numpy() for leaf in leaves]
        self.fit_timings_ = {
            key: sum(leaf.timings[key] for leaf in leaves) for key in leaves[0].timings
        }
        self.solver_path_ = _describe_path(leaves)
        if self.split_temperature_ is not None:
            self.solver_path_ = f"{self.solver_path_[:-1]}; soft={self.split_temperature_:.3g})"
        return self

    def _decision(self, X) -> torch.Tensor:
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=[np.float64, np.float32])
        X_t = self._tensor(X)
        if self.tree_ is None:
            return self._scores(X_t, self._centers, self._coef, self._M)
        # In chunks: soft routing holds a (rows, leaves) weight matrix.
        return torch.cat(
            [
                self._routed_scores(X_t[start : start + _ROUTE_CHUNK], self.split_temperature_)
                for start in range(0, X_t.shape[0], _ROUTE_CHUNK)
            ]
        )

    def _routed_scores(self, X_t, temperature: float | None, cache: dict | None = None):
        """The tree's scores: each row's leaf (``temperature`` None), or the leaves' scores mixed
        by `partition.leaf_weights`. ``cache`` keeps each (leaf, row) score computed, for tuning."""
        dtype = functools.reduce(torch.promote_types, [leaf.coef.dtype for leaf in self._leaves])
        n_out = self._leaves[0].coef.shape[1]
        n_leaves = len(self._leaves)
        if temperature is None:
            W = torch.zeros(X_t.shape[0], n_leaves, dtype=dtype, device=X_t.device)
            W[torch.arange(X_t.shape[0], device=X_t.device), route(self.tree_, X_t)] = 1.0
        else:
            W = leaf_weights(self.tree_, X_t.to(dtype), temperature, n_leaves)
        out = torch.zeros(X_t.shape[0], n_out, dtype=dtype, device=X_t.device)
        for k in range(n_leaves):
            rows = torch.nonzero(W[:, k] > 0).squeeze(1)
            if rows.numel() > 0:
                out[rows] += W[rows, k, None] * self._leaf_scores(k, X_t, rows, out, cache)
        return out

    def _leaf_scores(self, k: int, X_t, rows, like: torch.Tensor, cache: dict | None):
        """Leaf ``k``'s scores on ``X_t[rows]`` (dtype and shape of ``like``'s rows); with
        ``cache`` (kept across calls on the same ``X_t``), each row's computed once."""
        leaf = self._leaves[k]
        if cache is None:
            return self._scores(X_t[rows], leaf.centers, leaf.coef, leaf.M).to(like.dtype)
        if k not in cache:
            done = torch.zeros(like.shape[0], dtype=torch.bool, device=like.device)
            cache[k] = (torch.zeros_like(like), done)
        values, done = cache[k]
        todo = rows[~done[rows]]
        if todo.numel() > 0:
            values[todo] = self._scores(X_t[todo], leaf.centers, leaf.coef, leaf.M).to(like.dtype)
            done[todo] = True
        return values[rows]

    def _val_score(self, out: torch.Tensor, Y_val) -> float:
        """Validation score of scores ``out`` (an iteration's, the tree's at a split temperature),
        larger is better: minus the MSE (regressor; ``Y_val`` as the fit's float64 targets)."""
        return -float(np.mean((out.double().cpu().numpy() - np.asarray(Y_val, np.float64)) ** 2))


def _keep_rows(K, *, kept, sample, keep, system):
    """`exact_solve`'s look at the kernel matrix: when built, and the AGOP sample's rows."""
    kept["built"] = time.perf_counter()
    if keep:
        kept["rows"] = K.clone() if sample is None else K[sample]
        if sample is None:
            system.cached = kept["rows"]


def _describe_path(leaves: list[_Leaf]) -> str:
    """What ran, for the results row: ``exact``, ``exact+refined``, ``pcg(steps=N)``, partitions."""
    methods = {m for leaf in leaves for m in leaf.solve_methods}
    steps = sum(s for leaf in leaves for s in leaf.solve_steps)
    if methods == {"pcg"}:
        what = f"pcg(steps={steps})"
    elif "pcg" in methods:
        what = f"cholesky+pcg(steps={steps})"
    else:
        what = "exact"
        if any("refined" in m or "float64" in m for m in methods):
            what += "+repaired"
    return what if len(leaves) == 1 else f"partitioned(leaves={len(leaves)}; {what})"


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
    agop_scale : {"max", "none"}, default="max"
        ``max`` divides the AGOP by its largest entry before the power (xRFM; it keeps the
        bandwidth meaningful across iterations); ``none`` uses the AGOP as it is (the authors' 2022
        UCI script, ``--protocol paper``).
    M_init : array-like of shape (n_features, n_features) or None, default=None
        The metric of iteration 0 (None: the identity). With ``iters=0`` the model is kernel ridge
        on this metric: the paper protocol's test step, which reuses the ``M`` selected on the
        selection split.
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
    solver : {"auto", "cholesky", "pcg"}, default="auto"
        How each kernel system is solved (`rfmbench.models.solvers`). ``cholesky``: exact and
        residual-checked (repaired by refinement or a float64 solve when the float32 one is
        unsound). ``pcg``: Nystrom-preconditioned conjugate gradients with matrix-free blocked
        kernel products, warm-started from the previous iteration's coefficients, to a relative
        residual of 1e-3. ``auto``: ``cholesky`` when its memory (``n^2 itemsize`` + blocks) fits
        the memory plan, else ``pcg``. Forcing ``cholesky`` beyond the plan raises ``MemoryError``
        naming the GiB needed.
    max_leaf_size : int, "auto" or None, default="auto"
        Partitioned RFM (`rfmbench.models.partition`, xRFM's tree): with more training rows than
        this, the rows are split at the median of their projection on the top AGOP eigenvector of
        a kernel ridge fit on a subsample, recursively, and one RFM is fitted per leaf (each with
        its own validation split). ``auto``: the most rows an exact fit holds in the memory plan,
        at most `AUTO_LEAF_ROWS` of the device (a time target: 5,000 on the CPU, 60,000 on CUDA).
        ``None``: never partition. At least 3, so that every leaf (half of more than 3 rows) has
        the 2 rows a validation split needs.
    leaf_overlap : float in [0, 1], default=0.0
        Partitioned RFM: each leaf also trains on ``leaf_overlap`` times its row count of the
        rows nearest its region from across its split boundaries (`partition.overlapping_rows`),
        so that a leaf's model does not extrapolate where soft routing mixes it with its
        neighbour. A leaf then solves up to ``(1 + leaf_overlap) * max_leaf_size`` rows (the
        ``auto`` leaf size allows for it in memory). In ``benchmarks/rfm_scale.py`` 0.25 took
        the classification error at n = 20,000 (4 leaves) from 1.08x the exact RFM's to 1.00x
        for 1.9x the fit time, but not the regression error (1.06x -> 1.05x), nor either at
        n = 100,000 (1.4x the time); hence off by default. xRFM's ``overlap_fraction``
        (default 0) is the same idea, taken at each split rather than per leaf.
    memory_gb : float or None, default=None
        The memory plan's budget in GiB (`rfmbench.models.memory`); None: 80% of what the device
        has available when ``fit`` starts (MemAvailable on the CPU, at most a parallel run's
        share per worker; free and torch-cached memory on CUDA).
    nystrom_rank : int, default=1000
        Landmark rows of the ``pcg`` preconditioner (memory ``n * nystrom_rank * itemsize``).
    block_memory_mb : float, default=512
        Memory budget beyond the kernel matrix. Half of it bounds the blocked temporaries (AGOP
        blocks, see `rfmbench.models.kernels.Kernel.agop_bytes_per_row`; kernel rows at prediction); the
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
    split_temperature : "auto" or float >= 0, default="auto"
        Partitioned RFM's routing at prediction (`partition.leaf_weights`, xRFM's soft routing):
        0 sends each row to its leaf; ``t > 0`` mixes the leaves near a split boundary by sigmoid
        weights of ``(projection - threshold) / (t * IQR)``. ``auto``: the validation rows are
        carved before the split (unless ``X_val`` is given), routed to the leaves to select each
        leaf's iteration, and all together choose ``t`` among `partition.SPLIT_TEMPERATURES`
        (xRFM 0.4.5's: 0 and 20 values from 0.025 to 4.5) by the validation score, ties to the
        colder; without validation rows, 0. A fixed ``t`` keeps each leaf's own validation split.

    Attributes
    ----------
    M_ : ndarray of shape (n_features, n_features)
        The selected metric (a diagonal matrix when ``diag``).
    feature_importances_ : ndarray of shape (n_features,)
        ``diag(M_)`` normalised to sum to 1.
    best_iter_ : int
        The selected iteration (0 = ``M = I``); partitioned: the median over the leaves (what
        the benchmark's refit runs on every leaf).
    val_scores_ : list of float
        Validation score of each iteration run, higher is better: the negative mean squared error
        (NaN when there is no validation data, i.e. ``iters=0`` without ``X_val``); partitioned:
        one such list per leaf.
    monitor_scores_ : list of float or None
        With ``fit(..., monitor=(X_mon, y_mon))``: the score of each iteration on those rows, as
        ``val_scores_`` (None without a monitor, or when partitioned); ``monitor_seconds_`` the
        time it took, included in the fit's.
    solve_methods_ : list of str
        How each iteration's linear system was solved (``cholesky``, ``cholesky+jitter=...``,
        ``lstsq``, ``+refined`` / ``cholesky-float64`` when the residual check repaired it,
        ``pcg``); leaf after leaf when partitioned.
    solve_residuals_ : list of float
        The relative residual ``||Y - (K + reg I) alpha|| / ||Y||`` of each solve, as
        ``solve_methods_``.
    solver_path_ : str
        What ran, for a results row: ``exact``, ``exact+repaired``, ``pcg(steps=N)``, or
        ``partitioned(leaves=L; ...)``, ending ``; soft=T)`` with soft routing.
    tree_ : partition.Node or None
        The partition (None: one RFM on all rows).
    split_temperature_ : float or None
        The soft routing's temperature (None: each row to its leaf, or no partition); the
        benchmark's refit gets it as ``split_temperature`` (``refit_params``).
    leaf_sizes_, leaf_M_ : list
        Training rows (with the overlap) and metric of each leaf (one entry unless partitioned).
        ``M_`` is the average of ``leaf_M_`` weighted by leaf size, ``feature_importances_`` its
        diagonal.
    memory_plan_ : memory.MemoryPlan
    dual_coef_ : ndarray of shape (n_train, n_outputs), or a list of them (one per leaf)
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
    def fit(self, X, y, X_val=None, y_val=None, monitor=None):
        """Fit on ``(X, y)``; select the iteration on ``(X_val, y_val)`` or a carved split.

        ``monitor=(X_mon, y_mon)``: rows scored at every iteration as the validation rows are, into
        ``monitor_scores_``, never used to select anything (a test set's learning curve).
        """
        X, y = validate_data(
            self, X, y, dtype=[np.float64, np.float32], multi_output=True, y_numeric=True
        )
        self._y_1d = y.ndim == 1
        Y = np.asarray(y, dtype=np.float64).reshape(len(y), -1)
        Y_val = None
        if X_val is not None or y_val is not None:
            X_val, Y_val = self._check_val(X_val, y_val, Y.shape[1])

        score = self._val_score
        if monitor is not None:  # targets as Y: one column per output
            monitor = (
                monitor[0],
                np.asarray(monitor[1], dtype=np.float64).reshape(len(monitor[1]), -1),
            )
        self._set_monitor(monitor, score)
        try:
            return self._fit(X, Y, X_val, Y_val, None, score)
        finally:
            self._monitor = None

    def _check_val(self, X_val, y_val, n_outputs):
        X_val = self._checked_val_rows(X_val, y_val)
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
    M_, feature_importances_, best_iter_, val_scores_, monitor_scores_, solve_methods_,
    dual_coef_, fit_timings_, device_, n_features_in_ :
        As in `RFMRegressor`; ``val_scores_`` and ``monitor_scores_`` hold accuracies.
    temperature_ : float or None
        The ``T`` of ``predict_proba``: ``temperature`` if given, else fitted on the validation
        rows; None when there were none (clipped scores).
    """

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, X_val=None, y_val=None, monitor=None):
        """Fit on ``(X, y)``; select the iteration on ``(X_val, y_val)`` or a stratified split.

        ``monitor=(X_mon, y_mon)`` (labels of ``y``; others count as errors): the accuracy of
        every iteration on those rows, into ``monitor_scores_``, never used to select anything.
        """
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
            return self._val_score(out, labels_va)

        classes = self.classes_

        def accuracy(out, y_mon):
            return float(np.mean(classes[out.argmax(dim=1).cpu().numpy()] == y_mon))

        self._set_monitor(monitor, accuracy)
        try:
            self._fit(X, Y, X_val, val_labels, labels, score)
        finally:
            self._monitor = None
        chosen = self._chosen_val_scores(val_scores)
        if self.temperature is not None:
            self.temperature_ = float(self.temperature)
        elif chosen is not None:
            self.temperature_ = fit_temperature(*chosen)
        else:
            self.temperature_ = None
        return self

    def _chosen_val_scores(self, val_scores: list) -> tuple[np.ndarray, np.ndarray] | None:
        """Each leaf's validation scores at its own selected iteration, concatenated (one leaf:
        the fit's), with their labels; None without validation rows.

        ``val_scores`` holds the scorer's calls in order: leaf by leaf, one per iteration of a
        leaf that had validation rows (its ``val_scores`` entries are then finite).
        """
        chosen, start = [], 0
        for leaf in self._leaves:
            if not any(np.isfinite(v) for v in leaf.val_scores):
                continue  # no validation rows: the scorer was never called for this leaf
            chosen.append(val_scores[start + leaf.best_iter])
            start += len(leaf.val_scores)
        if not chosen:
            return None
        return np.concatenate([c[0] for c in chosen]), np.concatenate([c[1] for c in chosen])

    def _val_score(self, out: torch.Tensor, Y_val) -> float:
        """Validation accuracy of scores ``out`` (``Y_val``: class indices)."""
        return float(np.mean(out.argmax(dim=1).cpu().numpy() == np.asarray(Y_val)))

    def _check_val(self, X_val, y_val):
        X_val = self._checked_val_rows(X_val, y_val)
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


def _selection_state(model: _BaseRFM) -> dict:
    """The paper protocol's test step: kernel ridge on the selected M, no new iterations."""
    return {"M_init": model.M_.tolist(), "iters": 0, "val_fraction": 0.0}


def partition_refit_params(model: _BaseRFM) -> dict:
    """The refit keeps the form of the fits that tuning scored (RFM and kernel ridge).

    An unpartitioned fit gives ``max_leaf_size=None``: the refit has more rows than an inner
    fold's training part (half as many again with 3 folds), which could tip the ``auto`` leaf size
    into a tree of leaves routed without a tuned temperature, a model no inner fold scored (6-12%
    worse test MSE where measured). A partitioned fit gives its tuned split temperature.
    """
    if getattr(model, "tree_", None) is None:
        return {"max_leaf_size": None}
    if model.split_temperature == "auto":
        return {"split_temperature": model.split_temperature_ or 0.0}  # 0: hard routing won
    return {}


def _refit_params(model: _BaseRFM) -> dict:
    """The iteration chosen on validation; the refit runs that many on all rows and keeps the last.

    A classifier's refit also gets the temperature fitted on the validation rows (it has none);
    either gets the partition's form (`partition_refit_params`).
    """
    params = {"iters": int(model.best_iter_), "val_fraction": 0.0, **partition_refit_params(model)}
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
    # The authors' 2022 UCI script: ridge x row normalisation, Laplace bandwidth 10, full M = the
    # AGOP as it is (not divided by its maximum), iterations 0..4, float64 solves.
    paper_space={
        "reg": [10.0, 1.0, 0.1, 0.01, 0.001],
        "row_norm": [True, False],
        "bandwidth": [10.0],
        "diag": [False],
        "iters": [4],
        "agop_scale": ["none"],
        "max_leaf_size": [None],  # one exact system, as the script; memory decides the rest
        "dtype": ["float64"],
    },
    selection_state=_selection_state,
)
