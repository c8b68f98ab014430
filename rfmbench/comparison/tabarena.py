"""TabArena's leaderboard statistics on a complete dataset x model table of errors.

Every function here takes ``errors``: one row per dataset, one column per model, no missing value
(the task set is made complete before, see ``leaderboard.task_set``), lower is better. The formulas
are those of TabArena's evaluation engine (``bencheval``, Apache-2.0), written out so they can be
read and tested without it:

- **Elo**: a Bradley-Terry model fitted by maximum likelihood to the pairwise battles of every pair
  of models on every dataset (a tie is half a win for each), on the scale ``1000 + 400 log10``
  strength, each dataset weighing 1. It is shifted so that a reference model has 1000.
- **Elo interval**: datasets resampled with replacement (a seeded bootstrap); the 2.5 % and 97.5 %
  quantiles of the unanchored ratings, taken as distances from the unanchored point estimate and
  put around the anchored one (TabArena's ``post_calibrate``), so the reference model keeps an
  interval of its own.
- **improvability**: per dataset ``1 - best error / model error`` (0 when both are 0), averaged.
- **win rate**: the share of (dataset, opponent) battles won, ties counting half.
- **average rank**: 1 = best, ties share the mean rank.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

ELO_INIT = 1000.0
ELO_SCALE = 400.0
ELO_BOOTSTRAP_ROUNDS = 200
# TabArena's ridge on the log-strengths: negligible on a real table, it keeps the ratings finite
# when one model beats another on every dataset (the unpenalised maximum is then at infinity).
BT_RIDGE = 0.5 / (1e6 * math.log(10) ** 2)


def error_ranks(errors: pd.DataFrame) -> pd.DataFrame:
    """Rank models within each dataset, 1 = lowest error, ties averaged."""
    # Round off float noise first: means of equal fold totals must tie.
    return errors.round(12).rank(axis=1, method="average", ascending=True)


def average_rank(errors: pd.DataFrame) -> pd.Series:
    return error_ranks(errors).mean(axis=0)


def win_rate(errors: pd.DataFrame) -> pd.Series:
    """Share of battles won against the other models over all datasets, ties counting half.

    On a complete table a model's wins on a dataset are ``n_models - rank`` (ties give half).
    """
    n_models = errors.shape[1]
    if n_models < 2 or errors.empty:
        return pd.Series(np.nan, index=errors.columns)
    wins = n_models - error_ranks(errors)
    return wins.mean(axis=0) / (n_models - 1)


def improvability(errors: pd.DataFrame) -> pd.Series:
    """Mean over datasets of ``1 - best error / model error``: how much a model could improve."""
    best = errors.min(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        per_dataset = 1.0 - errors.rdiv(best, axis=0)
    # 0 / 0: the model is as good as the best (both perfect).
    return per_dataset.fillna(0.0).mean(axis=0)


def _bradley_terry(wins: np.ndarray, n_tasks: float) -> np.ndarray:
    """Log10-strengths (mean 0) maximising the ridge-penalised Bradley-Terry likelihood.

    Every pair meets ``n_tasks`` times, so the win totals ``wins`` are sufficient statistics: the
    log-likelihood is ``sum_i W_i t_i - n_tasks sum_{i<j} log(e^t_i + e^t_j)``, concave in ``t``.
    TabArena maximises the same function with L-BFGS; Newton's method with a backtracking line
    search reaches the same maximum in tens of steps, also where one model wins every battle and
    the optimum sits far out (L-BFGS then needs thousands, seconds per bootstrap round).
    """
    n = len(wins)
    off_diagonal = ~np.eye(n, dtype=bool)
    upper = np.triu_indices(n, 1)

    def objective(t: np.ndarray) -> float:
        largest = np.maximum(t[:, None], t[None, :])
        log_sum = largest + np.log(np.exp(t[:, None] - largest) + np.exp(t[None, :] - largest))
        return -(wins @ t - n_tasks * log_sum[upper].sum()) + BT_RIDGE * (t @ t)

    t = np.zeros(n)
    value = objective(t)
    for _ in range(500):
        # p[i, j]: probability that i beats j.
        p = 1.0 / (1.0 + np.exp(np.clip(t[None, :] - t[:, None], -700, 700)))
        gradient = -(wins - n_tasks * np.where(off_diagonal, p, 0.0).sum(axis=1))
        gradient += 2 * BT_RIDGE * t
        if np.abs(gradient).max() <= 1e-12 * max(n_tasks, 1.0):
            break
        q = np.where(off_diagonal, p * p.T, 0.0)
        hessian = n_tasks * (np.diag(q.sum(axis=1)) - q) + 2 * BT_RIDGE * np.eye(n)
        step = np.linalg.solve(hessian, gradient)
        # Newton's decrement: the objective cannot fall by more than this; below rounding, stop.
        if gradient @ step <= 1e-13 * max(abs(value), 1.0):
            break
        scale = 1.0
        while scale > 1e-12:
            candidate = t - scale * step
            new_value = objective(candidate)
            if new_value <= value - 1e-4 * scale * (gradient @ step):
                break
            scale /= 2
        else:
            break  # no decrease left to find: at the optimum up to rounding
        t, value = candidate, new_value
    return (t - t.mean()) / np.log(10)


def _win_matrix(errors: pd.DataFrame) -> np.ndarray:
    """Dataset x model wins against all other models (ties half)."""
    return (errors.shape[1] - error_ranks(errors)).to_numpy()


def _anchor(ratings: pd.Series, reference: str | None) -> pd.Series:
    return ratings + (ELO_INIT - ratings[reference]) if reference is not None else ratings


def elo(errors: pd.DataFrame, reference: str | None = None) -> pd.Series:
    """Elo ratings; the ``reference`` model has 1000 (or, without one, the models average 1000)."""
    if errors.shape[1] == 0:
        return pd.Series(dtype=float)
    if errors.empty or errors.shape[1] == 1:
        return pd.Series(ELO_INIT if len(errors) else np.nan, index=errors.columns)
    wins = _win_matrix(errors)
    strength = _bradley_terry(wins.sum(axis=0), float(len(errors)))
    return _anchor(pd.Series(ELO_SCALE * strength + ELO_INIT, index=errors.columns), reference)


def bootstrap_elo(
    errors: pd.DataFrame, rounds: int = ELO_BOOTSTRAP_ROUNDS, seed: int = 0
) -> pd.DataFrame:
    """Unanchored Elo ratings on ``rounds`` resamples of the datasets (one row per resample)."""
    wins = _win_matrix(errors)
    n_tasks = len(errors)
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(rounds):
        counts = np.bincount(rng.choice(n_tasks, size=n_tasks, replace=True), minlength=n_tasks)
        strength = _bradley_terry(counts.astype(float) @ wins, float(n_tasks))
        rows.append(ELO_SCALE * strength + ELO_INIT)
    return pd.DataFrame(rows, columns=errors.columns)


def elo_with_interval(
    errors: pd.DataFrame,
    reference: str | None = None,
    *,
    rounds: int = ELO_BOOTSTRAP_ROUNDS,
    seed: int = 0,
    confidence: float = 0.95,
) -> pd.DataFrame:
    """One row per model: ``elo``, ``elo_low``, ``elo_high`` (a bootstrap ``confidence`` interval).

    With fewer than 2 datasets or 2 models the interval is NaN.
    """
    point = elo(errors, reference=None)
    table = pd.DataFrame({"elo": point, "elo_low": np.nan, "elo_high": np.nan})
    if len(errors) >= 2 and errors.shape[1] >= 2:
        resampled = bootstrap_elo(errors, rounds=rounds, seed=seed)
        tail = (1.0 - confidence) / 2
        # Distances from the point estimate, never negative (TabArena's clip_negative_ci).
        below = (point - resampled.quantile(tail)).clip(lower=0)
        above = (resampled.quantile(1 - tail) - point).clip(lower=0)
        table["elo_low"], table["elo_high"] = point - below, point + above
    if reference is not None and len(errors):
        table += ELO_INIT - point[reference]
    return table
