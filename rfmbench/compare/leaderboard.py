"""The leaderboard: models ranked by their average rank over datasets.

Per dataset, a model's score is the mean of the metric over its ``ok`` folds. A model with no ``ok``
fold on a dataset (failed, timed out, missing) is ranked last there, ties averaged, and counted under
``failures``: it is never silently dropped.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from rfmbench.metrics import PRIMARY_METRIC

KEYS = ["dataset", "fold", "model"]


def latest_rows(results: pd.DataFrame) -> pd.DataFrame:
    """One row per (dataset, fold, model): the last one written wins (a retried job)."""
    return results.drop_duplicates(KEYS, keep="last").reset_index(drop=True)


def dataset_scores(results: pd.DataFrame, metric: str | None = None) -> pd.DataFrame:
    """A dataset x model table of mean metric over ``ok`` folds (NaN where a model has none).

    With ``metric=None`` each dataset uses its kind's primary metric (accuracy or R²).
    """
    results = latest_rows(results)
    ok = results[results["status"] == "ok"].copy()
    if metric is None:
        ok["score"] = [row[PRIMARY_METRIC[row["task_kind"]]] for _, row in ok.iterrows()]
    else:
        ok["score"] = ok[metric]
    table = ok.pivot_table(index="dataset", columns="model", values="score", aggfunc="mean")
    all_models = sorted(results["model"].unique())
    all_datasets = sorted(results["dataset"].unique())
    return table.reindex(index=all_datasets, columns=all_models)


def dataset_ranks(scores: pd.DataFrame, greater_is_better: bool | pd.Series = True) -> pd.DataFrame:
    """Rank models within each dataset (1 = best); missing scores rank last; ties get the mean rank."""
    if isinstance(greater_is_better, bool):
        greater_is_better = pd.Series(greater_is_better, index=scores.index)
    signed = scores.mul(np.where(greater_is_better.reindex(scores.index), 1.0, -1.0), axis=0)
    # Round off float noise first: means of equal fold totals (0.9, 0.8 vs 0.85, 0.85) must tie.
    signed = signed.round(12)
    return signed.rank(axis=1, ascending=False, method="average", na_option="bottom")


def normalized_scores(scores: pd.DataFrame, greater_is_better: pd.Series) -> pd.DataFrame:
    """Per dataset: 0 = worst model, 1 = best; a missing model counts as 0."""
    signed = scores.mul(np.where(greater_is_better.reindex(scores.index), 1.0, -1.0), axis=0)
    low, high = signed.min(axis=1), signed.max(axis=1)
    span = (high - low).replace(0, np.nan)
    normalized = signed.sub(low, axis=0).div(span, axis=0)
    normalized[span.isna()] = 1.0  # every model tied
    return normalized.where(scores.notna(), 0.0)


def leaderboard(results: pd.DataFrame) -> pd.DataFrame:
    """One row per model: rank, mean rank, mean accuracy / R², normalized score, wins, failures."""
    results = latest_rows(results)
    scores = dataset_scores(results)
    kinds = results.groupby("dataset")["task_kind"].first().reindex(scores.index)
    greater = pd.Series(True, index=scores.index)  # accuracy and R² are both larger-is-better
    ranks = dataset_ranks(scores, greater)
    normalized = normalized_scores(scores, greater)
    best = ranks.min(axis=1)
    board = pd.DataFrame(index=scores.columns)
    board["mean_rank"] = ranks.mean(axis=0)
    for kind, column in (("classification", "mean_accuracy"), ("regression", "mean_r2")):
        of_kind = scores[kinds == kind]
        board[column] = of_kind.mean(axis=0) if len(of_kind) else np.nan
    board["mean_normalized_score"] = normalized.mean(axis=0)
    board["wins"] = ranks.eq(best, axis=0).where(scores.notna(), False).sum(axis=0).astype(int)
    board["datasets_completed"] = scores.notna().sum(axis=0).astype(int)
    failed = results[results["status"] != "ok"]
    board["failures"] = failed.groupby("model").size().reindex(board.index).fillna(0).astype(int)
    board["datasets"] = len(scores.index)
    board = board.sort_values(["mean_rank", "mean_normalized_score"], ascending=[True, False])
    board.insert(0, "rank", np.arange(1, len(board) + 1))
    return board.rename_axis("model").reset_index()
