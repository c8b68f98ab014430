"""Tuning with the real models: on tasks whose right answer is known, ``tune`` must find it.

Each case gives a model a two-point grid over one hyperparameter (the rest are the model's defaults),
with the *wrong* value as the default, so tuning has to beat the default through the inner folds:
strong regularization against the weakest on pure-noise targets, a bandwidth of the data's scale
against a far too narrow one on a smooth target, a deep forest against stumps on XOR. The grid is
enumerated (it is smaller than the budget), so the test is about the models and the inner CV, not
about random sampling. Scores: inner accuracy, or minus the inner MSE of a standardized target.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
import pytest
import torch

from rfmbench.models.registry import get_model
from rfmbench.models.spec import ModelSpec
from rfmbench.tuning import TuningResult, tune

N_ROWS = 200


def noise(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Pure noise: the target is independent of the features; the best predictor is the mean."""
    return rng.normal(size=(N_ROWS, 5)), rng.normal(size=N_ROWS)


def smooth(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A smooth function of standardized features with a little noise, standardized."""
    X = rng.normal(size=(N_ROWS, 3))
    y = np.sin(1.5 * X[:, 0]) + 0.5 * X[:, 1] ** 2 - X[:, 2] + 0.1 * rng.normal(size=N_ROWS)
    return X, (y - y.mean()) / y.std()


def xor(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Two classes by the sign of x0 * x1: no single split separates them, two levels do."""
    X = rng.normal(size=(N_ROWS, 4))
    return X, (X[:, 0] * X[:, 1] > 0).astype(np.int64)


class Case(NamedTuple):
    model: str
    kind: str
    data: Callable[[np.random.Generator], tuple[np.ndarray, np.ndarray]]
    axis: str
    weak: Any  # the default, which must lose
    right: Any  # the value tuning must choose
    fixed: dict[str, Any] = {}  # other parameters over the model's defaults (for speed)
    margin: float = 0.1  # the winner's inner score must beat the loser's by at least this

    @property
    def id(self) -> str:
        return f"{self.model}-{self.data.__name__}-{self.axis}"


FOREST = {"n_estimators": 100}
# Full-batch steps (batch_size > rows) and few epochs: torch's per-step overhead dominates here.
MLP = {"width": 64, "dropout": 0.0, "weight_decay": 0.0, "lr": 1e-2, "batch_size": 512}
GBDT = {"learning_rate": 0.3, "val_fraction": 0.0}
# The count (epochs / rounds) that early stopping chooses and ``refit_params`` hands to the refit.
COUNT = {"mlp": "max_epochs", "xgboost": "n_estimators", "lightgbm": "n_estimators"}

CASES = [
    Case("rfm", "regression", noise, "reg", 1e-6, 10.0, {"iters": 2}),
    Case("rfm", "regression", smooth, "bandwidth", 0.05, 5.0, {"iters": 2}),
    Case("kernel-ridge", "regression", noise, "reg", 1e-6, 10.0),
    Case("kernel-ridge", "regression", smooth, "bandwidth", 0.05, 5.0),
    Case("random-forest", "regression", noise, "min_samples_leaf", 1, 50, FOREST, 0.05),
    Case("random-forest", "classification", xor, "max_depth", 1, None, FOREST),
    # Without a validation split the network trains all max_epochs epochs and memorizes the noise;
    # with one, early stopping keeps the weights of the first few epochs.
    Case(
        "mlp",
        "regression",
        noise,
        "val_fraction",
        0.0,
        0.2,
        {**MLP, "max_epochs": 150, "patience": 5},
    ),
    Case(
        "mlp",
        "regression",
        noise,
        "weight_decay",
        0.0,
        30.0,
        {**MLP, "max_epochs": 100, "val_fraction": 0.0},
    ),
    Case("xgboost", "regression", noise, "n_estimators", 300, 3, GBDT),
    Case("lightgbm", "regression", noise, "n_estimators", 300, 3, GBDT),
    Case("xgboost", "regression", noise, "val_fraction", 0.0, 0.2, {**GBDT, "n_estimators": 300}),
    Case("lightgbm", "regression", noise, "val_fraction", 0.0, 0.2, {**GBDT, "n_estimators": 300}),
]


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny networks and kernels: extra threads only add overhead (and spin on a busy machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def two_point_spec(case: Case) -> ModelSpec:
    """The registered model, with its real builder, searching only ``{weak, right}``."""
    if case.model in ("xgboost", "lightgbm"):
        pytest.importorskip(case.model)
    spec = get_model(case.model)
    defaults = {**spec.defaults, **case.fixed, case.axis: case.weak}
    return dataclasses.replace(spec, space={case.axis: [case.weak, case.right]}, defaults=defaults)


def tuned(case: Case, seed: int = 0) -> TuningResult:
    X, y = case.data(np.random.default_rng(seed))
    spec = two_point_spec(case)
    return tune(spec, case.kind, X, y, inner_folds=3, budget=3, seed=seed, device="cpu")


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_tuning_picks_the_configuration_the_data_call_for(case: Case) -> None:
    result = tuned(case)
    assert result.n_failed == 0, [c.error for c in result.candidates]
    # The default first, then the grid: the weak value (once, deduplicated) and the right one.
    assert [c.params[case.axis] for c in result.candidates] == [case.weak, case.right]
    weak, right = result.candidates
    assert result.best_params[case.axis] == case.right, (weak.mean_score, right.mean_score)
    assert right.mean_score >= weak.mean_score + case.margin
    assert result.best_score == right.mean_score
    if case.axis == "val_fraction":  # early stopping won: its count goes to the refit
        assert_refit_gets_the_early_count(result, COUNT[case.model])


def assert_refit_gets_the_early_count(result: TuningResult, count: str) -> None:
    """On noise the best epoch / round is an early one; the refit trains that long, without a split."""
    hints = result.candidates[1].refit_hints
    assert len(hints) == 3
    assert all(1 <= hint[count] <= 30 for hint in hints), hints
    median = int(round(float(np.median([hint[count] for hint in hints]))))
    # (a model may hand the refit more, e.g. the mlp its schedule's length)
    assert {count: median, "val_fraction": 0.0}.items() <= result.refit_params.items()
