"""compare.stats against hand computations and scipy / scikit-posthocs run independently."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import scikit_posthocs as sp
from scipy import stats

from rfmbench.comparison.stats import (
    bootstrap_ci,
    compare,
    compare_kind,
    merge_runs,
    resolve_metric,
    summary_frame,
    wilcoxon_min_p,
)
from rfmbench.errors import BadOption, UnknownName


def rows_from(scores: dict[str, dict[str, float | None]], kind: str, metric: str) -> pd.DataFrame:
    """A results frame with one fold per (dataset, model); None = a failed job."""
    rows = []
    for dataset, by_model in scores.items():
        for model, value in by_model.items():
            failed = value is None
            rows.append(
                {
                    "run_id": "r",
                    "dataset": dataset,
                    "task_kind": kind,
                    "fold": 0,
                    "model": model,
                    "status": "failed" if failed else "ok",
                    metric: math.nan if failed else value,
                }
            )
    return pd.DataFrame(rows)


# d1: a > b > c;  d2: c best, a and b tie;  d3: b failed, a > c.
HAND = {
    "d1": {"a": 0.9, "b": 0.8, "c": 0.7},
    "d2": {"a": 0.8, "b": 0.8, "c": 0.9},
    "d3": {"a": 0.7, "b": None, "c": 0.6},
}


def test_ranks_win_rates_and_table_match_a_hand_computation():
    # No random-forest in the results: the common tasks, d1 and d2 (b failed on d3).
    # Errors (1 - accuracy): d1 a .1 b .2 c .3; d2 a .2 b .2 c .1.
    (result,) = compare(rows_from(HAND, "classification", "accuracy"))
    assert result.metric == "accuracy" and result.n_datasets == 2
    assert result.tasks.left_out == {"d3": "no fold where every model has a result"}
    table = result.table.set_index("model")
    assert list(result.table["model"]) == ["a", "c", "b"]  # by Elo: battles won 2.5, 2, 1.5
    assert list(result.table.columns[:2]) == ["rank", "model"]
    # Ranks by hand: a 1, 2.5; b 2, 2.5; c 3, 1.
    assert table["mean_rank"].to_dict() == pytest.approx({"a": 1.75, "b": 2.25, "c": 2.0})
    assert result.ranks.loc["d2"].to_dict() == {"a": 2.5, "c": 1.0, "b": 2.5}
    # Every mean is over the same two datasets.
    assert table["mean_metric"].to_dict() == pytest.approx({"a": 0.85, "b": 0.8, "c": 0.8})
    assert table["mean_accuracy"].to_dict() == pytest.approx({"a": 0.85, "b": 0.8, "c": 0.8})
    # Normalized: d1 a 1 b .5 c 0; d2 a 0 b 0 c 1.
    assert table["mean_normalized_score"].to_dict() == pytest.approx(
        {"a": 0.5, "b": 0.25, "c": 0.5}
    )
    assert table["wins"].to_dict() == {"a": 1, "b": 0, "c": 1}
    assert table["failed_datasets"].to_dict() == {"a": 0, "b": 1, "c": 0}
    assert table["failed_folds"].to_dict() == {"a": 0, "b": 1, "c": 0}
    assert table["win_rate"].to_dict() == pytest.approx({"a": 2.5 / 4, "b": 1.5 / 4, "c": 0.5})
    # Win-rate matrix by hand, ties count half.
    rate = result.win_rate
    assert rate.loc["a", "b"] == pytest.approx(0.75)
    assert rate.loc["b", "a"] == pytest.approx(0.25)
    assert rate.loc["a", "c"] == pytest.approx(0.5)
    assert rate.loc["c", "b"] == pytest.approx(0.5)
    assert np.isnan(rate.loc["a", "a"])
    assert (result.wilcoxon["n"] == 2).all()  # the tests see the same two datasets


def test_imputing_a_failure_with_a_named_model():
    # b's failed d3 takes c's result (0.6): three datasets, b's share imputed 1/3.
    (result,) = compare(rows_from(HAND, "classification", "accuracy"), impute_with="c")
    table = result.table.set_index("model")
    assert result.n_datasets == 3 and result.tasks.impute_with == "c"
    assert table["imputed"].to_dict() == pytest.approx({"a": 0, "b": 1 / 3, "c": 0})
    assert table["mean_metric"].to_dict() == pytest.approx(
        {"a": 0.8, "b": (0.8 + 0.8 + 0.6) / 3, "c": (0.7 + 0.9 + 0.6) / 3}
    )
    assert "takes c's result" in result.note
    with pytest.raises(BadOption, match="--impute-with zzz: no results for that model"):
        compare(rows_from(HAND, "classification", "accuracy"), impute_with="zzz")


def test_lower_is_better_metric_ranks_the_smallest_first():
    scores = {"d1": {"a": 1.0, "b": 2.0}, "d2": {"a": 3.0, "b": 2.5}, "d3": {"a": 0.5, "b": 0.6}}
    (result,) = compare(rows_from(scores, "regression", "rmse"), metric="rmse")
    assert not result.greater_is_better
    assert result.ranks.loc["d1"].to_dict() == {"a": 1.0, "b": 2.0}
    assert result.ranks.loc["d2"].to_dict() == {"a": 2.0, "b": 1.0}
    assert result.table["model"].iloc[0] == "a"


def random_scores(n_datasets: int, models: list[str], seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {
        f"d{i}": {m: float(0.7 + 0.05 * j + rng.normal(0, 0.05)) for j, m in enumerate(models)}
        for i in range(n_datasets)
    }


def test_friedman_and_nemenyi_agree_with_scipy_and_scikit_posthocs_on_the_score_matrix():
    models = ["m0", "m1", "m2", "m3"]
    scores = random_scores(8, models)
    (result,) = compare(rows_from(scores, "classification", "accuracy"))
    matrix = pd.DataFrame(scores).T[models]
    expected = stats.friedmanchisquare(*(matrix[m] for m in models))
    assert result.friedman.ran and result.friedman.name == "Friedman"
    assert result.friedman.statistic == pytest.approx(expected.statistic)
    assert result.friedman.p_value == pytest.approx(expected.pvalue)
    assert result.friedman.n_datasets == 8 and result.friedman.n_models == 4
    verdict = "significant" if expected.pvalue < 0.05 else "not significant"
    assert result.friedman.note.startswith(verdict)
    nemenyi = sp.posthoc_nemenyi_friedman(matrix.to_numpy())
    nemenyi.index = nemenyi.columns = models
    assert np.allclose(
        result.nemenyi.loc[models, models].to_numpy(), nemenyi.to_numpy(), atol=1e-12
    )


def test_wilcoxon_holm_agrees_with_scipy_and_reports_the_smallest_reachable_p():
    models = ["a", "b", "c"]
    scores = random_scores(5, models, seed=3)
    (result,) = compare(rows_from(scores, "classification", "accuracy"))
    matrix = pd.DataFrame(scores).T
    pairs = result.wilcoxon.set_index(["model_a", "model_b"])
    raw = {}
    for (a, b), row in pairs.iterrows():
        expected = stats.wilcoxon(matrix[a] - matrix[b])
        assert row["p_value"] == pytest.approx(expected.pvalue)
        assert row["n"] == 5 and row["min_p"] == pytest.approx(0.0625)
        raw[(a, b)] = expected.pvalue
    # Holm by hand: sort ascending, multiply by (m - i), running max, cap at 1.
    ordered = sorted(raw, key=raw.get)
    running = 0.0
    for i, pair in enumerate(ordered):
        running = max(running, min(1.0, raw[pair] * (len(ordered) - i)))
        assert pairs.loc[pair, "p_holm"] == pytest.approx(running)
    assert not pairs["significant"].any()  # 5 datasets: no pair can reach 0.05
    assert wilcoxon_min_p(5) == 0.0625 and wilcoxon_min_p(6) == 0.03125


def test_friedman_says_plainly_when_it_cannot_run():
    two_models = random_scores(6, ["a", "b"])
    (result,) = compare(rows_from(two_models, "classification", "accuracy"))
    assert not result.friedman.ran and result.nemenyi is None
    assert "cannot run" in result.friedman.note and "3 models" in result.friedman.note
    one_dataset = random_scores(1, ["a", "b", "c"])
    (result,) = compare(rows_from(one_dataset, "classification", "accuracy"))
    assert not result.friedman.ran and "2 datasets" in result.friedman.note


def test_friedman_notes_when_the_datasets_are_too_few_for_significance():
    # 2 datasets, 3 models: even a perfect agreement gives p = chi2.sf(4, 2) = 0.135.
    scores = {"d1": {"a": 0.9, "b": 0.8, "c": 0.7}, "d2": {"a": 0.9, "b": 0.8, "c": 0.7}}
    (result,) = compare(rows_from(scores, "classification", "accuracy"))
    assert result.friedman.min_p_value == pytest.approx(stats.chi2.sf(4, 2))
    assert result.friedman.p_value == pytest.approx(result.friedman.min_p_value)
    assert "not significant" in result.friedman.note and "cannot go below" in result.friedman.note


def test_bootstrap_interval_is_seeded_and_brackets_the_mean():
    values = np.array([0.7, 0.8, 0.85, 0.9, 0.95, 0.6])
    low, high = bootstrap_ci(values, seed=1)
    assert low < values.mean() < high
    assert (low, high) == bootstrap_ci(values, seed=1)
    assert all(math.isnan(v) for v in bootstrap_ci(np.array([0.5])))
    assert bootstrap_ci(np.array([0.5, 0.5])) == (0.5, 0.5)


def test_metric_choice_respects_kinds():
    mixed = pd.concat(
        [
            rows_from(random_scores(3, ["a", "b"]), "classification", "accuracy"),
            rows_from({"r1": {"a": 0.5, "b": 0.6}}, "regression", "r2"),
        ]
    )
    assert resolve_metric(mixed, None) == {"classification": None, "regression": None}
    assert resolve_metric(mixed, "rmse") == {"regression": "rmse"}
    classification = rows_from(random_scores(3, ["a", "b"]), "classification", "accuracy")
    with pytest.raises(BadOption, match="rmse is a regression metric"):
        resolve_metric(classification, "rmse")
    with pytest.raises(UnknownName, match="unknown metric 'f1'"):
        resolve_metric(classification, "f1")
    kinds = [c.kind for c in compare(mixed)]
    assert kinds == ["classification", "regression"]
    frame = summary_frame(compare(mixed))
    assert {"task_kind", "rank", "model", "metric", "ci_low", "ci_high"} <= set(frame.columns)
    assert sorted(frame["task_kind"].unique()) == ["classification", "regression"]


def test_merge_runs_lets_the_later_run_win_and_counts_replacements():
    first = rows_from({"d1": {"a": 0.1, "b": 0.2}, "d2": {"a": 0.3}}, "classification", "accuracy")
    second = rows_from({"d1": {"a": 0.9}}, "classification", "accuracy")
    merged, replaced = merge_runs([first, second])
    assert replaced == 1 and len(merged) == 3
    value = merged.loc[(merged["dataset"] == "d1") & (merged["model"] == "a"), "accuracy"]
    assert value.tolist() == [0.9]
    # A retry inside one run is not a replacement between runs.
    _, replaced = merge_runs([pd.concat([first, first])])
    assert replaced == 0


def test_compare_kind_uses_only_the_rows_given():
    scores = random_scores(4, ["a", "b", "c"])
    result = compare_kind(
        rows_from(scores, "classification", "accuracy"), "classification", "accuracy"
    )
    assert result.scores.shape == (4, 3)
