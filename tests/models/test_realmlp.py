"""realmlp: pytabkit's RealMLP-TD first, its HPO space after, ok rows through the real job runner."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from sklearn.model_selection import ParameterSampler
from typer.testing import CliRunner

from rfmbench.cli import app
from rfmbench.models.realmlp import HIDDEN_SIZES, SPEC
from rfmbench.models.registry import MODELS
from rfmbench.runner.jobs import Job, JobConfig, run_job
from rfmbench.tuning import candidate_configs
from tests.conftest import make_task

pytabkit = pytest.importorskip("pytabkit")
FAST = {"n_epochs": 4}  # a few epochs: these tests check the plumbing, not RealMLP's accuracy


def test_first_candidate_is_realmlp_td_as_pytabkit_ships_it() -> None:
    first, *drawn = candidate_configs(SPEC, budget=4, seed=0)
    assert first == {}
    model = SPEC.build("classification", first, device="cpu", seed=3, n_jobs=1)
    assert isinstance(model, pytabkit.RealMLP_TD_Classifier)
    assert model.random_state == 3 and model.device == "cpu" and model.n_threads == 1
    assert model.lr is None and model.hidden_sizes is None  # pytabkit's TD values apply
    assert len(drawn) == 3 and all(set(c) == set(SPEC.space) for c in drawn)


@pytest.mark.parametrize("kind", ["classification", "regression"])
def test_sampled_configurations_fit(kind: str) -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 3))
    y = (X[:, 0] > 0).astype(int) if kind == "classification" else X[:, 0]
    for params in ParameterSampler(SPEC.space, n_iter=2, random_state=0):
        model = SPEC.build(kind, {**params, **FAST}, device="cpu", seed=0, n_jobs=1)
        assert model.hidden_sizes == HIDDEN_SIZES[params["hidden_sizes"]]
        assert (model.ls_eps is None) == (kind == "regression")
        assert model.fit(X, y).predict(X).shape == (60,)


@pytest.mark.parametrize("kind", ["classification", "regression"])
def test_a_job_gives_an_ok_row(kind: str, register_model) -> None:
    register_model(dataclasses.replace(SPEC, name="realmlp-fast", defaults=FAST))
    task = make_task(kind)
    config = JobConfig(run_id="t", seed=0, inner_folds=2, budget=2, device="cpu", threads=1)
    row = run_job(Job(task.name, 0, "realmlp-fast"), task, config)
    assert row["status"] == "ok", row.get("error")
    metric = "accuracy" if kind == "classification" else "r2"
    assert np.isfinite(row[metric])


def test_models_command_lists_realmlp_as_installed() -> None:
    assert "realmlp" in MODELS
    result = CliRunner().invoke(app, ["models"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    line = next(line for line in result.output.splitlines() if "realmlp" in line)
    assert "True" in line and "rfmbench[realmlp]" in line
