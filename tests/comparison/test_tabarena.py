"""TabArena's statistics against hand-worked examples, an independent Bradley-Terry fit (Hunter's
MM iteration, not Newton's method), and TabArena's own engine ``bencheval`` where installed
(``pip install 'rfmbench[tabarena]'``)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from rfmbench.comparison import tabarena

# Three datasets, three models, errors (lower is better):
#   t1: a 0.1  b 0.2  c 0.4      a best; improvability b 1 - .1/.2 = .5, c 1 - .1/.4 = .75
#   t2: a 0.3  b 0.3  c 0.1      a and b tie; c best; a, b: 1 - .1/.3 = 2/3
#   t3: a 0.0  b 0.5  c 0.0      a and c tie at a perfect 0 (0/0 counts as 0); b: 1 - 0/.5 = 1
HAND = pd.DataFrame(
    {"a": [0.1, 0.3, 0.0], "b": [0.2, 0.3, 0.5], "c": [0.4, 0.1, 0.0]},
    index=["t1", "t2", "t3"],
)


def test_rank_win_rate_and_improvability_by_hand():
    ranks = tabarena.error_ranks(HAND)
    assert ranks.to_dict("list") == {"a": [1, 2.5, 1.5], "b": [2, 2.5, 3], "c": [3, 1, 1.5]}
    assert tabarena.average_rank(HAND).to_dict() == pytest.approx(
        {"a": 5 / 3, "b": 7.5 / 3, "c": 5.5 / 3}
    )
    # Battles won out of 6 (2 opponents x 3 datasets), ties half: a 2 + .5 + 1.5, b 1 + .5 + 0,
    # c 0 + 2 + 1.5.
    assert tabarena.win_rate(HAND).to_dict() == pytest.approx(
        {"a": 4 / 6, "b": 1.5 / 6, "c": 3.5 / 6}
    )
    assert tabarena.improvability(HAND).to_dict() == pytest.approx(
        {"a": (0 + 2 / 3 + 0) / 3, "b": (0.5 + 2 / 3 + 1) / 3, "c": (0.75 + 0 + 0) / 3}
    )


def test_elo_of_two_models_has_a_closed_form():
    # a wins 3 of 4 datasets: Bradley-Terry gives P(a beats b) = 3/4 exactly, so
    # Elo(a) - Elo(b) = 400 log10(3) (the ridge moves it by well under 0.01).
    errors = pd.DataFrame({"a": [0.1, 0.1, 0.1, 0.5], "b": [0.2, 0.2, 0.2, 0.4]})
    ratings = tabarena.elo(errors, reference="b")
    assert ratings["b"] == 1000
    assert ratings["a"] == pytest.approx(1000 + 400 * math.log10(3), abs=0.01)
    centred = tabarena.elo(errors)
    assert centred.mean() == pytest.approx(1000)
    assert centred["a"] - centred["b"] == pytest.approx(400 * math.log10(3), abs=0.01)


def mm_elo(errors: pd.DataFrame) -> pd.Series:
    """Bradley-Terry by Hunter's MM iteration: p_i <- W_i / sum_j n / (p_i + p_j); Elo centred."""
    ranks = errors.rank(axis=1, method="average").to_numpy()
    n_tasks, n = ranks.shape
    wins = (n - ranks).sum(axis=0)
    p = np.ones(n)
    off_diagonal = ~np.eye(n, dtype=bool)
    for _ in range(100_000):
        denominator = np.where(off_diagonal, n_tasks / (p[:, None] + p[None, :]), 0).sum(axis=1)
        updated = wins / denominator
        updated /= np.exp(np.log(updated).mean())
        if np.abs(updated - p).max() < 1e-13:
            break
        p = updated
    elo = 400 * np.log10(p)
    return pd.Series(elo - elo.mean() + 1000, index=errors.columns)


def random_errors(n_tasks: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    errors = rng.uniform(0.1, 1.0, (n_tasks, 4)) * np.array([1.0, 1.2, 1.5, 2.0])
    frame = pd.DataFrame(errors, columns=["m1", "m2", "m3", "m4"])
    frame.index = [f"t{i:02d}" for i in range(n_tasks)]  # sorted, as in a task set
    frame.iloc[0, 1] = frame.iloc[0, 0]  # a tie
    return frame


def test_elo_agrees_with_an_independent_bradley_terry_fit():
    errors = random_errors(12)
    ours = tabarena.elo(errors)
    assert ours.to_dict() == pytest.approx(mm_elo(errors).to_dict(), abs=1e-3)
    anchored = tabarena.elo(errors, reference="m3")
    assert anchored["m3"] == 1000
    assert (anchored - ours).to_numpy() == pytest.approx(np.full(4, 1000 - ours["m3"]))


def test_elo_interval_is_the_bootstrap_of_datasets_anchored_after():
    errors = random_errors(10, seed=1)
    table = tabarena.elo_with_interval(errors, "m2", rounds=40, seed=3)
    # Independently: resample the datasets with the same draws, fit each by MM.
    rng = np.random.default_rng(3)
    draws = [
        mm_elo(errors.iloc[rng.choice(10, size=10, replace=True)].reset_index(drop=True))
        for _ in range(40)
    ]
    resampled = pd.DataFrame(draws)
    point = mm_elo(errors)
    shift = 1000 - point["m2"]
    low = point - (point - resampled.quantile(0.025)).clip(lower=0) + shift
    high = point + (resampled.quantile(0.975) - point).clip(lower=0) + shift
    assert table.loc["m2", "elo"] == 1000
    assert table["elo"].to_dict() == pytest.approx((point + shift).to_dict(), abs=1e-3)
    assert table["elo_low"].to_dict() == pytest.approx(low.to_dict(), abs=1e-2)
    assert table["elo_high"].to_dict() == pytest.approx(high.to_dict(), abs=1e-2)
    assert (table["elo_low"] <= table["elo"]).all() and (table["elo"] <= table["elo_high"]).all()
    # The reference keeps an interval of its own (TabArena's post-calibration).
    assert table.loc["m2", "elo_high"] - table.loc["m2", "elo_low"] > 0


def test_elo_stays_finite_when_one_model_wins_everything():
    errors = pd.DataFrame({"a": [0.1, 0.1, 0.1], "b": [0.2, 0.3, 0.4], "c": [0.3, 0.2, 0.5]})
    table = tabarena.elo_with_interval(errors, "b", rounds=20)
    assert np.isfinite(table.to_numpy()).all()
    assert table["elo"].idxmax() == "a"


def test_degenerate_tables():
    one_model = pd.DataFrame({"a": [0.1, 0.2]})
    assert tabarena.elo(one_model).tolist() == [1000.0]
    assert tabarena.win_rate(one_model).isna().all()
    table = tabarena.elo_with_interval(random_errors(1), "m1")
    assert table.loc["m1", "elo"] == 1000 and table["elo_low"].isna().all()


def test_agrees_with_bencheval():
    evaluator = pytest.importorskip("bencheval.evaluator")
    errors = random_errors(12, seed=5)
    long = (
        errors.rename_axis("task")
        .reset_index()
        .melt(id_vars="task", var_name="method", value_name="metric_error")
    )
    bench = evaluator.BenchmarkEvaluator(columns_to_agg_extra=None)
    board = bench.leaderboard(
        long,
        elo_kwargs={"calibration_framework": "m4", "BOOTSTRAP_ROUNDS": 60, "round_decimals": None},
        sort_by=None,
    )
    ours = tabarena.elo_with_interval(errors, "m4", rounds=60, seed=0)
    assert ours["elo"].to_dict() == pytest.approx(board["elo"].to_dict(), abs=1e-3)
    assert (ours["elo_high"] - ours["elo"]).to_dict() == pytest.approx(
        board["elo+"].to_dict(), abs=1e-2
    )
    assert (ours["elo"] - ours["elo_low"]).to_dict() == pytest.approx(
        board["elo-"].to_dict(), abs=1e-2
    )
    assert tabarena.average_rank(errors).to_dict() == pytest.approx(board["rank"].to_dict())
    assert tabarena.win_rate(errors).to_dict() == pytest.approx(board["winrate"].to_dict())
    assert tabarena.improvability(errors).to_dict() == pytest.approx(
        board["improvability"].to_dict()
    )
