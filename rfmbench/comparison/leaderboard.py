"""The leaderboard, on TabArena's terms: one complete set of tasks per table.

Per dataset, a model's score is the mean of the metric over the dataset's kept folds. A fold where a
model has no result (failed, timed out, skipped, absent) is either imputed with a named baseline's
result on that fold (TabArena's way; the share imputed is shown) or, with no imputation, dropped for
every model (the common tasks). Either way every model of a table is averaged over the same tasks,
and its failures are counted per dataset and per fold. The statistics themselves (Elo, improvability,
win rate) are in ``tabarena``.

``dataset_scores`` and ``dataset_ranks`` (missing = ranked last) are the older, per-dataset view
that the statistical tests of ``stats`` build on.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from rfmbench.comparison import tabarena
from rfmbench.errors import BadOption
from rfmbench.metrics import GREATER_IS_BETTER, PRIMARY_METRIC

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


# --- TabArena's terms: one complete task set per table -------------------------------------------

# TabArena's metric per task kind, used where the user does not choose one.
DEFAULT_METRIC = {"binary": "roc_auc", "multiclass": "log_loss", "regression": "rmse"}
# Where the default metric is missing (no probabilities, or an old file without n_classes).
FALLBACK_METRIC = {"classification": "accuracy", "regression": "r2"}
DEFAULT_IMPUTE_WITH = "random-forest"  # TabArena imputes failures with a random forest
DEFAULT_ELO_REFERENCE = "random-forest"  # and anchors its Elo on one at 1000
AUTO, NONE = "auto", "none"


def metric_error(values: pd.DataFrame | pd.Series, metric: str) -> pd.DataFrame | pd.Series:
    """TabArena's ``metric_error``: lower is better, 0 is perfect (1 - score for bounded scores)."""
    return 1.0 - values if GREATER_IS_BETTER[metric] else values


def dataset_metrics(results: pd.DataFrame, metric: str | None = None) -> pd.Series:
    """The metric each dataset is scored on (index: dataset, sorted).

    ``metric`` given: that one everywhere. Otherwise TabArena's: ROC-AUC for binary tasks, log
    loss for multiclass, RMSE for regression; a dataset where an ``ok`` row lacks it (a model
    without probabilities, a file without ``n_classes``) falls back to accuracy or R².
    """
    results = latest_rows(results)
    datasets = sorted(results["dataset"].unique())
    if metric is not None:
        return pd.Series(metric, index=datasets, dtype=object)
    chosen = {}
    for dataset, rows in results.groupby("dataset", sort=True):
        kind = rows["task_kind"].iloc[0]
        if kind == "regression":
            default = DEFAULT_METRIC["regression"]
        else:
            column = rows["n_classes"] if "n_classes" in rows else pd.Series(dtype=float)
            n_classes = pd.to_numeric(column, errors="coerce").dropna()
            default = None
            if len(n_classes):
                default = DEFAULT_METRIC["binary" if n_classes.max() <= 2 else "multiclass"]
        ok = rows[rows["status"] == "ok"]
        usable = (
            default is not None
            and default in ok.columns
            and pd.to_numeric(ok[default], errors="coerce").notna().all()
        )
        chosen[dataset] = default if usable else FALLBACK_METRIC[kind]
    return pd.Series(chosen, dtype=object).reindex(datasets)


def describe_metrics(metrics: pd.Series) -> str:
    """'roc_auc' or 'roc_auc (3 datasets), log_loss (2)' for a table's title."""
    counts = metrics.value_counts(sort=False)
    if len(counts) == 1:
        return str(counts.index[0])
    return ", ".join(
        f"{name} ({n} dataset{'s' * (n != 1)})" if i == 0 else f"{name} ({n})"
        for i, (name, n) in enumerate(counts.items())
    )


@dataclass(frozen=True)
class TaskSet:
    """The one set of tasks a table is computed on, and how it was made complete.

    ``scores`` and ``errors`` are dataset x model tables without a gap: with ``impute_with`` a
    model's missing fold (failed, timed out, skipped, absent, or an ``ok`` row without the metric)
    takes the ``impute_with`` model's result on the same fold, and a fold where that model has no
    result is dropped for all; without, only the folds where every model has a result count. A
    dataset that ends with no fold is in ``left_out`` with the reason.
    """

    metrics: pd.Series  # dataset -> metric of ``scores``
    scores: pd.DataFrame  # dataset x model: mean over the kept folds of the dataset's metric
    errors: pd.DataFrame  # the same, as TabArena's metric_error (lower is better)
    primary: pd.DataFrame  # dataset x model: accuracy or R², same folds and imputation
    imputed: pd.DataFrame  # dataset x model: share of the kept folds imputed
    failed_folds: pd.Series  # model -> folds without a result (all datasets, before imputing)
    failed_datasets: pd.Series  # model -> datasets with at least one such fold
    impute_with: str | None  # None: the common tasks
    left_out: dict[str, str]  # dataset -> why it is not in the table
    n_datasets_all: int
    n_folds: int  # (dataset, fold) units kept
    kinds: pd.Series  # dataset -> task kind

    def statement(self) -> str:
        """One line for under a table: which tasks, and how failures were handled."""
        n, total = len(self.scores.index), self.n_datasets_all
        if self.impute_with is None:
            text = (
                f"{n} of {total} datasets ({self.n_folds} folds where every model has a "
                f"result: the common tasks, no imputation)"
            )
        else:
            text = (
                f"{n} of {total} datasets ({self.n_folds} folds): a model's failed or missing "
                f"fold takes {self.impute_with}'s result there (imputed = share of its results "
                f"imputed)"
            )
        if self.left_out:
            text += "; left out: " + ", ".join(f"{d} ({why})" for d, why in self.left_out.items())
        return text


def resolve_impute_with(results: pd.DataFrame, impute_with: str | None) -> str | None:
    """``"auto"``: the default baseline when it is in the results, else the common tasks;
    ``"none"`` or None: the common tasks; a model name: that model (it must be in the results)."""
    models = sorted(results["model"].unique())
    return _resolve_model_option(
        "--impute-with", impute_with, models, DEFAULT_IMPUTE_WITH, "'none' for the common tasks"
    )


def resolve_elo_reference(models: list[str], reference: str | None) -> str | None:
    """``"auto"``: the default reference when present, else none (the models average 1000)."""
    return _resolve_model_option(
        "--elo-reference", reference, models, DEFAULT_ELO_REFERENCE, "'none' to centre the ratings"
    )


def _resolve_model_option(
    option: str, value: str | None, models: list[str], default: str, none_means: str
) -> str | None:
    """A model-naming option: None / ``"none"`` -> None, ``"auto"`` -> ``default`` when present."""
    if value in (None, NONE):
        return None
    if value == AUTO:
        return default if default in models else None
    if value not in models:
        raise BadOption(
            f"{option} {value}: no results for that model",
            hint=f"choose one of {', '.join(sorted(models))}, or {none_means}",
        )
    return value


def _fold_table(
    rows: pd.DataFrame, metric_of: pd.Series, units: pd.MultiIndex, models: list[str]
) -> pd.DataFrame:
    """(dataset, fold) x model values of each dataset's metric over ``ok`` rows; NaN elsewhere."""
    ok = rows[rows["status"] == "ok"]
    wanted = ok["dataset"].map(metric_of)
    value = pd.Series(np.nan, index=ok.index)
    for name in wanted.unique():
        if name in ok.columns:
            mask = wanted == name
            value[mask] = pd.to_numeric(ok.loc[mask, name], errors="coerce")
    frame = ok[["dataset", "fold", "model"]].assign(value=value.astype(float))
    table = frame.pivot_table(index=["dataset", "fold"], columns="model", values="value")
    return table.reindex(index=units, columns=models)


def task_set(
    results: pd.DataFrame, metric: str | None = None, *, impute_with: str | None = AUTO
) -> TaskSet:
    """Make the complete dataset x model tables every aggregate of one table is computed on.

    ``metric``: one metric for every dataset, or None for TabArena's per kind (see
    ``dataset_metrics``). ``impute_with``: see ``resolve_impute_with``.
    """
    results = latest_rows(results).copy()
    results["fold"] = results["fold"].astype(str)  # one key type, whatever the CSV held
    impute_with = resolve_impute_with(results, impute_with)
    models = sorted(results["model"].unique())
    metrics = dataset_metrics(results, metric)
    kinds = results.groupby("dataset")["task_kind"].first().reindex(metrics.index)
    primary_of = kinds.map(FALLBACK_METRIC)
    units = pd.MultiIndex.from_frame(
        results[["dataset", "fold"]].drop_duplicates().sort_values(["dataset", "fold"])
    )
    values = _fold_table(results, metrics, units, models)
    primary = _fold_table(results, primary_of, units, models)
    missing = values.isna()
    failed_folds = missing.sum(axis=0).astype(int)
    failed_datasets = missing.groupby(level="dataset").any().sum(axis=0).astype(int)

    left_out: dict[str, str] = {}
    if impute_with is None:
        keep = ~missing.any(axis=1)
        imputed = pd.DataFrame(False, index=values.index, columns=models)
        reason = "no fold where every model has a result"
    else:
        keep = ~missing[impute_with]
        imputed = missing & keep.to_numpy()[:, None]
        values = values.apply(lambda column: column.fillna(values[impute_with]))
        # Accuracy / R² imputed on exactly the same folds as the metric.
        fill = pd.DataFrame({m: primary[impute_with] for m in models}, index=primary.index)
        primary = primary.mask(imputed, fill)
        reason = f"{impute_with} has no result"
    datasets = list(metrics.index)
    kept_datasets = sorted(set(units[keep.to_numpy()].get_level_values("dataset")))
    for dataset in datasets:
        if dataset not in kept_datasets:
            left_out[dataset] = reason
    values, primary, imputed = (
        values[keep.to_numpy()],
        primary[keep.to_numpy()],
        imputed[keep.to_numpy()],
    )
    scores = values.groupby(level="dataset").mean().reindex(kept_datasets)
    metrics_kept = metrics.reindex(kept_datasets)
    errors = scores.apply(lambda row: metric_error(row, metrics_kept[row.name]), axis=1)
    return TaskSet(
        metrics=metrics_kept,
        scores=scores,
        errors=errors.reindex(columns=models),
        primary=primary.groupby(level="dataset").mean().reindex(kept_datasets),
        imputed=imputed.astype(float).groupby(level="dataset").mean().reindex(kept_datasets),
        failed_folds=failed_folds,
        failed_datasets=failed_datasets,
        impute_with=impute_with,
        left_out=left_out,
        n_datasets_all=len(datasets),
        n_folds=int(keep.sum()),
        kinds=kinds.reindex(kept_datasets),
    )


def model_table(
    tasks: TaskSet, *, elo_reference: str | None = AUTO, seed: int = 0
) -> tuple[pd.DataFrame, str | None]:
    """One row per model on ``tasks``, best Elo first, and the Elo reference used.

    Columns: rank, model, elo, elo_low, elo_high (95 % bootstrap interval over datasets, seeded),
    improvability, win_rate, mean_rank, mean_normalized_score, mean_accuracy (classification
    datasets) and mean_r2 (regression), wins (datasets where the model is best, ties included),
    imputed (share of its results imputed), failed_datasets, failed_folds, datasets.
    """
    errors = tasks.errors
    models = list(errors.columns)
    reference = resolve_elo_reference(models, elo_reference)
    table = tabarena.elo_with_interval(errors, reference, seed=seed)
    table["improvability"] = tabarena.improvability(errors)
    table["win_rate"] = tabarena.win_rate(errors)
    ranks = tabarena.error_ranks(errors)
    table["mean_rank"] = ranks.mean(axis=0)
    table["mean_normalized_score"] = normalized_scores(
        -errors, pd.Series(True, index=errors.index)
    ).mean(axis=0)
    kind_of = tasks.kinds
    for kind, column in (("classification", "mean_accuracy"), ("regression", "mean_r2")):
        of_kind = tasks.primary[kind_of == kind]
        table[column] = of_kind.mean(axis=0) if len(of_kind) else np.nan
    table["wins"] = ranks.eq(ranks.min(axis=1), axis=0).sum(axis=0).astype(int)
    table["imputed"] = tasks.imputed.mean(axis=0) if len(tasks.imputed) else 0.0
    table["failed_datasets"] = tasks.failed_datasets.reindex(models).astype(int)
    table["failed_folds"] = tasks.failed_folds.reindex(models).astype(int)
    table["datasets"] = len(errors.index)
    table = table.rename_axis("model").reset_index()
    table = table.sort_values(["elo", "mean_rank", "model"], ascending=[False, True, True])
    table.insert(0, "rank", np.arange(1, len(table) + 1))
    return table.reset_index(drop=True), reference


def leaderboard(
    results: pd.DataFrame,
    *,
    metric: str | None = None,
    impute_with: str | None = AUTO,
    elo_reference: str | None = AUTO,
    seed: int = 0,
) -> pd.DataFrame:
    """One row per model over every dataset of ``results`` (both kinds), on TabArena's terms.

    See ``model_table`` for the columns (and ``impute_with``, ``elo_reference``: the names used,
    '' for none) and ``task_set`` for the tasks. ``board.attrs`` holds ``note`` (which tasks, how
    failures were handled, the Elo reference and the metrics), the line to print under the table,
    and ``n_datasets_all``.
    """
    tasks = task_set(results, metric, impute_with=impute_with)
    board, reference = model_table(tasks, elo_reference=elo_reference, seed=seed)
    # The terms travel with the rows, so the written CSV says them too ('' for none).
    board["impute_with"] = tasks.impute_with or ""
    board["elo_reference"] = reference or ""
    board.attrs["note"] = table_note(tasks, reference)
    board.attrs["n_datasets_all"] = tasks.n_datasets_all
    return board


def table_note(tasks: TaskSet, reference: str | None) -> str:
    anchor = f"{reference} = 1000" if reference else "the models average 1000"
    return (
        f"{tasks.statement()}. Elo: {anchor}, 95% bootstrap interval over datasets. "
        f"Metric: {describe_metrics(tasks.metrics) if len(tasks.metrics) else '-'}."
    )
