"""Feature-recovery scores: how much of a model's learned feature matrix lies where the truth is.

The tasks of the ``features`` suite know which features matter (``Task.truth``). A model that
exposes features gives a d x d positive semi-definite matrix over its input columns: RFM its metric
``M_``, a network its first layer's ``W^T W``, a forest ``diag(feature_importances_)``. Pure
functions of arrays; `feature_scores` maps a fitted model and its task to the results row's columns.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class FeatureTruth:
    """What a generated task's target depends on.

    ``basis``: columns spanning the relevant directions of the raw numeric features (d x r), or
    ``modular``: the operation (``add``, ``sub``, ``mul``) and modulus ``p`` of a task whose 2p
    inputs are the one-hot codes of its two operands.
    """

    basis: np.ndarray | None = None
    modular: tuple[str, int] | None = None


def subspace_share(M: np.ndarray, basis: np.ndarray) -> float:
    """``tr(P M) / tr(M)``: the share of M's trace in the span of ``basis`` (P its projector).

    1 when M lives in the subspace (e.g. M = P); r / d for an isotropic M (r = its dimension).
    """
    Q, _ = np.linalg.qr(np.asarray(basis, dtype=np.float64))
    M = np.asarray(M, dtype=np.float64)
    total = float(np.trace(M))
    if total <= 0:
        return float("nan")
    return float(np.trace(Q.T @ M @ Q)) / total


def discrete_log_order(p: int) -> np.ndarray:
    """1..p-1 ordered by their discrete logarithm base the smallest generator of Z_p^* (p prime).

    Multiplication of non-zero residues is addition of their logarithms, so in this order the
    blocks of a multiplication task's M become circulant like those of an addition task.
    """
    for g in range(2, p):
        order = [1]
        for _ in range(p - 2):
            order.append(order[-1] * g % p)
        if len(set(order)) == p - 1:
            return np.array(order)
    return np.arange(1, p)  # p = 2: the only non-zero residue


def _fit(B: np.ndarray, key: np.ndarray) -> float:
    """R² of B against its mean over the entries sharing ``key`` (1 = constant on each class)."""
    centred = B - B.mean()
    denom = float((centred**2).sum())
    if denom == 0:
        return 1.0
    means = np.bincount(key.ravel(), weights=B.ravel()) / np.bincount(key.ravel())
    residual = B - means[key]
    return 1.0 - float((residual**2).sum()) / denom


def circulant_score(M: np.ndarray, operation: str, p: int) -> float:
    """How close M is to the block structure of the grokking paper, in [.., 1] (1 = exactly).

    M is 2p x 2p over the one-hot codes of the operands a and b. Over all pairs, f(a, b) = g(a + b)
    is unchanged by (a, b) -> (a + t, b - t), so an AGOP has ``M_aa[i, j]`` and ``M_bb[i, j]``
    depending on i - j only (circulant) and ``M_ab[i, j]`` on i + j (anti-circulant); for a - b the
    shift (a + t, b + t) makes all four blocks circulant; for a * b the same holds for the
    discrete logarithms (residue 0 dropped, see `discrete_log_order`). The score is the mean over
    the four blocks of the R² of each block against its mean over its (anti-)diagonals mod p.
    """
    M = np.asarray(M, dtype=np.float64)
    index = np.arange(p)
    if operation == "mul":
        index = discrete_log_order(p)
    n = len(index)
    blocks = {
        "aa": M[np.ix_(index, index)],
        "bb": M[np.ix_(p + index, p + index)],
        "ab": M[np.ix_(index, p + index)],
        "ba": M[np.ix_(p + index, index)],
    }
    i, j = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    diagonal, anti = (i - j) % n, (i + j) % n
    cross = diagonal if operation == "sub" else anti
    keys = {"aa": diagonal, "bb": diagonal, "ab": cross, "ba": cross}
    return float(np.mean([_fit(blocks[name], keys[name]) for name in blocks]))


def feature_matrix(model: Any) -> np.ndarray | None:
    """The d x d feature matrix a fitted model exposes, or None (see the module docstring).

    Kernel ridge (an RFM that never updates M) learns no features: None.
    """
    if getattr(model, "M_", None) is not None:
        learns = type(model).__name__.startswith("RFM")
        return np.asarray(model.M_, dtype=np.float64) if learns else None
    weights = getattr(model, "weights_", None)
    if weights:
        W = weights[0].detach().double().cpu().numpy()
        return W.T @ W
    importances = getattr(model, "feature_importances_", None)
    if importances is not None:
        return np.diag(np.asarray(importances, dtype=np.float64))
    return None


def feature_scores(model: Any, truth: FeatureTruth | None, scales: np.ndarray) -> dict[str, float]:
    """The results row's ``feature_recovery`` for a fitted model of a task with known features.

    ``scales`` are the per-column scales the preprocessing divided the raw features by: a relevant
    direction u of the raw features is ``scales * u`` in the model's input coordinates.
    """
    if truth is None:
        return {}
    M = feature_matrix(model)
    if M is None:
        return {}
    if truth.modular is not None:
        operation, p = truth.modular
        return {"feature_recovery": circulant_score(M, operation, p)}
    basis = np.asarray(scales)[:, None] * truth.basis
    return {"feature_recovery": subspace_share(M, basis)}
