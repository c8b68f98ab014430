"""Shared fixtures: tiny tasks, a tiny scikit-learn model spec, a way to register models for a test.

The tasks are small (90 rows), have a categorical column and missing values, and string class labels,
so every stage from preprocessing to metrics sees the awkward cases. ``tiny_spec`` wraps plain
scikit-learn estimators, so tuning and runner tests do not depend on the project's own models.
"""

from __future__ import annotations

import os

# scikit-learn's estimator checks test array-API input (numpy's namespace, for our estimators)
# only when SciPy runs in array-API mode, which must be chosen before SciPy is first imported.
os.environ.setdefault("SCIPY_ARRAY_API", "1")

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.base import BaseEstimator
from sklearn.linear_model import LogisticRegression, Ridge

from rfmbench.models.spec import ModelSpec
from rfmbench.tasks import Task, TaskKind, kfold_splits


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread():
    """Tests fit tiny models, where torch's thread pool costs more than it gives (and the runner
    runs every job on one thread by default too)."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


N_ROWS = 90
COLORS = ("red", "green", "blue")


def make_features(n: int, rng: np.random.Generator) -> pd.DataFrame:
    """Three numeric columns and one categorical column, with a few missing values in each kind."""
    X = pd.DataFrame(
        {
            "x0": rng.normal(size=n),
            "x1": rng.normal(2.0, 3.0, size=n),
            "x2": rng.uniform(-1.0, 1.0, size=n),
            "color": rng.choice(COLORS, size=n).astype(object),
        }
    )
    X.loc[rng.choice(n, size=5, replace=False), "x1"] = np.nan
    X.loc[rng.choice(n, size=4, replace=False), "color"] = np.nan
    return X


def make_task(kind: TaskKind, n: int = N_ROWS, folds: int = 3, seed: int = 0) -> Task:
    """A learnable tiny task: the target depends on x0, x2 and the color."""
    rng = np.random.default_rng(seed)
    X = make_features(n, rng)
    signal = 2.0 * X["x0"].to_numpy() + X["x2"].to_numpy() + (X["color"] == "red").to_numpy() * 1.0
    if kind == "classification":
        cuts = np.quantile(signal, [1 / 3, 2 / 3])
        y = np.array(["low", "mid", "high"], dtype=object)[np.searchsorted(cuts, signal)]
    else:
        y = 100.0 + 5.0 * signal + rng.normal(scale=0.5, size=n)
    return Task(
        name=f"tiny-{kind}",
        kind=kind,
        X=X,
        y=y,
        categorical=("color",),
        splits=kfold_splits(y, kind, folds, seed),
        source="tests",
    )


@pytest.fixture
def seed() -> int:
    return 0


@pytest.fixture
def classification_task() -> Task:
    return make_task("classification")


@pytest.fixture
def regression_task() -> Task:
    return make_task("regression")


@pytest.fixture(params=["classification", "regression"])
def task(request: pytest.FixtureRequest) -> Task:
    """Each tiny task in turn."""
    return make_task(request.param)


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    path = tmp_path / "cache"
    path.mkdir()
    return path


def build_linear(
    kind: str, params: Mapping[str, Any], *, device: Any = None, seed: int, n_jobs: int
) -> BaseEstimator:
    """``penalty`` is 1/C of a logistic regression, or the alpha of a ridge regression."""
    penalty = params["penalty"]
    if kind == "classification":
        # A negative penalty gives C < 0, which scikit-learn rejects at fit: a failing candidate.
        return LogisticRegression(
            C=1.0 / penalty, solver="newton-cholesky", max_iter=1000, random_state=seed
        )
    return Ridge(alpha=penalty)


LINEAR_SPACE = {"penalty": [1e-3, 1e-1, 1e1, 1e3]}


@pytest.fixture
def tiny_spec() -> ModelSpec:
    """A ModelSpec over scikit-learn's LogisticRegression / Ridge with a 4-point grid."""
    return ModelSpec(
        name="tiny",
        summary="logistic / ridge regression (tests only)",
        build=build_linear,
        space=dict(LINEAR_SPACE),
        defaults={"penalty": 1.0},
    )


class Broken(BaseEstimator):
    """An estimator whose fit always raises."""

    def __init__(self, message: str = "boom") -> None:
        self.message = message

    def fit(self, X: np.ndarray, y: np.ndarray) -> Broken:
        raise RuntimeError(self.message)

    def predict(self, X: np.ndarray) -> np.ndarray:  # pragma: no cover - never fitted
        raise RuntimeError(self.message)


@pytest.fixture
def broken_spec() -> ModelSpec:
    """A ModelSpec whose estimator raises ``RuntimeError("boom at fit")`` in fit."""
    return ModelSpec(
        name="broken",
        summary="always fails (tests only)",
        build=lambda kind, params, **_: Broken("boom at fit"),
        space={"penalty": [1.0, 2.0]},
        defaults={"penalty": 1.0},
    )


@pytest.fixture
def register_model(monkeypatch: pytest.MonkeyPatch) -> Callable[[ModelSpec], ModelSpec]:
    """Register a spec in the model registry for this test only; returns the spec."""
    from rfmbench.models import registry

    def register(spec: ModelSpec) -> ModelSpec:
        monkeypatch.setitem(registry.MODELS, spec.name, spec)
        return spec

    return register
