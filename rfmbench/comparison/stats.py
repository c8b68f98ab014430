"""Statistics for comparing models over datasets: ranks, bootstrap intervals, win rates, tests.

Everything here is pure: a results frame in, dataclasses and frames out. Each task kind
(classification, regression) is compared on its own.

Rules for missing results, stated once: every number of a kind's comparison is computed on one
complete set of tasks (``leaderboard.task_set``). By default a model's failed or missing fold takes
a named baseline's result on that fold (TabArena's imputation; ``imputed`` is the share of a
model's results so filled); with ``impute_with="none"`` only the folds where every model has a
result count (the common tasks). Failures are counted per dataset and per fold either way. The
ranks, Elo, win rates, Friedman / Nemenyi and Wilcoxon tests all use that one table.

The metric, where the user does not choose one, is TabArena's per task: ROC-AUC (binary), log loss
(multiclass), RMSE (regression), compared as errors (lower is better); mean accuracy or R² is shown
beside it.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from rfmbench.comparison import tabarena
from rfmbench.comparison.leaderboard import (
    AUTO,
    NONE,
    TaskSet,
    latest_rows,
    model_table,
    table_note,
    task_set,
)
from rfmbench.errors import BadOption, ResultsFileError, check_seed, unknown
from rfmbench.metrics import (
    ALL_METRICS,
    CLASSIFICATION_METRICS,
    GREATER_IS_BETTER,
    REGRESSION_METRICS,
)

KINDS = ("classification", "regression")
METRICS_OF_KIND = {"classification": CLASSIFICATION_METRICS, "regression": REGRESSION_METRICS}
KEYS = ["dataset", "fold", "model"]
ALPHA = 0.05
BOOTSTRAP_RESAMPLES = 2000
FORMATS = ("table", "csv", "markdown", "latex", "json")


@dataclass(frozen=True)
class HypothesisTest:
    """An omnibus test over all models: what ran, on how much data, and what it says."""

    name: str
    statistic: float
    p_value: float
    n_datasets: int
    n_models: int
    min_p_value: float  # the smallest p-value this test could give with this many datasets
    ran: bool
    note: str  # "significant ...", "not significant ...", or why the test could not run

    @property
    def significant(self) -> bool:
        return self.ran and self.p_value < ALPHA


@dataclass(frozen=True)
class KindComparison:
    """The comparison of every model on the datasets of one task kind."""

    kind: str
    metric: str  # the metric of ``scores``: a name, or "error" when datasets use different ones
    greater_is_better: bool
    scores: pd.DataFrame  # dataset x model on the task set (no gap)
    ranks: pd.DataFrame  # dataset x model: 1 = best, ties averaged
    table: pd.DataFrame  # one row per model, best first (see ``compare_kind``)
    win_rate: pd.DataFrame  # model x model: share of datasets where row beats column
    friedman: HypothesisTest
    nemenyi: pd.DataFrame | None  # model x model p-values (None when Friedman cannot run)
    wilcoxon: pd.DataFrame  # one row per pair: n, statistic, p, Holm-adjusted p, min p
    tasks: TaskSet  # which datasets and folds, the metric of each, what was imputed
    elo_reference: str | None  # the model at Elo 1000 (None: the models average 1000)
    note: str  # the line under the table: tasks, imputation, Elo anchor, metrics

    @property
    def n_datasets(self) -> int:
        return len(self.scores.index)


def merge_runs(frames: list[pd.DataFrame]) -> tuple[pd.DataFrame, int]:
    """Concatenate runs in order; a later run's row for a (dataset, fold, model) wins.

    Returns the merged rows and how many rows of earlier runs were replaced by later ones (a
    retried job inside one run is not counted: its last row simply wins).
    """
    if not frames:
        raise ResultsFileError("no results to compare")
    deduped = [latest_rows(frame) for frame in frames]
    merged = pd.concat(deduped, ignore_index=True)
    final = latest_rows(merged)
    return final, len(merged) - len(final)


def resolve_metric(results: pd.DataFrame, metric: str | None) -> dict[str, str | None]:
    """The metric used for each task kind present in ``results``.

    ``None`` leaves each kind to TabArena's metric per dataset (``leaderboard.dataset_metrics``).
    A named metric applies to its own kind; a kind it does not fit is left out, and no dataset of
    its kind at all is an error.
    """
    kinds = [kind for kind in KINDS if (results["task_kind"] == kind).any()]
    if not kinds:
        raise ResultsFileError("the results have no rows with a task_kind to compare")
    if metric is None:
        return dict.fromkeys(kinds)
    if metric not in ALL_METRICS:
        raise unknown("metric", metric, list(ALL_METRICS))
    kind = next(k for k in KINDS if metric in METRICS_OF_KIND[k])
    if kind not in kinds:
        raise BadOption(
            f"--metric {metric} is a {kind} metric, but the results have only "
            f"{' and '.join(kinds)} datasets",
            hint=f"choose one of {', '.join(m for k in kinds for m in METRICS_OF_KIND[k])}",
        )
    return {kind: metric}


def check_options(
    *,
    metric: str | None = None,
    out: Path | None = None,
    plot: Path | None = None,
    plot_dir: Path | None = None,
    pair: str | list[str] | None = None,
    seed: int = 0,
    impute_with: str | None = AUTO,
    elo_reference: str | None = AUTO,
    format: str = "table",
) -> tuple[str, str] | None:
    """Check a comparison's options before any file is read or written; return the pair.

    ``metric`` must be a known metric name, ``out`` and ``plot`` writable file names (``plot``
    with a suffix matplotlib can write), ``plot_dir`` a folder, ``pair`` two distinct model
    names (a list, or one string ``"a,b"``), ``seed`` in 0..2**32-1. Whether the metric fits
    the results' task kinds, and whether the pair's models are in them, is checked when the
    results are read, as is whether ``impute_with`` and ``elo_reference`` name models of them
    (``"auto"`` and ``"none"`` are always valid). ``format`` is one of ``FORMATS``.
    """
    from rfmbench.files import check_out_dir, check_out_file

    check_seed(seed)
    if format not in FORMATS:
        raise unknown("format", format, list(FORMATS))
    for option, value in (("--impute-with", impute_with), ("--elo-reference", elo_reference)):
        if value is not None and not str(value).strip():
            raise BadOption(f"{option} needs a model name, 'auto' or 'none', got '{value}'")
    if metric is not None and metric not in ALL_METRICS:
        raise unknown("metric", metric, list(ALL_METRICS))
    if out is not None:
        check_out_file(out, "--out")
    if plot is not None:
        from rfmbench.comparison.plots import check_plot_path

        check_out_file(plot, "--plot")
        check_plot_path(plot)
    if plot_dir is not None:
        check_out_dir(plot_dir, "--plot-dir")
    if pair is None:
        return None
    names = [p.strip() for p in pair.split(",")] if isinstance(pair, str) else list(pair)
    if len(names) != 2 or not all(names) or names[0] == names[1]:
        shown = pair if isinstance(pair, str) else ",".join(pair)
        raise BadOption(f"--pair needs two different comma-separated models, got '{shown}'")
    return (names[0], names[1])


def compare(
    results: pd.DataFrame,
    metric: str | None = None,
    *,
    seed: int = 0,
    impute_with: str | None = AUTO,
    elo_reference: str | None = AUTO,
) -> list[KindComparison]:
    """Compare the models of ``results`` per task kind (see ``compare_kind``).

    A model named in ``impute_with`` or ``elo_reference`` must be in the results; a kind where it
    did not run is compared on its common tasks, or with centred Elo ratings.
    """
    check_seed(seed)
    results = latest_rows(results)
    models = set(results["model"].unique())
    for option, value in (("--impute-with", impute_with), ("--elo-reference", elo_reference)):
        if value not in (None, AUTO, NONE) and value not in models:
            raise BadOption(
                f"{option} {value}: no results for that model",
                hint=f"choose one of {', '.join(sorted(models))}, 'auto' or 'none'",
            )
    comparisons = []
    for kind, chosen in resolve_metric(results, metric).items():
        rows = results[results["task_kind"] == kind]
        present = set(rows["model"].unique())
        comparisons.append(
            compare_kind(
                rows,
                kind,
                chosen,
                seed=seed,
                impute_with=impute_with
                if impute_with in (None, AUTO, NONE) or impute_with in present
                else NONE,
                elo_reference=elo_reference
                if elo_reference in (None, AUTO, NONE) or elo_reference in present
                else NONE,
            )
        )
    return comparisons


def compare_kind(
    results: pd.DataFrame,
    kind: str,
    metric: str | None = None,
    *,
    seed: int = 0,
    impute_with: str | None = AUTO,
    elo_reference: str | None = AUTO,
) -> KindComparison:
    """TabArena's leaderboard, intervals, win rates and tests on one kind's rows.

    The per-model ``table`` has the columns of ``leaderboard.model_table`` (rank, model, elo,
    elo_low, elo_high, improvability, win_rate, mean_rank, mean_normalized_score, mean_accuracy
    or mean_r2, wins, imputed, failed_datasets, failed_folds, datasets) and, when every dataset
    uses one metric, mean_metric with ci_low, ci_high (a 95% percentile bootstrap over datasets,
    seeded by ``seed``). ``metric=None``: TabArena's metric per dataset.
    """
    results = latest_rows(results)
    tasks = task_set(results, metric, impute_with=impute_with)
    table, reference = model_table(tasks, elo_reference=elo_reference, seed=seed)
    table = table.drop(columns=["mean_r2" if kind == "classification" else "mean_accuracy"])
    order = list(table["model"])
    names = set(tasks.metrics)
    if len(names) == 1:
        (name,) = names
        scores, greater = tasks.scores[order], GREATER_IS_BETTER[name]
    else:  # different metrics per dataset: compare TabArena's errors (lower is better)
        name, scores, greater = "error", tasks.errors[order], False
    table["mean_metric"] = table["model"].map(scores.mean(axis=0))
    intervals = {model: bootstrap_ci(scores[model].to_numpy(), seed) for model in order}
    table["ci_low"] = [intervals[model][0] for model in order]
    table["ci_high"] = [intervals[model][1] for model in order]
    ranks = tabarena.error_ranks(tasks.errors)[order]
    friedman, nemenyi = friedman_test(ranks)
    note = table_note(tasks, reference)
    if name == "error":
        note += " Metrics differ between datasets: compared as errors (1 - score where higher is better)."
    return KindComparison(
        kind=kind,
        metric=name,
        greater_is_better=greater,
        scores=scores,
        ranks=ranks,
        table=table,
        win_rate=win_rates(ranks),
        friedman=friedman,
        nemenyi=nemenyi,
        wilcoxon=wilcoxon_holm(scores),
        tasks=tasks,
        elo_reference=reference,
        note=note,
    )


def bootstrap_ci(
    values: np.ndarray, seed: int = 0, confidence: float = 0.95
) -> tuple[float, float]:
    """A percentile bootstrap interval for the mean of ``values`` (NaN with fewer than 2)."""
    values = np.asarray(values, dtype=float)
    if len(values) < 2:
        return (math.nan, math.nan)
    if np.ptp(values) == 0:
        return (float(values[0]), float(values[0]))
    # Percentile, not BCa: with a handful of datasets BCa's jackknife is unstable.
    result = stats.bootstrap(
        (values,),
        np.mean,
        n_resamples=BOOTSTRAP_RESAMPLES,
        confidence_level=confidence,
        method="percentile",
        vectorized=True,
        rng=np.random.default_rng(seed),
    )
    return (float(result.confidence_interval.low), float(result.confidence_interval.high))


def win_rates(ranks: pd.DataFrame) -> pd.DataFrame:
    """Share of datasets where the row model ranks better than the column model; ties count half.

    Built on ``ranks``, so a model missing on a dataset loses there to every model with a score.
    The diagonal is NaN.
    """
    values = ranks.to_numpy()
    wins = (values[:, :, None] < values[:, None, :]).astype(float)
    wins += 0.5 * (values[:, :, None] == values[:, None, :])
    rate = wins.mean(axis=0)
    np.fill_diagonal(rate, np.nan)
    return pd.DataFrame(rate, index=ranks.columns, columns=ranks.columns)


def friedman_min_p(n_datasets: int, n_models: int) -> float:
    """Friedman's smallest p-value: every dataset ranks the models the same way (chi² = n(k-1))."""
    return float(stats.chi2.sf(n_datasets * (n_models - 1), n_models - 1))


def wilcoxon_min_p(n_pairs: int) -> float:
    """A two-sided exact Wilcoxon signed-rank test's smallest p-value on ``n_pairs`` pairs: 2 / 2^n."""
    return 2.0 ** (1 - n_pairs) if n_pairs > 0 else 1.0


def friedman_test(ranks: pd.DataFrame) -> tuple[HypothesisTest, pd.DataFrame | None]:
    """Friedman's test over the dataset x model rank matrix, and the Nemenyi post-hoc p-values."""
    n, k = ranks.shape
    name = "Friedman"
    if k < 3 or n < 2:
        why = f"needs at least 3 models and 2 datasets, got {k} models and {n} datasets"
        return HypothesisTest(
            name, math.nan, math.nan, n, k, math.nan, False, f"cannot run: {why}"
        ), None
    min_p = friedman_min_p(n, k)
    statistic, p_value = stats.friedmanchisquare(*(ranks[column] for column in ranks))
    if not np.isfinite(p_value):  # every dataset ties every model
        note = "cannot run: every model ties on every dataset"
        return HypothesisTest(name, math.nan, math.nan, n, k, min_p, False, note), None
    verdict = "significant" if p_value < ALPHA else "not significant"
    note = f"{verdict} at alpha={ALPHA} (n={n} datasets, k={k} models)"
    if min_p >= ALPHA:
        note += f"; with {n} datasets p cannot go below {min_p:.3g}"
    result = HypothesisTest(name, float(statistic), float(p_value), n, k, min_p, True, note)
    import scikit_posthocs as sp

    nemenyi = sp.posthoc_nemenyi_friedman(ranks.to_numpy())
    nemenyi.index = nemenyi.columns = ranks.columns
    return result, nemenyi


def wilcoxon_holm(scores: pd.DataFrame) -> pd.DataFrame:
    """Two-sided Wilcoxon signed-rank tests between every pair of models, Holm-corrected.

    Each pair uses the datasets where both models have a score; ``min_p`` is the smallest p-value
    that many pairs allow, so a pair with ``min_p >= 0.05`` could never be significant.
    """
    from statsmodels.stats.multitest import multipletests

    rows = []
    models = list(scores.columns)
    for i, a in enumerate(models):
        for b in models[i + 1 :]:
            both = scores[[a, b]].dropna()
            difference = (both[a] - both[b]).round(12)
            n = int(len(both))
            statistic = p_value = math.nan
            if n and (difference != 0).any():
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # small-sample and zero-difference notes
                    test = stats.wilcoxon(difference)
                statistic, p_value = float(test.statistic), float(test.pvalue)
            elif n:
                p_value = 1.0  # identical on every shared dataset
            rows.append(
                {
                    "model_a": a,
                    "model_b": b,
                    "n": n,
                    "median_difference": float(difference.median()) if n else math.nan,
                    "statistic": statistic,
                    "p_value": p_value,
                    "min_p": wilcoxon_min_p(n),
                }
            )
    table = pd.DataFrame(
        rows,
        columns=["model_a", "model_b", "n", "median_difference", "statistic", "p_value", "min_p"],
    )
    tested = table["p_value"].notna()
    table["p_holm"] = math.nan
    if tested.any():
        table.loc[tested, "p_holm"] = multipletests(table.loc[tested, "p_value"], method="holm")[1]
    table["significant"] = table["p_holm"] < ALPHA
    return table


def summary_frame(comparisons: list[KindComparison]) -> pd.DataFrame:
    """One CSV-ready frame: every kind's per-model table with ``task_kind`` and ``metric`` columns,
    and the task set's terms (``impute_with``, ``elo_reference``: '' for none)."""
    frames = []
    for comparison in comparisons:
        frame = comparison.table.copy()
        frame.insert(0, "task_kind", comparison.kind)
        frame.insert(3, "metric", comparison.metric)
        frame["impute_with"] = comparison.tasks.impute_with or ""
        frame["elo_reference"] = comparison.elo_reference or ""
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def comparisons_json(comparisons: list[KindComparison]) -> str:
    """Every kind's table and terms as one JSON document (NaN as null)."""
    import json

    documents = []
    for comparison in comparisons:
        tasks = comparison.tasks
        table = comparison.table.astype(object).where(comparison.table.notna(), None)
        documents.append(
            {
                "task_kind": comparison.kind,
                "metric": comparison.metric,
                "metrics": {str(d): m for d, m in tasks.metrics.items()},
                "greater_is_better": comparison.greater_is_better,
                "datasets": len(tasks.scores.index),
                "datasets_all": tasks.n_datasets_all,
                "left_out": tasks.left_out,
                "impute_with": tasks.impute_with,
                "elo_reference": comparison.elo_reference,
                "note": comparison.note,
                "table": table.to_dict(orient="records"),
            }
        )
    return json.dumps(documents, indent=2, default=_json_value)


def _json_value(value: object) -> object:
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return None if math.isnan(value) else float(value)
    if isinstance(value, np.bool_):
        return bool(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")
