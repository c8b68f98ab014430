"""ModelSpec: what the registry knows about a model (how to build it, its space, its defaults)."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sklearn.base import BaseEstimator

# build(kind, params, *, device, seed, n_jobs) -> an unfitted estimator.
#   kind:   "classification" (y are integer labels 0..K-1) or "regression" (y standardized floats)
#   params: one configuration from the search space (merged over the defaults)
#   device: a resolved torch device string, e.g. "cpu" or "cuda:0" (ignored by CPU-only models)
#   seed:   int, for every random choice the estimator makes
#   n_jobs: CPU cores this job may use
Builder = Callable[..., BaseEstimator]


@dataclass(frozen=True)
class ModelSpec:
    """A model as the registry sees it.

    ``space`` maps each hyperparameter to a list (a grid axis, sampled uniformly) or a frozen
    scipy.stats distribution (anything with ``rvs``), as scikit-learn's ParameterSampler takes.
    ``defaults`` is the first configuration tuning tries, so the tuned model is never worse on the
    inner folds than its default. For models that choose an iteration or epoch count on a
    validation split, ``refit_params`` reads that choice from each inner-fold model; the refit on
    the whole training fold then uses their median instead of carving a validation split again.
    """

    name: str
    summary: str
    build: Builder
    space: Mapping[str, Any]
    defaults: Mapping[str, Any]
    uses_device: bool = False
    requires: tuple[str, ...] = field(default_factory=tuple)
    # The grid of the RFM paper's UCI protocol (``--protocol paper``); None = use ``space``.
    paper_space: Mapping[str, Any] | None = None
    # What a model fitted during tuning learned that the refit should reuse, e.g. the iteration or
    # epoch count its validation split chose: fitted estimator -> parameters for the refit.
    refit_params: Callable[[BaseEstimator], dict[str, Any]] | None = None
    # Under ``--protocol paper``: the fitted state a model selected on the selection split hands
    # to the test folds' fits, as parameters (RFM: its M, with no further iterations).
    selection_state: Callable[[BaseEstimator], dict[str, Any]] | None = None
    # The estimator parameter that sets its float precision ("float32" / "float64"), for models
    # that have one; a run's ``precision`` setting overrides it (None: the model's own default).
    precision_param: str | None = None
    # How tuning scores a fitted candidate on held-out rows, larger is better:
    # (model, X, y, kind) -> float. None: accuracy for classification, minus the mean squared error
    # for regression (`rfmbench.metrics.validation_score`).
    validation_score: Callable[[BaseEstimator, Any, Any, str], float] | None = None

    def make(
        self,
        kind: str,
        params: Mapping[str, Any],
        *,
        device: str,
        seed: int,
        n_jobs: int,
        precision: str | None = None,
    ) -> BaseEstimator:
        """An unfitted estimator: ``build`` with the run's ``precision`` where the model has one."""
        params = dict(params)
        if precision is not None and self.precision_param is not None:
            params[self.precision_param] = precision
        return self.build(kind, params, device=device, seed=seed, n_jobs=n_jobs)

    def available(self) -> bool:
        """True when every optional package this model needs can be imported."""
        return all(importlib.util.find_spec(module) is not None for module in self.requires)
