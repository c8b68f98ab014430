"""Tables at 80 columns: split into several rather than cut a value (render.console swapped for an
80-column console writing to a string)."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from rich.console import Console

from rfmbench import render
from rfmbench.comparison.leaderboard import leaderboard
from rfmbench.comparison.stats import compare, win_rates


@pytest.fixture
def narrow(monkeypatch: pytest.MonkeyPatch) -> io.StringIO:
    buffer = io.StringIO()
    monkeypatch.setattr(render, "console", Console(file=buffer, width=80, color_system=None))
    return buffer


MODELS = [
    "rfm",
    "kernel-ridge",
    "random-forest",
    "mlp",
    "xrfm-reference",
    "gradient-boosting",
    "rfm-paper-protocol",
]


def results(n_datasets: int = 6) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for d in range(n_datasets):
        kind = "regression" if d % 3 == 2 else "classification"
        for model in MODELS:
            for fold in range(2):
                failed = (d, model) == (1, "mlp")
                score = float(rng.uniform(0.5, 0.99))
                rows.append(
                    {
                        "dataset": f"dataset-with-a-long-name-{d}",
                        "task_kind": kind,
                        "fold": fold,
                        "model": model,
                        "status": "failed" if failed else "ok",
                        "n_classes": 0 if kind == "regression" else 2 + d % 2,
                        "accuracy": np.nan if failed else score,
                        "roc_auc": np.nan if failed else score,
                        "log_loss": np.nan if failed else 1 - score,
                        "rmse": np.nan if failed else 10 * (1 - score),
                        "r2": np.nan if failed else score,
                    }
                )
    return pd.DataFrame(rows)


def test_the_runs_leaderboard_fits_80_columns_with_every_value_whole(narrow: io.StringIO):
    board = leaderboard(results())
    render.leaderboard(board, title="Leaderboard r")
    text = narrow.getvalue()
    assert max(map(len, text.splitlines())) <= 80 and "…" not in text
    view = render.board_view(board)
    for _, row in view.iterrows():
        for value in row:
            assert str(value) in text, value
    assert "(continued)" in text


def test_a_wide_win_rate_matrix_splits_and_repeats_the_row_names(narrow: io.StringIO):
    (classification, _) = compare(results())
    rates = win_rates(classification.ranks).map(lambda v: "-" if np.isnan(v) else f"{v:.2f}")
    frame = rates.rename_axis("row beats column").reset_index()
    render.show_table(frame, title="win rate", split=True)
    text = narrow.getvalue()
    assert max(map(len, text.splitlines())) <= 80 and "…" not in text
    for model in MODELS:  # every column header whole, every row name in every part
        assert f" {model} " in text
        assert sum(line.startswith(f"│ {model} ") for line in text.splitlines()) >= 2
    tables = render.split_tables(frame, "win rate", width=80)
    assert len(tables) >= 2
