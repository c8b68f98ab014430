"""Random forest baseline: scikit-learn's forests as they are, with a small search space beside them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sklearn.base import BaseEstimator
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor

from rfmbench.models.spec import ModelSpec

N_ESTIMATORS = 300
"""Trees in the forest refitted on the whole training fold: fixed, not tuned (more trees never hurt
accuracy, only time)."""

TUNING_ESTIMATORS = 100
"""Trees per forest while tuning (scikit-learn's default). Comparing configurations needs fewer trees
than the final model, and the inner folds are most of the work: this makes tuning 3x faster."""

KIND_DEFAULT = "default"
"""``max_features`` value meaning scikit-learn's default for the kind: sqrt (classification), 1.0."""

_MAX_FEATURES_DEFAULT = {"classification": "sqrt", "regression": 1.0}

SPACE: dict[str, list[Any]] = {
    "max_features": ["sqrt", 0.5, 1.0],
    "min_samples_leaf": [1, 2, 4, 8],
    "max_depth": [None, 8, 16],
}

DEFAULTS: dict[str, Any] = {
    "max_features": KIND_DEFAULT,
    "min_samples_leaf": 1,
    "max_depth": None,
}


def build(
    kind: str, params: Mapping[str, Any], *, device: Any = None, seed: int, n_jobs: int
) -> BaseEstimator:
    """Return an unfitted random forest for ``kind`` with ``params`` over :data:`DEFAULTS`.

    Parameters
    ----------
    kind : {"classification", "regression"}
        Picks RandomForestClassifier or RandomForestRegressor.
    params : mapping
        Forest parameters; ``max_features="default"`` resolves to scikit-learn's default for
        ``kind``. Any other RandomForest parameter may be given too: ``n_estimators`` is
        :data:`TUNING_ESTIMATORS` unless given (the refit gets :data:`N_ESTIMATORS`).
    device : ignored
        Forests run on the CPU.
    seed : int
        ``random_state`` of the forest (bootstrap samples and feature draws).
    n_jobs : int
        Cores used to grow and apply the trees.

    Returns
    -------
    RandomForestClassifier or RandomForestRegressor
    """
    if kind not in _MAX_FEATURES_DEFAULT:
        raise ValueError(
            f"random-forest: 'kind' must be classification or regression, got {kind!r}"
        )
    config = {"n_estimators": TUNING_ESTIMATORS, **DEFAULTS, **params}
    if config["max_features"] == KIND_DEFAULT:
        config["max_features"] = _MAX_FEATURES_DEFAULT[kind]
    forest = RandomForestClassifier if kind == "classification" else RandomForestRegressor
    return forest(**config, n_jobs=n_jobs, random_state=seed)


def refit_params(model: BaseEstimator) -> dict[str, Any]:
    """The refit on the whole training fold grows the full forest."""
    return {"n_estimators": N_ESTIMATORS}


SPEC = ModelSpec(
    name="random-forest",
    summary=(
        f"scikit-learn random forest, {N_ESTIMATORS} trees ({TUNING_ESTIMATORS} while tuning); "
        "tunes max_features, leaf size, depth"
    ),
    build=build,
    space=SPACE,
    defaults=DEFAULTS,
    uses_device=False,
    refit_params=refit_params,
    paper_space=SPACE,  # the whole 36-point grid under --protocol paper
)
