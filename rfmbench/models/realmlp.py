"""RealMLP (Holzmüller et al., NeurIPS 2024) through ``pytabkit`` (Apache-2.0; extra ``rfmbench[realmlp]``).

The first configuration tuning tries is RealMLP-TD, pytabkit's tuned defaults as they are (robust
scaling with smooth clipping, numerical embeddings, its learning-rate and dropout schedules, label
smoothing for classification). The search space is the paper's RealMLP-HPO space, as pytabkit's
``RealMLPParamSampler`` draws it ("default" space): pytabkit draws some choices with unequal
probabilities, which ``ParameterSampler`` (uniform over a list) reproduces by repeating values.

Training follows RealMLP-TD's own protocol: 20% of the rows it is given are held out, and the
weights of the best validation epoch are kept; there is no refit on every row (pytabkit's
``n_refit=0`` default), in tuning and in the final fit alike. The estimators are pytabkit's
scikit-learn classes, built on the run's device with the job's seed and thread count.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from scipy.stats import loguniform
from sklearn.base import BaseEstimator

from rfmbench.models.spec import ModelSpec

# Hidden layers by name, so that a configuration reads (and serializes) as one value.
HIDDEN_SIZES = {"256x3": [256, 256, 256], "64x5": [64] * 5, "512x1": [512]}

# The RealMLP-HPO space (pytabkit 1.8, RealMLPParamSampler, "default"); lists with repeated values
# carry pytabkit's probabilities: add_front_scale 0.6 / 0.4, p_drop 0.3 / 0.5 / 0.2, hidden sizes
# 0.6 / 0.2 / 0.2, ls_eps 0.3 / 0.7 (classification only; dropped for regression).
SPACE: dict[str, Any] = {
    "num_emb_type": ["none", "pbld", "pl", "plr"],
    "add_front_scale": [True, True, True, False, False],
    "lr": loguniform(2e-2, 3e-1),
    "p_drop": [0.0, 0.0, 0.0, 0.15, 0.15, 0.15, 0.15, 0.15, 0.3, 0.3],
    "wd": [0.0, 2e-2],
    "plr_sigma": loguniform(0.05, 0.5),
    "act": ["relu", "selu", "mish"],
    "hidden_sizes": ["256x3", "256x3", "256x3", "64x5", "512x1"],
    "ls_eps": [0.0, 0.0, 0.0, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1],
}

# RealMLP-TD: pytabkit's tuned defaults, no override.
DEFAULTS: dict[str, Any] = {}


def build(
    kind: str, params: Mapping[str, Any], *, device: str = "cpu", seed: int, n_jobs: int = 1
) -> BaseEstimator:
    """Return pytabkit's RealMLP_TD_Classifier / RealMLP_TD_Regressor with ``params`` over TD."""
    from pytabkit import RealMLP_TD_Classifier, RealMLP_TD_Regressor

    config = {**DEFAULTS, **params}
    if "hidden_sizes" in config:
        config["hidden_sizes"] = HIDDEN_SIZES[config["hidden_sizes"]]
    if kind == "classification":
        cls = RealMLP_TD_Classifier
    elif kind == "regression":
        cls = RealMLP_TD_Regressor
        config.pop("ls_eps", None)  # label smoothing exists for classes only
    else:
        raise ValueError(f"realmlp: 'kind' must be classification or regression, got {kind!r}")
    return cls(device=device, random_state=seed, n_threads=n_jobs, verbosity=0, **config)


SPEC = ModelSpec(
    name="realmlp",
    summary="RealMLP-TD and its HPO space (pytabkit); needs rfmbench[realmlp]",
    build=build,
    space=SPACE,
    defaults=DEFAULTS,
    uses_device=True,
    requires=("pytabkit",),
)
