"""make_plan checks every option; run_plan writes one row per job and resumes a rerun."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from rfmbench.errors import BadOption, DeviceError, UnknownName
from rfmbench.results import COLUMNS, read_run
from rfmbench.runner.jobs import Job
from rfmbench.runner.plan import done_keys, make_plan, pending_jobs, run_plan
from tests.conftest import build_linear

SMALL = {"datasets": ["iris", "diabetes"], "folds": 2, "inner_folds": 2, "budget": 2, "threads": 1}


@pytest.fixture
def tiny(tiny_spec, register_model):
    return register_model(tiny_spec)


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"folds": 1}, BadOption, "--folds must be at least 2"),
        ({"folds": 1000}, BadOption, "--folds 1000 is too many"),
        ({"inner_folds": 1}, BadOption, "--inner-folds must be at least 2"),
        ({"budget": 0}, BadOption, "--budget must be at least 1"),
        ({"models": ["tiny", "nope"]}, UnknownName, "unknown model 'nope'"),
        ({"suite": "nope"}, UnknownName, "unknown suite 'nope'"),
        ({"datasets": ["iris", "nope"]}, UnknownName, "'nope'"),
        ({"device": "gpu"}, DeviceError, "device must be"),
        ({"seed": -1}, BadOption, "--seed must be an integer from 0 to 4294967295, got -1"),
        ({"seed": 2**32}, BadOption, "--seed must be an integer from 0 to 4294967295"),
        ({"seed": 1.5}, BadOption, "--seed must be an integer"),
        ({"run_id": "a/b"}, BadOption, "'a/b' contains a path separator"),
        ({"run_id": "../x"}, BadOption, "'../x' contains a path separator"),
        ({"run_id": ""}, BadOption, "'' is empty"),
        ({"run_id": " r"}, BadOption, "starts or ends with white space"),
        ({"run_id": ".r"}, BadOption, "starts with '.'"),
        ({"models": []}, BadOption, "--models names no model"),
        ({"datasets": []}, BadOption, "--datasets names no dataset"),
        ({"target": "y"}, BadOption, "--target needs --data"),
        pytest.param(
            {"device": "cuda"},
            DeviceError,
            "no CUDA GPU",
            marks=pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is visible"),
        ),
    ],
)
def test_make_plan_rejects_bad_options(tiny, options, error, match) -> None:
    settings = {"datasets": ["iris"], "models": ["tiny"], **options}
    with pytest.raises(error, match=match):
        make_plan(**settings)


def test_run_plan_refuses_an_out_that_is_a_file(tiny, tmp_path: Path) -> None:
    plan = make_plan(datasets=["iris"], models=["tiny"], folds=2, inner_folds=2, budget=1)
    (tmp_path / "file").write_text("x")
    with pytest.raises(BadOption, match="--out must be a folder"):
        run_plan(dataclasses.replace(plan, config=plan.config.replace(out=tmp_path / "file")))
    assert [p.name for p in tmp_path.iterdir()] == ["file"]


def test_a_model_whose_packages_are_missing_is_rejected(tiny_spec, register_model) -> None:
    register_model(dataclasses.replace(tiny_spec, requires=("no_such_package_xyz",)))
    with pytest.raises(BadOption, match="no_such_package_xyz"):
        make_plan(datasets=["iris"], models=["tiny"])


def test_make_plan_lists_the_grid(tiny) -> None:
    plan = make_plan(models=["tiny"], run_id="r1", seed=3, device="auto", **SMALL)
    assert list(plan.tasks) == ["iris", "diabetes"]
    assert [job.key for job in plan.jobs] == [
        ("iris", 0, "tiny"),
        ("iris", 1, "tiny"),
        ("diabetes", 0, "tiny"),
        ("diabetes", 1, "tiny"),
    ]
    assert all(len(task.splits) == 2 for task in plan.tasks.values())
    config = plan.job_config
    assert (config.run_id, config.seed, config.inner_folds, config.budget) == ("r1", 3, 2, 2)
    assert config.device == ("cuda" if torch.cuda.is_available() else "cpu")
    assert plan.config.run_id == "r1" and plan.config.device == "auto"
    assert plan.settings["device_requested"] == "auto"
    assert plan.settings["models"] == ["tiny"]


def test_run_plan_writes_one_row_per_job_and_a_rerun_resumes(tiny, tmp_path: Path) -> None:
    plan = make_plan(models=["tiny"], run_id="r1", device="cpu", out=tmp_path, **SMALL)
    started, done = [], []
    path = run_plan(plan, on_start=started.append, on_done=lambda j, r: done.append(j))
    assert path == tmp_path / "r1.csv"
    assert started == done == plan.jobs
    frame = read_run(path)
    assert list(frame.columns) == list(COLUMNS)
    assert list(zip(frame["dataset"], frame["fold"], frame["model"], strict=True)) == [
        job.key for job in plan.jobs
    ]
    assert set(frame["status"]) == {"ok"}
    assert (frame["run_id"] == "r1").all()
    metadata = json.loads((tmp_path / "r1.json").read_text())
    assert metadata["run_id"] == "r1" and metadata["settings"]["folds"] == 2

    started.clear()
    assert pending_jobs(plan) == []
    run_plan(plan, on_start=started.append)  # the same run id: nothing left to do
    assert started == []
    assert len(read_run(path)) == len(plan.jobs)


def test_an_interrupted_run_resumes_where_it_stopped(tiny, tmp_path: Path) -> None:
    plan = make_plan(models=["tiny"], run_id="r1", device="cpu", out=tmp_path, **SMALL)
    path = run_plan(plan)
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:3]) + lines[3][:40])  # two rows, then a torn third
    assert done_keys(path, retry_failed=False) == {job.key for job in plan.jobs[:2]}
    started = []
    run_plan(plan, on_start=started.append)
    assert started == plan.jobs[2:]
    frame = read_run(path)
    assert sorted(zip(frame["dataset"], frame["fold"], frame["model"], strict=True)) == sorted(
        job.key for job in plan.jobs
    )


def test_failed_rows_are_kept_unless_retried(tiny_spec, register_model, tmp_path: Path) -> None:
    broken = {"regression": True}

    def build(kind, params, **kwargs):
        if broken.get(kind):
            raise RuntimeError(f"{kind} is broken")
        return build_linear(kind, params, **kwargs)

    register_model(dataclasses.replace(tiny_spec, build=build))
    plan = make_plan(models=["tiny"], run_id="r1", device="cpu", out=tmp_path, **SMALL)
    path = run_plan(plan)
    frame = read_run(path)
    assert frame["status"].tolist() == ["ok", "ok", "failed", "failed"]
    assert frame.loc[2:, "error"].str.contains("regression is broken").all()

    broken["regression"] = False
    started: list[Job] = []
    run_plan(plan, on_start=started.append)  # failed rows count as done by default
    assert started == []
    run_plan(
        dataclasses.replace(plan, config=plan.config.replace(retry_failed=True)),
        on_start=started.append,
    )
    assert started == plan.jobs[2:]
    frame = read_run(path)
    assert frame["status"].tolist() == ["ok", "ok", "failed", "failed", "ok", "ok"]
    assert done_keys(path, retry_failed=True) == {job.key for job in plan.jobs}
