"""The ``features`` source: generated tasks whose relevant features are known (``Task.truth``).

The phenomena of the RFM papers as a benchmark, offline and seeded: modular arithmetic (the
grokking paper, Mallinar et al. 2024: all p^2 pairs (a, b), inputs the two one-hot codes, target
a + b, a - b or a * b mod p, half of the pairs for training), low-rank targets y = g(U x) with U of
rank 2 in 20 dimensions, a sparse parity and a junta on 3 of 20 coordinates; in both task kinds.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from rfmbench.errors import unknown
from rfmbench.features import FeatureTruth
from rfmbench.sources.base import DatasetRef, LoadContext
from rfmbench.tasks import Task, TaskKind, kfold_splits

P = 61  # the grokking paper's modulus
D, N = 20, 1000  # dimension and rows of the low-rank, parity and junta tasks
OPERATIONS = {"add": np.add, "sub": np.subtract, "mul": np.multiply}


def modular(operation: str, p: int = P) -> tuple[pd.DataFrame, np.ndarray, FeatureTruth]:
    a, b = (grid.ravel() for grid in np.meshgrid(np.arange(p), np.arange(p), indexing="ij"))
    X = np.hstack([np.eye(p)[a], np.eye(p)[b]])
    columns = [f"a{i}" for i in range(p)] + [f"b{i}" for i in range(p)]
    y = OPERATIONS[operation](a, b) % p
    return pd.DataFrame(X, columns=columns), y, FeatureTruth(modular=(operation, p))


def _gaussian(seed: int) -> tuple[np.random.Generator, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng, rng.normal(size=(N, D))


def lowrank(kind: TaskKind, seed: int = 1) -> tuple[pd.DataFrame, np.ndarray, FeatureTruth]:
    """y = (u1 . x)(u2 . x) (+ noise), or its sign: two random orthonormal directions of 20."""
    rng, X = _gaussian(seed)
    U, _ = np.linalg.qr(rng.normal(size=(D, 2)))
    product = (X @ U[:, 0]) * (X @ U[:, 1])
    y = (
        (product > 0).astype(int)
        if kind == "classification"
        else product + 0.1 * rng.normal(size=N)
    )
    return _frame(X), y, FeatureTruth(basis=U)


def parity(seed: int = 2) -> tuple[pd.DataFrame, np.ndarray, FeatureTruth]:
    """The parity of 3 of 20 random signs (classification)."""
    rng = np.random.default_rng(seed)
    X = rng.choice([-1.0, 1.0], size=(N, D))
    relevant = rng.choice(D, size=3, replace=False)
    y = (X[:, relevant].prod(axis=1) > 0).astype(int)
    return _frame(X), y, FeatureTruth(basis=np.eye(D)[:, relevant])


def junta(seed: int = 3) -> tuple[pd.DataFrame, np.ndarray, FeatureTruth]:
    """y = x_i x_j + sin(2 x_k) + noise on 3 of 20 Gaussian coordinates (regression)."""
    rng, X = _gaussian(seed)
    i, j, k = rng.choice(D, size=3, replace=False)
    y = X[:, i] * X[:, j] + np.sin(2 * X[:, k]) + 0.1 * rng.normal(size=N)
    return _frame(X), y, FeatureTruth(basis=np.eye(D)[:, [i, j, k]])


def _frame(X: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame(X, columns=[f"x{i + 1}" for i in range(X.shape[1])])


# The modular tasks' (operation, modulus), also for figures that order M by it.
MODULAR: dict[str, tuple[str, int]] = {f"mod{op}-{P}": (op, P) for op in OPERATIONS}
_SYMBOL = {"add": "+", "sub": "-", "mul": "*"}

TASKS: dict[str, tuple[Callable[[], tuple], TaskKind, str]] = {
    **{
        name: (
            lambda op=op, p=p: modular(op, p),
            "classification",
            f"a {_SYMBOL[op]} b mod {p}, one-hot a and b",
        )
        for name, (op, p) in MODULAR.items()
    },
    "lowrank-clf": (lambda: lowrank("classification"), "classification", "sign((u1.x)(u2.x))"),
    "lowrank-reg": (lambda: lowrank("regression"), "regression", "(u1.x)(u2.x) + noise"),
    "parity-3of20": (parity, "classification", "parity of 3 of 20 signs"),
    "junta-3of20": (junta, "regression", "x_i x_j + sin(2 x_k) + noise, 3 of 20"),
}


def load(ref: DatasetRef, ctx: LoadContext) -> Task:
    """One generated task; modular tasks train on half of the pairs (2 folds, whatever --folds)."""
    if ref.name not in TASKS:
        raise unknown("features dataset", ref.name, list(TASKS))
    make, kind, description = TASKS[ref.name]
    X, y, truth = make()
    if truth.modular is not None:
        # Train on one half of the pairs, test on the other: the grokking paper's split.
        splits = kfold_splits(np.zeros(len(y)), "regression", 2, ctx.seed)
    else:
        splits = kfold_splits(y, kind, ctx.folds, ctx.seed)
    return Task(
        name=ref.name,
        kind=kind,
        X=X,
        y=y,
        categorical=(),
        splits=splits,
        source=f"generated (features suite): {description}",
        truth=truth,
    )
