"""Feature-recovery scores: how much of a model's learned feature matrix lies where the truth is.

The tasks of the ``features`` suite know which features matter (``Task.truth``). A model that
exposes features gives a d x d positive semi-definite matrix over its input columns: RFM its metric
``M_``, a network its first layer's ``W^T W``, a forest ``diag(feature_importances_)``. Pure
functions of arrays, and for a network `nfa_correlation` (the Neural Feature Ansatz: its ``W^T W``
against the AGOP of the trained network, by autograd); `feature_scores` maps a fitted model and
its task to the results row's columns.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

NFA_ROWS = 2000  # training rows the network's AGOP is taken over (evenly spaced), at most


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
    """R² of B against its mean over the entries sharing ``key`` (1 = constant on each class).

    A constant B has no structure to explain: 0.
    """
    centred = B - B.mean()
    denom = float((centred**2).sum())
    if denom == 0:
        return 0.0
    means = np.bincount(key.ravel(), weights=B.ravel()) / np.bincount(key.ravel())
    residual = B - means[key]
    return 1.0 - float((residual**2).sum()) / denom


def circulant_score(M: np.ndarray, operation: str, p: int) -> float:
    """How close M is to the block structure of the grokking paper, in [.., 1] (1 = exactly).

    M is 2p x 2p over the one-hot codes of the operands a and b. The AGOP sums over the outputs,
    so it is unchanged when they are permuted: for a + b the shift (a + t, b + t) only permutes the
    classes (k -> k + 2t), so every block ``M[i, j]`` depends on i - j only (circulant); for a - b
    the shift (a + t, b - t) does (k -> k + 2t), so the cross blocks depend on i + j
    (anti-circulant); for a * b the addition's structure holds for the discrete logarithms
    (residue 0 dropped, see `discrete_log_order`). (As RFM's
    grokked M on ``modadd-61``: cross blocks constant along their diagonals.) The score is the mean over
    the two cross blocks ``M_ab``, ``M_ba`` of the R² of each against its mean over its
    (anti-)diagonals mod p; a constant cross block scores 0. Only the cross blocks count: the
    diagonal blocks of M = I (nothing learned) are circulant too, its cross blocks are 0.
    """
    M = np.asarray(M, dtype=np.float64)
    index = np.arange(p)
    if operation == "mul":
        index = discrete_log_order(p)
    n = len(index)
    blocks = {
        "ab": M[np.ix_(index, p + index)],
        "ba": M[np.ix_(p + index, index)],
    }
    i, j = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    cross = (i + j) % n if operation == "sub" else (i - j) % n
    return float(np.mean([_fit(blocks[name], cross) for name in ("ab", "ba")]))


def feature_matrix(model: Any) -> np.ndarray | None:
    """The d x d feature matrix a fitted model exposes, or None (see the module docstring).

    Kernel ridge (an RFM that never updates M) learns no features: None.
    """
    if getattr(model, "M_", None) is not None:
        learns = type(model).__name__.startswith("RFM")
        return np.asarray(model.M_, dtype=np.float64) if learns else None
    networks = _networks(model)
    if networks:  # an ensemble's: the mean of its networks' first-layer W^T W
        firsts = [weights[0].detach().double().cpu().numpy() for weights, _ in networks]
        return np.mean([W.T @ W for W in firsts], axis=0)
    importances = getattr(model, "feature_importances_", None)
    if importances is not None:
        return np.diag(np.asarray(importances, dtype=np.float64))
    return None


def modular_order(operation: str, p: int) -> np.ndarray:
    """Rows / columns of a modular task's 2p x 2p M in the order that shows its circulant blocks.

    The one-hot codes of a, then of b; for ``mul`` each block drops residue 0 (its own row) and
    lists 1..p-1 by discrete logarithm (`discrete_log_order`): ``[0, g^0, g^1, ..]`` then the same
    shifted by p. Addition and subtraction keep the natural order.
    """
    block = np.arange(p)
    if operation == "mul":
        block = np.concatenate([[0], discrete_log_order(p)])
    return np.concatenate([block, p + block])


def correlation(A: np.ndarray, B: np.ndarray) -> float:
    """Pearson correlation of the entries of two matrices (NaN when one is constant)."""
    a = np.asarray(A, dtype=np.float64).ravel()
    b = np.asarray(B, dtype=np.float64).ravel()
    a, b = a - a.mean(), b - b.mean()
    denom = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(a @ b) / denom if denom > 0 else float("nan")


def network_agop(weights: list, biases: list, X: np.ndarray) -> np.ndarray:
    """AGOP ``(1 / n) sum_i sum_k grad f_k(x_i) grad f_k(x_i)^T`` of a ReLU network, by autograd.

    ``f(x) = W_L relu(.. relu(W_1 x + b_1) ..) + b_L`` (torch tensors ``W_l`` of shape
    (out, in)); its raw outputs (logits for a classifier), over the rows of ``X``, in float64.
    """
    import torch

    Ws = [torch.as_tensor(w).detach().cpu().double() for w in weights]
    bs = [torch.as_tensor(b).detach().cpu().double() for b in biases]
    x = torch.tensor(np.asarray(X, dtype=np.float64), requires_grad=True)
    out = _relu_network(x, Ws, bs)
    G = torch.zeros(x.shape[1], x.shape[1], dtype=torch.float64)
    for k in range(out.shape[1]):  # rows are independent: the gradient of the sum is per row
        (grad,) = torch.autograd.grad(out[:, k].sum(), x, retain_graph=k < out.shape[1] - 1)
        G += grad.mT @ grad
    return (G / x.shape[0]).numpy()


def _relu_network(x, weights, biases):
    import torch

    for i, (w, b) in enumerate(zip(weights, biases, strict=True)):
        x = torch.nn.functional.linear(x, w, b)
        if i < len(weights) - 1:
            x = torch.relu(x)
    return x


def _networks(model: Any) -> list[tuple[list, list]]:
    """A fitted MLP's ReLU networks as (weights, biases) pairs: its ensemble's ``members_``, else
    its one ``weights_`` / ``biases_``; empty for a model without them."""
    members = getattr(model, "members_", None)
    if members:
        return list(members)
    weights, biases = getattr(model, "weights_", None), getattr(model, "biases_", None)
    if not weights or biases is None or len(weights) != len(biases):
        return []
    return [(weights, biases)]


def nfa_correlation(model: Any, X: np.ndarray) -> float | None:
    """The Neural Feature Ansatz of a fitted MLP: ``correlation(W_1^T W_1, AGOP)``, or None.

    Radhakrishnan et al. (Science 2024): a trained network's first-layer ``W^T W`` is proportional
    to the AGOP of the network with respect to its inputs. The AGOP is taken over at most
    `NFA_ROWS` evenly spaced rows of ``X`` (the training rows). Reads the model's networks
    (``members_``, else ``weights_`` and ``biases_``: ReLU layers, as `rfmbench.models.mlp`); an
    ensemble's value is the mean of its networks' correlations (the ansatz is about one trained
    network). None for a model without them, or when those networks do not reproduce the model's
    outputs (its architecture is another one).
    """
    networks = _networks(model)
    if not networks:
        return None
    X = np.asarray(X, dtype=np.float64)
    X = X[np.linspace(0, len(X) - 1, min(len(X), NFA_ROWS)).astype(int)] if len(X) else X
    if not _reproduces(model, networks, X[:50]):
        logger.warning("%s: its weights_ are not a plain ReLU network; no NFA correlation", model)
        return None
    values = []
    for weights, biases in networks:
        W1 = np.asarray(weights[0].detach().cpu().double().numpy())
        values.append(correlation(W1.T @ W1, network_agop(weights, biases, X)))
    return float(np.mean(values))


def _reproduces(model: Any, networks: list[tuple[list, list]], X: np.ndarray) -> bool:
    """Whether the ReLU networks (averaged: softmaxes, or outputs) give the model's predictions
    on ``X``."""
    import torch

    outs = []
    with torch.no_grad():
        for weights, biases in networks:
            Ws = [torch.as_tensor(w).detach().cpu().double() for w in weights]
            bs = [torch.as_tensor(b).detach().cpu().double() for b in biases]
            outs.append(_relu_network(torch.tensor(X), Ws, bs).numpy())
    if hasattr(model, "predict_proba"):
        expected, got = model.predict_proba(X), np.mean([_softmax(o) for o in outs], axis=0)
    elif hasattr(model, "y_scale_") and hasattr(model, "y_mean_"):
        out = np.mean(outs, axis=0)
        expected, got = model.predict(X), out[:, 0] * model.y_scale_ + model.y_mean_
    else:
        return True  # nothing to check against
    expected = np.asarray(expected, dtype=np.float64)
    return expected.shape == got.shape and bool(np.allclose(expected, got, rtol=1e-3, atol=1e-4))


def _softmax(out: np.ndarray) -> np.ndarray:
    e = np.exp(out - out.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def feature_scores(
    model: Any, truth: FeatureTruth | None, scales: np.ndarray, X_train: np.ndarray | None = None
) -> dict[str, float]:
    """The results row's ``feature_recovery`` (and ``nfa_correlation``) on a task with known features.

    ``scales`` are the per-column scales the preprocessing divided the raw features by: a relevant
    direction u of the raw features is ``scales * u`` in the model's input coordinates.
    ``X_train``: the model's training rows, for a network's `nfa_correlation`.
    """
    if truth is None:
        return {}
    scores = {}
    if X_train is not None:
        nfa = nfa_correlation(model, X_train)
        if nfa is not None:
            scores["nfa_correlation"] = nfa
    M = feature_matrix(model)
    if M is None:
        return scores
    if truth.modular is not None:
        operation, p = truth.modular
        return {**scores, "feature_recovery": circulant_score(M, operation, p)}
    basis = np.asarray(scales)[:, None] * truth.basis
    return {**scores, "feature_recovery": subspace_share(M, basis)}
