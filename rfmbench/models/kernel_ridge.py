"""Kernel ridge regression and classification: RFM with ``M`` fixed at the identity (``iters=0``).

`KernelRidgeRegressor` and `KernelRidgeClassifier` are `RFMRegressor` / `RFMClassifier` with the AGOP
iterations switched off, so the baseline and RFM share every line of kernel, solve and prediction
code; the difference between them in a benchmark is the learned metric alone. With ``iters=0`` there
is one candidate, so no validation split is carved: the system is solved on every training row.
"""

from __future__ import annotations

import scipy.stats
import torch

from rfmbench.models.rfm import (
    LEAF_OVERLAP,
    RFMClassifier,
    RFMRegressor,
    _BaseRFM,
    partition_refit_params,
)
from rfmbench.models.spec import ModelSpec

_KR_PARAMS = (
    "kernel",
    "bandwidth",
    "exponent",
    "reg",
    "row_norm",
    "solver",
    "max_leaf_size",
    "leaf_overlap",
    "memory_gb",
    "nystrom_rank",
    "block_memory_mb",
    "dtype",
    "device",
)


class _KernelRidgeMixin:
    """Freezes the RFM-only parameters: no AGOP iteration, so ``M`` stays the identity."""

    # Class attributes, not parameters: get_params / clone see only the kernel ridge parameters.
    iters = 0
    diag = False
    agop_power = 1.0
    agop_scale = "max"
    M_init = None
    agop_samples = 1
    center_grads = False
    val_fraction = 0.2
    random_state = 0  # seeds the partition's split subsamples and the Nystrom landmarks only
    temperature = None  # no validation rows to fit it on: probabilities as clipped scores
    split_temperature = 0.0  # nor to tune a partition's soft routing on: each row to its leaf

    _parameter_constraints: dict = {k: _BaseRFM._parameter_constraints[k] for k in _KR_PARAMS}

    def __init__(
        self,
        *,
        kernel: str = "laplace",
        bandwidth: float = 10.0,
        exponent: float = 1.0,
        reg: float = 1e-3,
        row_norm: bool = False,
        solver: str = "auto",
        max_leaf_size: int | str | None = "auto",
        leaf_overlap: float = LEAF_OVERLAP,
        memory_gb: float | None = None,
        nystrom_rank: int = 1000,
        block_memory_mb: float = 512.0,
        dtype: str = "float32",
        device: str | torch.device = "auto",
    ):
        self.kernel = kernel
        self.bandwidth = bandwidth
        self.exponent = exponent
        self.reg = reg
        self.row_norm = row_norm
        self.solver = solver
        self.max_leaf_size = max_leaf_size
        self.leaf_overlap = leaf_overlap
        self.memory_gb = memory_gb
        self.nystrom_rank = nystrom_rank
        self.block_memory_mb = block_memory_mb
        self.dtype = dtype
        self.device = device


class KernelRidgeRegressor(_KernelRidgeMixin, RFMRegressor):
    """Kernel ridge regression, ``(K + reg I) alpha = y`` solved by Cholesky (or iteratively).

    `RFMRegressor` with ``iters=0`` (``M = I``); the parameters are its kernel, solve and device
    parameters (see there). ``fit(X, y, X_val=None, y_val=None)`` uses every row of ``X`` for the
    solve; validation data, if given, is only scored (``val_scores_``).
    """


class KernelRidgeClassifier(_KernelRidgeMixin, RFMClassifier):
    """Kernel ridge classification: ridge regression on one-hot labels, class by argmax.

    `RFMClassifier` with ``iters=0`` (``M = I``); ``predict_proba`` maps scores as there.
    """


def _build(kind: str, params: dict, *, device: str, seed: int, n_jobs: int):
    """The registry's builder (deterministic: ``seed`` and ``n_jobs`` unused)."""
    del seed, n_jobs
    cls = KernelRidgeClassifier if kind == "classification" else KernelRidgeRegressor
    return cls(device=device, **params)


SPEC = ModelSpec(
    name="kernel-ridge",
    summary="Kernel ridge regression / one-hot classification (RFM with M = I)",
    build=_build,
    space={
        "kernel": ["laplace", "gaussian"],
        "bandwidth": scipy.stats.loguniform(0.5, 200),
        "reg": scipy.stats.loguniform(1e-6, 10),
    },
    defaults={"kernel": "laplace", "bandwidth": 10.0, "reg": 1e-3},
    uses_device=True,
    # An unpartitioned inner fit keeps the refit unpartitioned (see `partition_refit_params`).
    refit_params=partition_refit_params,
    precision_param="dtype",
    # The RFM paper's UCI grid without the iterations: ridge x row normalisation, bandwidth 10,
    # one exact system as rfm's paper grid (the comparison is then the learned metric alone).
    paper_space={
        "reg": [10.0, 1.0, 0.1, 0.01, 0.001],
        "row_norm": [True, False],
        "bandwidth": [10.0],
        "kernel": ["laplace"],
        "max_leaf_size": [None],
    },
)
