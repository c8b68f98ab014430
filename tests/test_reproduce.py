"""benchmarks/reproduce.py's comparison: the tolerances it promises, without running a benchmark."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def reproduce():
    spec = importlib.util.spec_from_file_location("reproduce", REPO / "benchmarks" / "reproduce.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def reference() -> pd.DataFrame:
    params = json.dumps({"bandwidth": 10.0, "reg": 0.001, "kernel": "laplace", "iters": 5})
    rows = []
    for model, rmse in (("rfm", 0.1), ("kernel-ridge", 0.6)):
        for fold in range(2):
            rows.append(
                {
                    "dataset": "lowrank",
                    "fold": fold,
                    "model": model,
                    "status": "ok",
                    "task_kind": "regression",
                    "rmse": rmse,
                    "r2": 0.9,
                    "params": params,
                }
            )
        rows.append({"dataset": "iris", "fold": 0, "model": model, "status": "ok",
                     "task_kind": "classification", "accuracy": 0.96, "log_loss": 0.1,
                     "params": params})  # fmt: skip
    return pd.DataFrame(rows)


def changed(frame: pd.DataFrame, model: str, column: str, value) -> pd.DataFrame:
    """``column`` set to ``value`` on ``model``'s rows that have that column."""
    frame = frame.copy()
    rows = frame["model"] == model
    if column in ("rmse", "accuracy"):
        rows &= frame[column].notna()
    frame.loc[rows, column] = value
    return frame


def test_identical_and_round_off_runs_have_no_differences(reproduce):
    ref = reference()
    assert reproduce.differences(ref, ref).empty
    noisy = changed(ref, "rfm", "rmse", 0.1 * (1 + 1e-7))  # round-off, below REL_TOL
    noisy["params"] = noisy["params"].str.replace("0.001", "0.0010000000001")
    assert reproduce.differences(ref, noisy).empty


@pytest.mark.parametrize(
    ("column", "value", "field"),
    [
        ("rmse", 0.10001, "rmse"),  # relative 1e-4 > REL_TOL 1e-6
        ("accuracy", 0.9599, "accuracy"),  # one prediction
        ("status", "failed", "status"),
        ("params", json.dumps({"bandwidth": 20.0, "reg": 0.001, "kernel": "laplace", "iters": 5}),
         "params"),
    ],
)  # fmt: skip
def test_a_change_beyond_tolerance_is_a_difference(reproduce, column, value, field):
    diff = reproduce.differences(reference(), changed(reference(), "rfm", column, value))
    assert not diff.empty and set(diff["field"]) == {field}


def test_missing_and_extra_rows_are_differences(reproduce):
    ref = reference()
    diff = reproduce.differences(ref, ref.iloc[1:])
    assert diff["field"].tolist() == ["row"] and diff["new"].tolist() == ["missing"]


def test_the_claim_compares_mean_rmse_on_lowrank(reproduce):
    holds, text = reproduce.check_claim(reference())
    assert holds and "rfm mean rmse 0.1000 vs kernel-ridge 0.6000" in text
    holds, text = reproduce.check_claim(changed(reference(), "rfm", "rmse", 1.0))
    assert not holds and "FAILS" in text
