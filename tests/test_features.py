"""Feature-recovery scores on cases with known answers, and the features suite end to end."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from rfmbench.cli import app
from rfmbench.features import circulant_score, discrete_log_order, subspace_share
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
    cross = (i - j) % n if operation == "sub" else (i + j) % n
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
