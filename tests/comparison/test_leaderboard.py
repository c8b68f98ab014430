"""The leaderboard on a small example whose ranks, scores and wins are worked out by hand.

Three datasets x three models, two folds each:

    d1 (classification)  A 0.9/0.8 -> 0.85   B 0.7/0.7 -> 0.70   C 0.85/0.85 -> 0.85  (A, C tie)
    d2 (classification)  A 0.6/0.6 -> 0.60   B 0.9/0.9 -> 0.90   C failed on both folds
    d3 (regression, R2)  A 0.5/0.5 -> 0.50   B 0.8/0.8 -> 0.80   C 0.3/0.3 -> 0.30

The d1 tie is exact only up to float noise: (0.9 + 0.8) / 2 != 0.85 in floating point.
d3/A fold 0 was first written with R2 -1.0, d3/B fold 1 first failed; both were retried later, and
the later row wins.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from rfmbench.comparison.leaderboard import (
    dataset_metrics,
    dataset_ranks,
    dataset_scores,
    latest_rows,
    leaderboard,
    normalized_scores,
    task_set,
)
from rfmbench.errors import BadOption

SCORES = {
    ("d1", "A"): [0.9, 0.8],
    ("d1", "B"): [0.7, 0.7],
    ("d1", "C"): [0.85, 0.85],
    ("d2", "A"): [0.6, 0.6],
    ("d2", "B"): [0.9, 0.9],
    ("d2", "C"): [None, None],  # failed
    ("d3", "A"): [0.5, 0.5],
    ("d3", "B"): [0.8, 0.8],
    ("d3", "C"): [0.3, 0.3],
}
KINDS = {"d1": "classification", "d2": "classification", "d3": "regression"}


def row(dataset: str, model: str, fold: int, score: float | None) -> dict:
    kind = KINDS[dataset]
    metric = "accuracy" if kind == "classification" else "r2"
    return {
        "dataset": dataset,
        "task_kind": kind,
        "fold": fold,
        "model": model,
        "status": "failed" if score is None else "ok",
        "error": "RuntimeError: boom" if score is None else "",
        "accuracy": np.nan,
        "r2": np.nan,
        "log_loss": np.nan,
        metric: np.nan if score is None else score,
        # log loss, smaller is better, ordered against accuracy on purpose (for metric=...)
        **({"log_loss": 1.0 - score} if kind == "classification" and score is not None else {}),
    }


@pytest.fixture
def results() -> pd.DataFrame:
    early = [row("d3", "A", 0, -1.0), row("d3", "B", 1, None)]  # superseded by later rows
    rows = [
        row(dataset, model, fold, score)
        for (dataset, model), scores in SCORES.items()
        for fold, score in enumerate(scores)
    ]
    return pd.DataFrame(early + rows)


EXPECTED_SCORES = pd.DataFrame(
    {"A": [0.85, 0.6, 0.5], "B": [0.7, 0.9, 0.8], "C": [0.85, np.nan, 0.3]},
    index=["d1", "d2", "d3"],
)
EXPECTED_RANKS = pd.DataFrame(
    {"A": [1.5, 2.0, 2.0], "B": [3.0, 1.0, 1.0], "C": [1.5, 3.0, 3.0]}, index=["d1", "d2", "d3"]
)


def test_latest_rows_keep_the_last_written(results: pd.DataFrame) -> None:
    latest = latest_rows(results)
    assert len(latest) == 18
    d3 = latest[latest["dataset"] == "d3"].set_index(["model", "fold"])
    assert d3.loc[("A", 0), "r2"] == 0.5
    assert d3.loc[("B", 1), "status"] == "ok"


def test_dataset_scores_average_the_ok_folds(results: pd.DataFrame) -> None:
    scores = dataset_scores(results)
    pd.testing.assert_frame_equal(
        scores, EXPECTED_SCORES, check_names=False, check_index_type=False
    )


def test_dataset_scores_for_a_named_metric(results: pd.DataFrame) -> None:
    classification = results[results["task_kind"] == "classification"]
    scores = dataset_scores(classification, metric="log_loss")
    expected = 1.0 - EXPECTED_SCORES.loc[["d1", "d2"]]
    pd.testing.assert_frame_equal(scores, expected, check_names=False)


def test_ranks_by_hand_with_a_tie_and_a_failure_last() -> None:
    ranks = dataset_ranks(EXPECTED_SCORES)
    pd.testing.assert_frame_equal(ranks, EXPECTED_RANKS, check_names=False)


def test_ranks_when_smaller_is_better() -> None:
    losses = 1.0 - EXPECTED_SCORES  # the same order as the scores, by construction
    pd.testing.assert_frame_equal(dataset_ranks(losses, False), EXPECTED_RANKS)
    per_dataset = pd.Series([False, False, False], index=losses.index)
    pd.testing.assert_frame_equal(dataset_ranks(losses, per_dataset), EXPECTED_RANKS)


def test_normalized_scores_span_zero_to_one() -> None:
    greater = pd.Series(True, index=EXPECTED_SCORES.index)
    normalized = normalized_scores(EXPECTED_SCORES, greater)
    expected = pd.DataFrame(
        {"A": [1.0, 0.0, 0.4], "B": [0.0, 1.0, 1.0], "C": [1.0, 0.0, 0.0]},
        index=["d1", "d2", "d3"],
    )
    pd.testing.assert_frame_equal(normalized, expected, atol=1e-12)
    # smaller-is-better flips the scale: the lowest loss is 1
    flipped = normalized_scores(-EXPECTED_SCORES, ~greater)
    pd.testing.assert_frame_equal(flipped, expected, atol=1e-12)


def test_normalized_scores_when_every_model_ties_or_fails() -> None:
    scores = pd.DataFrame(
        {"A": [0.5, np.nan, 0.7], "B": [0.5, np.nan, np.nan]}, index=["tie", "none", "one"]
    )
    normalized = normalized_scores(scores, pd.Series(True, index=scores.index))
    expected = pd.DataFrame({"A": [1.0, 0.0, 1.0], "B": [1.0, 0.0, 0.0]}, index=scores.index)
    pd.testing.assert_frame_equal(normalized, expected)


def test_leaderboard_on_the_common_tasks(results: pd.DataFrame) -> None:
    # No random-forest to impute with, so "auto" compares on the folds every model finished:
    # d2 (C failed on both folds) is left out. Errors: d1 (1 - accuracy) A .15 B .30 C .15;
    # d3 (1 - R², the fixture has no RMSE) A .5 B .2 C .7.
    board = leaderboard(results).set_index("model")
    assert board["datasets"].tolist() == [2, 2, 2]
    assert (
        "2 of 3 datasets" in board.attrs["note"]
        and "d2 (no fold where every" in board.attrs["note"]
    )
    assert "the models average 1000" in board.attrs["note"]
    # Ranks d1: A 1.5 B 3 C 1.5; d3: A 2 B 1 C 3.
    assert board["mean_rank"].to_dict() == pytest.approx({"A": 1.75, "B": 2.0, "C": 2.25})
    # Battles won of 4: A .5 + 1 + 1, B 0 + 2, C 1.5 + 0.
    assert board["win_rate"].to_dict() == pytest.approx({"A": 2.5 / 4, "B": 0.5, "C": 1.5 / 4})
    # 1 - best / error: d1 A 0 B .5 C 0; d3 A .6 B 0 C 1 - .2/.7.
    assert board["improvability"].to_dict() == pytest.approx(
        {"A": 0.3, "B": 0.25, "C": (1 - 0.2 / 0.7) / 2}
    )
    assert board.index.tolist() == ["A", "B", "C"]  # by Elo: wins 2.5, 2, 1.5
    assert board["elo"].mean() == pytest.approx(1000)
    assert board["mean_accuracy"].to_dict() == pytest.approx({"A": 0.85, "B": 0.7, "C": 0.85})
    assert board["mean_r2"].to_dict() == pytest.approx({"A": 0.5, "B": 0.8, "C": 0.3})
    assert board["wins"].to_dict() == {"A": 1, "B": 1, "C": 1}  # the d1 tie is a win for both
    assert board["failed_datasets"].to_dict() == {"A": 0, "B": 0, "C": 1}
    assert board["failed_folds"].to_dict() == {"A": 0, "B": 0, "C": 2}  # B's retry is not one
    assert board["imputed"].to_dict() == {"A": 0.0, "B": 0.0, "C": 0.0}


def test_leaderboard_with_failures_imputed(results: pd.DataFrame) -> None:
    # C's two failed folds on d2 take A's results (0.6): every model is averaged over d1-d3.
    board = leaderboard(results, impute_with="A", elo_reference="B").set_index("model")
    assert board["datasets"].tolist() == [3, 3, 3]
    assert board.loc["B", "elo"] == 1000
    assert board["imputed"].to_dict() == pytest.approx({"A": 0, "B": 0, "C": 1 / 3})
    assert board["mean_accuracy"].to_dict() == pytest.approx(
        {"A": 0.725, "B": 0.8, "C": (0.85 + 0.6) / 2}
    )
    assert board["failed_datasets"].to_dict() == {"A": 0, "B": 0, "C": 1}
    note = board.attrs["note"]
    assert "3 of 3 datasets" in note and "takes A's result" in note and "B = 1000" in note
    with pytest.raises(BadOption, match="--impute-with Z: no results for that model"):
        leaderboard(results, impute_with="Z")
    with pytest.raises(BadOption, match="--elo-reference Z"):
        leaderboard(results, elo_reference="Z")


def test_a_model_that_failed_everywhere_leaves_no_common_task(results) -> None:
    failed = pd.DataFrame([row(d, "Z", f, None) for d in KINDS for f in (0, 1)])
    both = pd.concat([results, failed])
    board = leaderboard(both).set_index("model")
    assert board["datasets"].tolist() == [0, 0, 0, 0]
    assert board.loc["Z", "failed_datasets"] == 3 and board.loc["Z", "failed_folds"] == 6
    # Imputed with B, Z has B's results everywhere: it ties B on every dataset.
    board = leaderboard(both, impute_with="B").set_index("model")
    assert board.loc["Z", "imputed"] == 1.0
    assert board.loc["Z", "elo"] == pytest.approx(board.loc["B", "elo"])
    assert board.loc["Z", "mean_rank"] == pytest.approx(board.loc["B", "mean_rank"])


def test_default_metric_follows_tabarena_and_falls_back_when_missing() -> None:
    rows = []
    for dataset, kind, n_classes in (
        ("bin", "classification", 2),
        ("multi", "classification", 3),
        ("reg", "regression", 0),
        ("old", "classification", None),  # a file without n_classes
        ("noproba", "classification", 2),  # a model without probabilities
    ):
        for model in ("A", "B"):
            rows.append(
                {
                    "dataset": dataset,
                    "task_kind": kind,
                    "fold": 0,
                    "model": model,
                    "status": "ok",
                    "n_classes": n_classes,
                    "accuracy": 0.9,
                    "roc_auc": np.nan if (dataset, model) == ("noproba", "B") else 0.95,
                    "log_loss": 0.3,
                    "rmse": 1.5,
                    "r2": 0.5,
                }
            )
    frame = pd.DataFrame(rows)
    assert dataset_metrics(frame).to_dict() == {
        "bin": "roc_auc",
        "multi": "log_loss",
        "noproba": "accuracy",
        "old": "accuracy",
        "reg": "rmse",
    }
    assert set(dataset_metrics(frame, "accuracy")) == {"accuracy"}
    tasks = task_set(frame)
    # TabArena's errors: 1 - AUC, log loss, RMSE, 1 - accuracy.
    assert tasks.errors["A"].to_dict() == pytest.approx(
        {"bin": 0.05, "multi": 0.3, "noproba": 0.1, "old": 0.1, "reg": 1.5}
    )
