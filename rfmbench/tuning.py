"""Hyperparameter tuning: inner K-fold cross-validation on the outer training fold only.

Candidates are the model's defaults first, then a seeded random sample of its search space (or the
whole grid when the space is a grid no larger than the budget). Every candidate gets a record, like
scikit-learn's ``cv_results_``; failed candidates are counted, not hidden.
"""

from __future__ import annotations

import inspect
import json
import math
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from sklearn.model_selection import KFold, ParameterGrid, ParameterSampler, StratifiedKFold

from rfmbench.errors import one_line
from rfmbench.metrics import beats, validation_score
from rfmbench.models.spec import ModelSpec
from rfmbench.tasks import TaskKind


@dataclass
class Candidate:
    """One configuration and its inner-CV outcome."""

    params: dict[str, Any]
    fold_scores: list[float] = field(default_factory=list)
    fit_seconds: float = 0.0
    error: str | None = None
    refit_hints: list[dict[str, Any]] = field(default_factory=list)
    state: dict[str, Any] = field(default_factory=dict)  # see ModelSpec.selection_state
    # Per inner fold, the model's validation score at each of its iterations (RFM's val_scores_).
    iteration_scores: list[list[float]] = field(default_factory=list)

    @property
    def mean_score(self) -> float:
        return (
            float(np.mean(self.fold_scores)) if self.fold_scores and not self.error else -math.inf
        )


@dataclass
class TuningResult:
    """The chosen configuration, its inner-CV score and every candidate tried."""

    best_params: dict[str, Any]
    best_score: float
    candidates: list[Candidate]
    refit_params: dict[str, Any] = field(default_factory=dict)
    # Fitted state the test folds' fits reuse as parameters (``keep_state``); not hyperparameters.
    state: dict[str, Any] = field(default_factory=dict)
    # The chosen candidate's validation score per iteration, averaged over the inner folds (None
    # for a model without iterations, or folds whose iteration counts differ).
    iteration_scores: list[float] | None = None

    @property
    def n_failed(self) -> int:
        return sum(c.error is not None for c in self.candidates)

    def to_dict(self) -> dict[str, Any]:
        """Plain data (for JSON); :meth:`from_dict` rebuilds the same result."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TuningResult:
        return cls(
            best_params=dict(data["best_params"]),
            best_score=float(data["best_score"]),
            candidates=[Candidate(**c) for c in data["candidates"]],
            refit_params=dict(data["refit_params"]),
            state=dict(data.get("state", {})),
            iteration_scores=data.get("iteration_scores"),
        )


def candidate_configs(spec: ModelSpec, budget: int, seed: int) -> list[dict[str, Any]]:
    """The defaults, then up to ``budget - 1`` distinct configurations drawn from the space."""
    space = dict(spec.space)
    if not space or budget <= 1:
        return [dict(spec.defaults)]
    is_grid = all(isinstance(axis, list | tuple) for axis in space.values())
    if is_grid and len(ParameterGrid(space)) < budget:  # the defaults and the whole grid fit
        drawn = list(ParameterGrid(space))
    else:
        # One more than needed, so that a draw equal to the defaults does not shrink the budget.
        drawn = list(ParameterSampler(space, n_iter=budget, random_state=seed))
        # Shuffled: drawing a whole grid keeps its order, and the last draw may be cut below.
        drawn = [drawn[i] for i in np.random.default_rng(seed).permutation(len(drawn))]
    configs: list[dict[str, Any]] = []
    seen: set[str] = set()
    for params in [{}, *drawn]:
        config = {**spec.defaults, **_plain(params)}
        key = json.dumps(config, sort_keys=True, default=str)
        if key not in seen:
            seen.add(key)
            configs.append(config)
    return configs[:budget]


def inner_splits(y: np.ndarray, kind: TaskKind, folds: int, seed: int) -> list[tuple]:
    """Seeded inner folds over the outer training rows, stratified for classification."""
    if kind == "classification":
        smallest = int(np.bincount(y).min()) if len(y) else 0
        if smallest >= folds:
            splitter = StratifiedKFold(folds, shuffle=True, random_state=seed)
            return list(splitter.split(np.zeros(len(y)), y))
    return list(KFold(folds, shuffle=True, random_state=seed).split(np.zeros(len(y))))


def inner_cv_score(
    spec: ModelSpec,
    kind: TaskKind,
    params: dict[str, Any],
    X: np.ndarray,
    y: np.ndarray,
    splits: list[tuple],
    *,
    device: str,
    seed: int,
    n_jobs: int,
    validation_is_given: bool = False,
    precision: str | None = None,
    keep_state: bool = False,
) -> Candidate:
    """Fit ``params`` on each inner training part and score it on the held-out part.

    The score is the model's ``spec.validation_score``, by default `rfmbench.metrics.validation_score`: accuracy
    for classification and minus the mean squared error (on the standardized target) for
    regression, so larger is always better. With ``validation_is_given`` the held-out
    part is also passed to ``fit`` as ``X_val, y_val`` when the model takes them (the paper's
    protocol selects the iteration on the same validation split it scores), else a model carves its
    own validation split. A model with a ``fit_subsets(X, y, train_parts)`` method (returning one
    fitted model per part, each what ``fit`` on that part returns) fits all the parts in one call.
    """
    candidate = Candidate(params=params)
    start = time.perf_counter()
    try:
        fitted = None
        for i, (train, valid) in enumerate(splits):
            if fitted is not None:
                model = fitted[i]
            else:
                model = spec.make(
                    kind, params, device=device, seed=seed, n_jobs=n_jobs, precision=precision
                )
                if hasattr(model, "fit_subsets") and not validation_is_given:
                    # Every inner training part fitted in one call (e.g. one batched network);
                    # the i-th model is the one ``fit(X[train_i], y[train_i])`` gives.
                    fitted = model.fit_subsets(X, y, [part for part, _ in splits])
                    model = fitted[i]
                elif validation_is_given and "X_val" in inspect.signature(model.fit).parameters:
                    model.fit(X[train], y[train], X_val=X[valid], y_val=y[valid])
                else:
                    model.fit(X[train], y[train])
            if spec.refit_params is not None:
                candidate.refit_hints.append(spec.refit_params(model))
            if keep_state and spec.selection_state is not None:
                candidate.state = spec.selection_state(model)  # one split: that model's state
            curve = iteration_curve(model)
            if curve is not None:
                candidate.iteration_scores.append(curve)
            score = (spec.validation_score or validation_score)(model, X[valid], y[valid], kind)
            if not math.isfinite(score):
                raise FloatingPointError("non-finite validation score")
            candidate.fold_scores.append(score)
    except Exception as exc:  # a failing configuration is data: record it and go on
        candidate.error = one_line(exc)
    candidate.fit_seconds = time.perf_counter() - start
    return candidate


def tune(
    spec: ModelSpec,
    kind: TaskKind,
    X: np.ndarray,
    y: np.ndarray,
    *,
    inner_folds: int,
    budget: int,
    seed: int,
    device: str = "cpu",
    n_jobs: int = 1,
    splits: list[tuple] | None = None,
    paper: bool = False,
    precision: str | None = None,
    grid: Mapping[str, Any] | None = None,
    keep_state: bool = False,
) -> TuningResult:
    """Pick the configuration with the best mean inner-CV score; raise if every candidate failed.

    Scores within ``metrics.TIE_RTOL`` of each other are ties, won by the earlier candidate (the
    defaults come first), so round-off that differs between machines never changes the choice.
    The best candidate then replaces the defaults only if it beats them by more than one standard
    error of the fold-by-fold differences (`_clearly_beats_defaults`); the paper's grid search
    (``paper``), which has no defaults among its candidates, takes the best as it is.

    ``splits`` replaces the inner K folds by given (train, validation) index pairs. ``paper``
    searches the model's whole ``paper_space`` grid on those splits, as the RFM paper's protocol
    does, and lets the model select its iteration on the given validation rows. ``precision``
    ("float32" / "float64") overrides the float precision of models that have one. ``grid``
    replaces the paper grid (a protocol's per-dataset exception). ``keep_state`` keeps the chosen
    model's ``spec.selection_state`` in the result (one split only: it is that split's model).
    """
    if splits is None:
        splits = inner_splits(y, kind, inner_folds, seed)
    if paper and (grid or spec.paper_space) is not None:
        space = dict(grid or spec.paper_space)
        configs = [{**spec.defaults, **_plain(p)} for p in ParameterGrid(space)]
    else:
        configs = candidate_configs(spec, budget, seed)
    candidates = [
        inner_cv_score(
            spec,
            kind,
            params,
            X,
            y,
            splits,
            device=device,
            seed=seed,
            n_jobs=n_jobs,
            validation_is_given=paper,
            precision=precision,
            keep_state=keep_state,
        )
        for params in configs
    ]
    best = candidates[0]
    for candidate in candidates[1:]:  # near-equal scores are ties; the earlier candidate keeps it
        if beats(candidate.mean_score, best.mean_score):
            best = candidate
    if not paper and not _clearly_beats_defaults(best, candidates[0]):
        best = candidates[0]
    for candidate in candidates:  # only the chosen state is kept (an M is d x d numbers)
        if candidate is not best:
            candidate.state = {}
    if best.error is not None:
        raise RuntimeError(f"all {len(candidates)} configurations failed; first: {best.error}")
    return TuningResult(
        best_params=best.params,
        best_score=best.mean_score,
        candidates=candidates,
        refit_params=_median_hints(best.refit_hints),
        state=best.state,
        iteration_scores=_mean_curve(best.iteration_scores),
    )


def _clearly_beats_defaults(best: Candidate, defaults: Candidate) -> bool:
    """Whether ``best`` beats ``defaults`` by more than one standard error of its paired inner-fold
    score differences (the mean difference over its standard error, ``t``, above 1).

    The one-standard-error rule of Breiman et al. (1984), with the defaults as the simple model: on
    small data the best of a few random draws wins by inner-fold noise as often as by merit, and
    its test score then falls below the defaults'. (Measured, `benchmarks/baselines.py`: the mlp's
    accuracy on breast_cancer over 5 outer folds was 0.9736 tuned with budget 6, 0.9772 with its
    defaults alone, 0.9754 tuned with this rule.) Paired differences, since every candidate is
    scored on the same inner folds. With one fold, or when the defaults failed, there is nothing to
    weigh and the best stands.
    """
    if best is defaults or defaults.error is not None or len(defaults.fold_scores) < 2:
        return True
    diffs = np.subtract(best.fold_scores, defaults.fold_scores)
    return bool(diffs.mean() > diffs.std(ddof=1) / math.sqrt(len(diffs)))


def iteration_curve(model: Any) -> list[float] | None:
    """A fitted model's validation score per iteration, when it has one flat list of them with a
    finite score (None: no iterations, one list per leaf, or no validation rows)."""
    scores = getattr(model, "val_scores_", None)
    if not scores or any(isinstance(v, list) for v in scores):  # none, or one list per leaf
        return None
    values = [float(v) for v in scores]
    return values if any(math.isfinite(v) for v in values) else None


def _mean_curve(curves: list[list[float]]) -> list[float] | None:
    """The inner folds' curves averaged, when they have one length."""
    if not curves or len({len(curve) for curve in curves}) != 1:
        return None
    return [float(v) for v in np.nanmean(np.asarray(curves, dtype=np.float64), axis=0)]


def _median_hints(hints: list[dict[str, Any]]) -> dict[str, Any]:
    """Combine the inner folds' refit hints: the median of numbers (an int stays an int)."""
    if not hints:
        return {}
    combined: dict[str, Any] = {}
    # A key only some folds give (e.g. a partition's temperature where only some inner training
    # parts were partitioned) is combined over the folds that give it.
    for key in dict.fromkeys(key for hint in hints for key in hint):
        values = [hint[key] for hint in hints if key in hint]
        if all(isinstance(v, bool) for v in values) or not all(
            isinstance(v, int | float) for v in values
        ):
            combined[key] = values[0]
        elif all(isinstance(v, int) for v in values):
            combined[key] = int(round(float(np.median(values))))
        else:
            combined[key] = float(np.median(values))
    return combined


def _plain(params: dict[str, Any]) -> dict[str, Any]:
    """numpy scalars -> Python scalars, so configurations serialize to JSON and compare equal."""
    return {k: v.item() if isinstance(v, np.generic) else v for k, v in params.items()}
