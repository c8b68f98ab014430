"""Tuning: candidates (defaults first, seeded, within budget), stratified inner folds, selection."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
from scipy import stats
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.linear_model import Ridge

from rfmbench.models.spec import ModelSpec
from rfmbench.tuning import Candidate, candidate_configs, inner_cv_score, inner_splits, tune


def continuous(spec: ModelSpec) -> ModelSpec:
    """The spec with a continuous space, which is sampled rather than enumerated."""
    space = {"penalty": stats.loguniform(1e-4, 1e4), "unused": [1, 2, 3]}
    return dataclasses.replace(spec, space=space, defaults={"penalty": 1.0, "unused": 0})


@pytest.mark.parametrize("budget", [1, 2, 5, 20])
def test_candidates_start_with_the_defaults_and_respect_the_budget(tiny_spec, budget) -> None:
    spec = continuous(tiny_spec)
    configs = candidate_configs(spec, budget, seed=0)
    assert configs[0] == dict(spec.defaults)
    assert len(configs) == budget
    keys = {json.dumps(c, sort_keys=True) for c in configs}  # plain Python values, all distinct
    assert len(keys) == len(configs)
    assert all(type(c["penalty"]) is float for c in configs)
    assert all(1e-4 <= c["penalty"] <= 1e4 for c in configs[1:])


def test_candidates_are_seeded(tiny_spec) -> None:
    spec = continuous(tiny_spec)
    assert candidate_configs(spec, 6, seed=3) == candidate_configs(spec, 6, seed=3)
    assert candidate_configs(spec, 6, seed=3) != candidate_configs(spec, 6, seed=4)


@pytest.mark.parametrize("budget", [5, 6, 50])
def test_a_grid_smaller_than_the_budget_is_enumerated(tiny_spec, budget) -> None:
    configs = candidate_configs(tiny_spec, budget, seed=0)
    grid = [{"penalty": p} for p in tiny_spec.space["penalty"]]
    assert configs == [{"penalty": 1.0}, *grid]  # defaults (not in the grid), then every point


def test_a_grid_that_fits_only_without_the_defaults_is_sampled(tiny_spec) -> None:
    # 4 grid points + defaults > budget 4: three points are drawn, not always the first three
    grid = set(tiny_spec.space["penalty"])
    left_out = set()
    for seed in range(8):
        configs = candidate_configs(tiny_spec, 4, seed=seed)
        assert configs[0] == {"penalty": 1.0} and len(configs) == 4
        drawn = {c["penalty"] for c in configs[1:]}
        assert len(drawn) == 3 and drawn < grid
        left_out |= grid - drawn
    assert len(left_out) > 1


def test_a_grid_containing_the_defaults_lists_them_once(tiny_spec) -> None:
    spec = dataclasses.replace(tiny_spec, defaults={"penalty": 1e-1})
    configs = candidate_configs(spec, 10, seed=0)
    assert configs[0] == {"penalty": 1e-1}
    assert sorted(c["penalty"] for c in configs) == sorted(tiny_spec.space["penalty"])


def test_a_grid_larger_than_the_budget_is_sampled(tiny_spec) -> None:
    spec = dataclasses.replace(tiny_spec, space={"penalty": list(np.logspace(-3, 3, 30))})
    configs = candidate_configs(spec, 4, seed=0)
    assert len(configs) == 4 and configs[0] == {"penalty": 1.0}
    assert all(c["penalty"] in spec.space["penalty"] for c in configs[1:])
    assert configs == candidate_configs(spec, 4, seed=0)


def test_an_empty_space_gives_the_defaults_only(tiny_spec) -> None:
    spec = dataclasses.replace(tiny_spec, space={})
    assert candidate_configs(spec, 10, seed=0) == [{"penalty": 1.0}]


@pytest.mark.parametrize("folds", [2, 3, 5])
def test_inner_splits_are_stratified_for_classification(folds: int) -> None:
    y = np.random.default_rng(0).permutation(np.repeat([0, 1, 2], [30, 15, 9]))
    splits = inner_splits(y, "classification", folds, seed=1)
    assert len(splits) == folds
    valid = np.concatenate([v for _, v in splits])
    np.testing.assert_array_equal(np.sort(valid), np.arange(len(y)))
    for train, v in splits:
        assert len(np.intersect1d(train, v)) == 0 and len(train) + len(v) == len(y)
        for label, count in enumerate(np.bincount(y)):
            assert abs(np.sum(y[v] == label) - count / folds) <= 1
    assert [v.tolist() for _, v in splits] == [
        v.tolist() for _, v in inner_splits(y, "classification", folds, seed=1)
    ]


@pytest.mark.parametrize("kind", ["classification", "regression"])
def test_inner_splits_fall_back_to_plain_kfold(kind: str) -> None:
    # classification with a class rarer than the folds cannot be stratified; regression never is
    y = np.array([0] * 10 + [1] * 2) if kind == "classification" else np.linspace(0, 1, 12)
    splits = inner_splits(y, kind, 3, seed=0)
    valid = np.concatenate([v for _, v in splits])
    np.testing.assert_array_equal(np.sort(valid), np.arange(12))


def hand_cv_mse(X, y, alpha, splits) -> float:
    losses = []
    for train, valid in splits:
        predicted = Ridge(alpha=alpha).fit(X[train], y[train]).predict(X[valid])
        losses.append(np.mean((predicted - y[valid]) ** 2))
    return float(np.mean(losses))


@pytest.mark.parametrize(("target", "winner"), [("noise", 1e3), ("signal", 1e-3)])
def test_tuning_picks_the_regularization_the_data_call_for(tiny_spec, target, winner) -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 20))
    y = rng.normal(size=60) if target == "noise" else X @ rng.normal(size=20)
    result = tune(tiny_spec, "regression", X, y, inner_folds=3, budget=10, seed=0)
    assert result.best_params == {"penalty": winner}
    assert len(result.candidates) == 5 and result.n_failed == 0
    splits = inner_splits(y, "regression", 3, seed=0)
    assert result.best_score == pytest.approx(-hand_cv_mse(X, y, winner, splits))
    for candidate in result.candidates:
        expected = -hand_cv_mse(X, y, candidate.params["penalty"], splits)
        assert candidate.mean_score == pytest.approx(expected)
        assert len(candidate.fold_scores) == 3


def test_classification_score_is_inner_accuracy(tiny_spec, classification_task) -> None:
    from rfmbench.preprocessing import prepare_fold

    task = classification_task
    split = task.splits[0]
    fold = prepare_fold(task.X, task.y, task.categorical, task.kind, split.train, split.test)
    result = tune(tiny_spec, task.kind, fold.X_train, fold.y_train, inner_folds=3, budget=5, seed=0)
    splits = inner_splits(fold.y_train, task.kind, 3, seed=0)
    best = result.best_params
    model_scores = []
    for train, valid in splits:
        model = tiny_spec.build(task.kind, best, seed=0, n_jobs=1)
        model.fit(fold.X_train[train], fold.y_train[train])
        model_scores.append(np.mean(model.predict(fold.X_train[valid]) == fold.y_train[valid]))
    assert result.best_score == pytest.approx(np.mean(model_scores))
    assert result.best_score == max(c.mean_score for c in result.candidates)


def test_the_defaults_win_a_tie(tiny_spec) -> None:
    spec = dataclasses.replace(
        tiny_spec, space={"penalty": [1.0], "unused": [1, 2, 3]}, defaults={"penalty": 1.0}
    )
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(30, 3)), rng.normal(size=30)
    result = tune(spec, "regression", X, y, inner_folds=3, budget=10, seed=0)
    assert len(result.candidates) == 4
    assert result.best_params == {"penalty": 1.0}  # "unused" tied everywhere: defaults first


def test_a_failing_candidate_is_recorded_and_counted(tiny_spec, task) -> None:
    from rfmbench.preprocessing import prepare_fold

    kind = task.kind
    split = task.splits[0]
    fold = prepare_fold(task.X, task.y, task.categorical, task.kind, split.train, split.test)
    spec = dataclasses.replace(tiny_spec, space={"penalty": [-1.0, 0.1, 10.0]})
    result = tune(spec, kind, fold.X_train, fold.y_train, inner_folds=3, budget=10, seed=0)
    assert result.n_failed == 1
    (failed,) = [c for c in result.candidates if c.error]
    assert failed.params == {"penalty": -1.0}
    assert "InvalidParameterError" in failed.error and (
        "C" in failed.error or "alpha" in failed.error
    )
    assert failed.mean_score == -math.inf
    assert result.best_params["penalty"] != -1.0
    assert math.isfinite(result.best_score)


def test_every_candidate_failing_raises(tiny_spec) -> None:
    spec = dataclasses.replace(
        tiny_spec, space={"penalty": [-2.0, -3.0]}, defaults={"penalty": -1.0}
    )
    rng = np.random.default_rng(0)
    with pytest.raises(RuntimeError, match="all 3 configurations failed; first: .*alpha"):
        tune(
            spec,
            "regression",
            rng.normal(size=(30, 3)),
            rng.normal(size=30),
            inner_folds=3,
            budget=5,
            seed=0,
        )


class NaNRegressor(RegressorMixin, BaseEstimator):
    def fit(self, X, y):
        return self

    def predict(self, X):
        return np.full(len(X), np.nan)


def test_a_non_finite_validation_score_is_a_failure(tiny_spec) -> None:
    spec = dataclasses.replace(tiny_spec, build=lambda kind, params, **_: NaNRegressor())
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(30, 3)), rng.normal(size=30)
    candidate = inner_cv_score(
        spec,
        "regression",
        {"penalty": 1.0},
        X,
        y,
        inner_splits(y, "regression", 3, 0),
        device="cpu",
        seed=0,
        n_jobs=1,
    )
    assert candidate.error == "FloatingPointError: non-finite validation score"
    assert candidate.mean_score == -math.inf


class SubsetRidge(Ridge):
    """Ridge that also offers ``fit_subsets`` and counts how tuning fits it."""

    calls: list[str] = []

    def fit(self, X, y, sample_weight=None):
        SubsetRidge.calls.append("fit")
        return super().fit(X, y, sample_weight)

    def fit_subsets(self, X, y, subsets):
        SubsetRidge.calls.append(f"fit_subsets({len(subsets)})")
        return [Ridge(alpha=self.alpha).fit(X[rows], y[rows]) for rows in subsets]


def test_a_model_with_fit_subsets_fits_the_inner_parts_in_one_call(tiny_spec) -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 3))
    y = X @ np.array([1.0, -2.0, 0.5]) + 0.1 * rng.normal(size=60)
    splits = inner_splits(y, "regression", 3, seed=0)
    with_hook = dataclasses.replace(
        tiny_spec, build=lambda kind, params, **_: SubsetRidge(alpha=params["penalty"])
    )
    SubsetRidge.calls = []
    common = {"device": "cpu", "seed": 0, "n_jobs": 1}
    hooked = inner_cv_score(with_hook, "regression", {"penalty": 0.5}, X, y, splits, **common)
    assert SubsetRidge.calls == ["fit_subsets(3)"]  # one call for the three inner folds
    plain = inner_cv_score(tiny_spec, "regression", {"penalty": 0.5}, X, y, splits, **common)
    np.testing.assert_allclose(hooked.fold_scores, plain.fold_scores, rtol=1e-12)
    # The paper's protocol passes each part's validation rows to fit: no hook there.
    SubsetRidge.calls = []
    inner_cv_score(
        with_hook, "regression", {"penalty": 0.5}, X, y, splits, validation_is_given=True, **common
    )
    assert SubsetRidge.calls == ["fit"] * 3


def test_tuning_the_mlp_through_fit_subsets_matches_fitting_each_fold() -> None:
    from rfmbench.models.mlp import SPEC

    rng = np.random.default_rng(1)
    X = rng.normal(size=(90, 4))
    y = (X[:, 0] + X[:, 1] > 0).astype(int)
    splits = inner_splits(y, "classification", 3, seed=0)
    params = {**SPEC.defaults, "width": 16, "max_epochs": 30, "dropout": 0.2}
    common = {"device": "cpu", "seed": 4, "n_jobs": 1, "precision": "float64"}
    stacked = inner_cv_score(SPEC, "classification", params, X, y, splits, **common)
    one_by_one = dataclasses.replace(SPEC, build=lambda *a, **k: _NoSubsets(SPEC.build(*a, **k)))
    alone = inner_cv_score(one_by_one, "classification", params, X, y, splits, **common)
    assert stacked.error is None and stacked.fold_scores == alone.fold_scores
    assert stacked.refit_hints == alone.refit_hints


class _NoSubsets:
    """Hides ``fit_subsets``, so tuning fits each inner fold on its own."""

    def __init__(self, model) -> None:
        self.model = model

    def fit(self, X, y):
        self.model.fit(X, y)
        return self

    def __getattr__(self, name):
        if name == "fit_subsets":
            raise AttributeError(name)
        return getattr(self.model, name)


def test_the_mlp_is_tuned_by_validation_log_loss() -> None:
    """Each inner fold's score is minus scikit-learn's log loss of the fold's fitted network."""
    from sklearn.metrics import log_loss

    from rfmbench.models.mlp import SPEC

    rng = np.random.default_rng(2)
    X = rng.normal(size=(90, 4))
    y = (X[:, 0] - X[:, 2] > 0).astype(int)
    splits = inner_splits(y, "classification", 3, seed=0)
    params = {**SPEC.defaults, "width": 16, "max_epochs": 20}
    common = {"device": "cpu", "seed": 4, "n_jobs": 1, "precision": "float64"}
    scored = inner_cv_score(SPEC, "classification", params, X, y, splits, **common)
    for (train, valid), score in zip(splits, scored.fold_scores, strict=True):
        model = SPEC.make("classification", params, **common)
        model.fit(X[train], y[train])
        expected = -log_loss(y[valid], model.predict_proba(X[valid]), labels=model.classes_)
        assert score == pytest.approx(expected, rel=1e-6)


def test_refit_hints_only_some_inner_folds_give_are_combined_over_those() -> None:
    from rfmbench.tuning import _median_hints

    hints = [
        {"iters": 2},
        {"iters": 4, "split_temperature": 0.1},
        {"iters": 3, "split_temperature": 0.3},
    ]
    assert _median_hints(hints) == {"iters": 3, "split_temperature": pytest.approx(0.2)}


def weak_signal(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """40 rows, a weak linear signal in noise: the ridge penalties differ by inner-fold noise."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(40, 5))
    return X, X[:, 0] * 0.3 + rng.normal(size=40)


def paired_t(a: Candidate, b: Candidate) -> float:
    """The paired t statistic of ``a``'s inner-fold scores over ``b``'s, by scipy."""
    return float(stats.ttest_rel(a.fold_scores, b.fold_scores).statistic)


@pytest.mark.parametrize(
    ("seed", "kept"),
    [(22, "defaults"), (12, "best")],  # the best's paired t over the defaults: 0.16, 4.6
)
def test_the_best_replaces_the_defaults_only_by_more_than_one_standard_error(
    tiny_spec, seed: int, kept: str
) -> None:
    X, y = weak_signal(seed)
    result = tune(tiny_spec, "regression", X, y, inner_folds=3, budget=5, seed=0)
    defaults = result.candidates[0]
    top = max(result.candidates, key=lambda c: c.mean_score)
    assert top is not defaults  # a candidate has the higher mean in both cases
    t = paired_t(top, defaults)
    if kept == "defaults":
        assert t < 1
        assert result.best_params == defaults.params
        assert result.best_score == pytest.approx(defaults.mean_score)
    else:
        assert t > 1
        assert result.best_params == top.params
        assert result.best_score == pytest.approx(top.mean_score)


def test_the_paper_protocol_takes_the_best_even_within_one_standard_error(tiny_spec) -> None:
    X, y = weak_signal(22)
    splits = inner_splits(y, "regression", 3, seed=0)
    result = tune(tiny_spec, "regression", X, y, inner_folds=3, budget=5, seed=0, splits=splits,
                  paper=True)  # fmt: skip
    top = max(result.candidates, key=lambda c: c.mean_score)
    assert paired_t(top, result.candidates[0]) < 1
    assert result.best_params == top.params
