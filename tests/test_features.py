"""Feature-recovery scores on cases with known answers, and the features suite end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from rfmbench.cli import app
from rfmbench.features import (
    circulant_score,
    correlation,
    discrete_log_order,
    modular_order,
    network_agop,
    nfa_correlation,
    subspace_share,
)
from rfmbench.results import read_run
from rfmbench.sources.base import DatasetRef, LoadContext
from rfmbench.sources.features import TASKS, load


def random_basis(d: int, r: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(d, r))


@pytest.mark.parametrize(("d", "r"), [(20, 2), (10, 3), (5, 5)])
def test_subspace_share_is_1_for_the_projector_and_r_over_d_for_isotropic(d, r) -> None:
    basis = random_basis(d, r)
    Q, _ = np.linalg.qr(basis)
    assert subspace_share(Q @ Q.T, basis) == pytest.approx(1.0)
    assert subspace_share(3.0 * np.eye(d), basis) == pytest.approx(r / d)
    complement = np.eye(d) - Q @ Q.T
    if r < d:
        assert subspace_share(complement, basis) == pytest.approx(0.0, abs=1e-12)


def test_discrete_log_order_lists_powers_of_a_generator() -> None:
    assert discrete_log_order(7).tolist() == [1, 3, 2, 6, 4, 5]  # 3 generates Z_7^*
    order = discrete_log_order(61)
    assert sorted(order.tolist()) == list(range(1, 61))


def structured(operation: str, p: int, seed: int = 0) -> np.ndarray:
    """A 2p x 2p matrix with exactly the block structure `circulant_score` describes."""
    rng = np.random.default_rng(seed)
    index = discrete_log_order(p) if operation == "mul" else np.arange(p)
    n = len(index)
    i, j = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    M = np.zeros((2 * p, 2 * p))
    c = rng.normal(size=(4, n))
    cross = (i + j) % n if operation == "sub" else (i - j) % n
    M[np.ix_(index, index)] = c[0][(i - j) % n]
    M[np.ix_(p + index, p + index)] = c[1][(i - j) % n]
    M[np.ix_(index, p + index)] = c[2][cross]
    M[np.ix_(p + index, index)] = c[3][cross]
    return M


@pytest.mark.parametrize("operation", ["add", "sub", "mul"])
def test_circulant_score_is_1_on_the_structure_and_low_on_noise(operation) -> None:
    p = 11
    assert circulant_score(structured(operation, p), operation, p) == pytest.approx(1.0)
    noise = np.random.default_rng(1).normal(size=(2 * p, 2 * p))
    assert circulant_score(noise, operation, p) < 0.3


@pytest.mark.parametrize("name", list(TASKS))
def test_every_features_task_loads_with_its_truth(name) -> None:
    task = load(DatasetRef(name), LoadContext(folds=3, seed=0))
    assert task.truth is not None and len(task.X) == len(task.y)
    if task.truth.modular is not None:
        operation, p = task.truth.modular
        assert task.X.shape == (p * p, 2 * p) and len(task.splits) == 2
        assert all(len(s.train) == len(s.test) or abs(len(s.train) - len(s.test)) == 1
                   for s in task.splits)  # fmt: skip
        a, b = task.X.to_numpy()[:, :p].argmax(1), task.X.to_numpy()[:, p:].argmax(1)
        expected = {"add": a + b, "sub": a - b, "mul": a * b}[operation] % p
        np.testing.assert_array_equal(task.y, expected)
    else:
        assert task.truth.basis.shape[0] == task.X.shape[1] and len(task.splits) == 3


def test_results_score_models_that_expose_features(tmp_path: Path) -> None:
    args = ["run", "--suite", "features", "--datasets", "parity-3of20", "--models",
            "rfm,kernel-ridge,random-forest", "--folds", "2", "--inner-folds", "2", "--budget",
            "2", "--device", "cpu", "--jobs", "1", "--out", str(tmp_path), "--run-id", "f"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    rows = read_run(tmp_path / "f.csv")
    scores = rows.groupby("model")["feature_recovery"].mean()
    assert pd.isna(scores["kernel-ridge"])  # learns no features: the column stays empty
    assert 0 <= scores["random-forest"] <= 1
    assert scores["rfm"] > 0.5 > 3 / 20  # RFM finds the 3 parity bits; isotropic would be 0.15


@pytest.mark.parametrize("operation", ["add", "sub", "mul"])
def test_circulant_score_is_0_when_nothing_is_learned(operation) -> None:
    p = 11
    assert circulant_score(np.eye(2 * p), operation, p) == 0.0  # M = I: cross blocks are 0
    M = np.eye(2 * p)
    M[:p, p:] = M[p:, :p] = structured(operation, p)[:p, p:]  # the cross structure alone
    assert circulant_score(M, operation, p) == pytest.approx(1.0)


def test_modular_order_puts_multiplication_in_discrete_log_order() -> None:
    # Z_5^*: 2 generates 1, 2, 4, 3; residue 0 first; then the b block shifted by p.
    assert modular_order("mul", 5).tolist() == [0, 1, 2, 4, 3, 5, 6, 7, 9, 8]
    assert modular_order("add", 3).tolist() == [0, 1, 2, 3, 4, 5]
    # In that order an M built from log(a) + log(b) is circulant: the addition's structure.
    p = 7
    logs = {int(v): k for k, v in enumerate(discrete_log_order(p))}
    M = np.zeros((2 * p, 2 * p))
    for i in range(1, p):
        for j in range(1, p):
            M[i, j] = M[p + i, p + j] = np.cos(2 * np.pi * (logs[i] - logs[j]) / (p - 1))
    order = modular_order("mul", p)
    block = M[np.ix_(order, order)][1:p, 1:p]
    assert np.allclose(block, np.roll(np.roll(block, 1, axis=0), 1, axis=1))


def test_correlation_of_matrices() -> None:
    A = np.random.default_rng(0).normal(size=(4, 4))
    assert correlation(A, 3 * A + 1) == pytest.approx(1.0)
    assert correlation(A, -A) == pytest.approx(-1.0)
    assert np.isnan(correlation(A, np.ones((4, 4))))


def tiny_network(seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    weights = [torch.randn(6, 3, generator=gen), torch.randn(2, 6, generator=gen)]
    biases = [torch.randn(6, generator=gen), torch.randn(2, generator=gen)]
    return weights, biases


def test_network_agop_equals_the_gradients_written_by_hand() -> None:
    weights, biases = tiny_network()
    W1, W2 = (w.double().numpy() for w in weights)
    b1 = biases[0].double().numpy()
    X = np.random.default_rng(1).normal(size=(20, 3))
    expected = np.zeros((3, 3))
    for x in X:  # f(x) = W2 relu(W1 x + b1) + b2: grad f_k = W1^T (W2[k] * 1[W1 x + b1 > 0])
        active = (W1 @ x + b1 > 0).astype(float)
        for k in range(2):
            g = W1.T @ (W2[k] * active)
            expected += np.outer(g, g)
    np.testing.assert_allclose(network_agop(weights, biases, X), expected / len(X), rtol=1e-10)


class LinearNet:
    """A network without hidden layers: its gradient is W, so its AGOP is exactly W^T W."""

    def __init__(self, weights, biases) -> None:
        self.weights_, self.biases_ = weights, biases

    def predict_proba(self, X):
        out = X @ self.weights_[0].double().numpy().T + self.biases_[0].double().numpy()
        e = np.exp(out - out.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)


def test_nfa_correlation_is_1_when_the_agop_is_w_transpose_w() -> None:
    gen = torch.Generator().manual_seed(2)
    model = LinearNet([torch.randn(4, 5, generator=gen)], [torch.randn(4, generator=gen)])
    X = np.random.default_rng(3).normal(size=(30, 5))
    assert nfa_correlation(model, X) == pytest.approx(1.0)
    W = model.weights_[0].double().numpy()
    np.testing.assert_allclose(network_agop(model.weights_, model.biases_, X), W.T @ W)


def test_nfa_correlation_of_a_trained_mlp_and_none_for_other_models() -> None:
    from sklearn.ensemble import RandomForestClassifier

    from rfmbench.models.mlp import MLPClassifier

    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 6))
    y = (X[:, 0] * X[:, 1] > 0).astype(int)
    mlp = MLPClassifier(width=32, depth=1, max_epochs=30, device="cpu", random_state=0).fit(X, y)
    weights, biases = mlp.weights_, mlp.biases_
    W1 = weights[0].double().numpy()
    expected = correlation(W1.T @ W1, network_agop(weights, biases, X))
    assert nfa_correlation(mlp, X) == pytest.approx(expected)
    assert -1 <= expected <= 1
    forest = RandomForestClassifier(n_estimators=3, random_state=0).fit(X, y)
    assert nfa_correlation(forest, X) is None


def test_nfa_correlation_refuses_weights_that_do_not_give_the_predictions() -> None:
    weights, biases = tiny_network()
    model = LinearNet(weights[:1], biases[:1])
    model.weights_ = weights  # two layers whose outputs are not what predict_proba gives
    model.biases_ = biases
    assert nfa_correlation(model, np.random.default_rng(0).normal(size=(10, 3))) is None


def test_run_keeps_rfm_iterations_and_m_and_compare_draws_them(tmp_path: Path) -> None:
    args = ["run", "--suite", "features", "--datasets", "modmul-61", "--models", "rfm,mlp",
            "--folds", "2", "--inner-folds", "2", "--budget", "1", "--device", "cpu", "--jobs",
            "1", "--out", str(tmp_path), "--run-id", "g"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    rows = read_run(tmp_path / "g.csv").set_index(["model", "fold"]).sort_index()
    rfm, mlp = rows.loc["rfm"], rows.loc["mlp"]
    for scores in rfm["iteration_test_scores"]:  # one accuracy per iteration of the refit
        values = json.loads(scores)
        assert len(values) >= 1 and all(0 <= v <= 1 for v in values)
    assert mlp["iteration_test_scores"].isna().all() and rfm["nfa_correlation"].isna().all()
    assert mlp["nfa_correlation"].between(-1, 1).all()
    for model, fold in [("rfm", 0), ("rfm", 1), ("mlp", 0)]:  # written by the driver
        M = np.load(tmp_path / "g-features" / f"modmul-61--{model}--fold{fold}.npy")
        assert M.shape == (122, 122)

    plots = tmp_path / "plots"
    result = CliRunner().invoke(app, ["compare", str(tmp_path / "g.csv"), "--plot-dir", str(plots)])
    assert result.exit_code == 0, result.output
    for name in ["iterations-modmul-61.png", "M-modmul-61--rfm--fold0.png",
                 "M-modmul-61--mlp--fold1.png"]:  # fmt: skip
        data = (plots / name).read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 5000
        assert f"figure: {plots / name}" in " ".join(result.output.split())
