"""run_job: preprocess, tune, refit, test; metrics match scikit-learn's; it never raises."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
from sklearn import metrics as sk

from rfmbench import __version__
from rfmbench.metrics import CLASSIFICATION_METRICS, REGRESSION_METRICS
from rfmbench.preprocessing import prepare_fold
from rfmbench.results import COLUMNS, append_row, read_run
from rfmbench.runner.jobs import Job, JobConfig, failure_row, job_seed, model_device, run_job
from tests.conftest import build_linear

CONFIG = JobConfig(run_id="test-run", seed=0, inner_folds=3, budget=3, device="cpu", threads=1)


def other_metrics(kind: str) -> set[str]:
    return set(REGRESSION_METRICS if kind == "classification" else CLASSIFICATION_METRICS)


def expected_metrics(task, fold: int, params: dict) -> dict[str, float]:
    """Refit the chosen configuration on the fold by hand and score it with scikit-learn."""
    split = task.splits[fold]
    prepared = prepare_fold(task.X, task.y, task.categorical, task.kind, split.train, split.test)
    model = build_linear(task.kind, params, seed=job_seed(0, task.name, fold), n_jobs=1)
    model.fit(prepared.X_train, prepared.y_train)
    y_test = task.y[split.test]
    if task.kind == "regression":
        predicted = model.predict(prepared.X_test) * np.std(task.y[split.train])
        predicted += np.mean(task.y[split.train])
        return {
            "rmse": np.sqrt(sk.mean_squared_error(y_test, predicted)),
            "mae": sk.mean_absolute_error(y_test, predicted),
            "r2": sk.r2_score(y_test, predicted),
        }
    classes = np.unique(task.y[split.train])
    proba = model.predict_proba(prepared.X_test)
    predicted = classes[proba.argmax(axis=1)]
    return {
        "accuracy": sk.accuracy_score(y_test, predicted),
        "balanced_accuracy": sk.balanced_accuracy_score(y_test, predicted),
        "log_loss": sk.log_loss(y_test, proba, labels=classes),
        "roc_auc": sk.roc_auc_score(y_test, proba, multi_class="ovr", labels=classes),
    }


@pytest.mark.parametrize("fold", [0, 2])
def test_an_ok_row(task, tiny_spec, register_model, tmp_path, fold: int) -> None:
    register_model(tiny_spec)
    row = run_job(Job(task.name, fold, "tiny"), task, CONFIG)
    assert row["status"] == "ok", row.get("error")
    assert set(row) <= set(COLUMNS)
    # The other kind's metrics are absent, the feature scores (this task has no known features)
    # and RFM's per-iteration scores (the tiny model has no iterations).
    features = {"feature_recovery", "nfa_correlation"}
    iterations = {"iteration_val_scores", "iteration_test_scores"}
    assert set(COLUMNS) - set(row) == other_metrics(task.kind) | features | iterations

    split = task.splits[fold]
    assert row["run_id"] == "test-run" and row["dataset"] == task.name
    assert (row["fold"], row["model"], row["task_kind"]) == (fold, "tiny", task.kind)
    assert row["error"] == ""
    assert (row["n_train"], row["n_test"]) == (len(split.train), len(split.test))
    assert row["n_features"] == 3 + 3  # three numeric columns, three colors
    assert row["n_classes"] == (3 if task.kind == "classification" else 0)
    assert (row["device"], row["seed"], row["source"]) == ("cpu", 0, "tests")
    assert row["rfmbench_version"] == __version__
    assert row["n_candidates"] == 3 and row["n_failed_candidates"] == 0
    assert math.isfinite(row["inner_cv_score"])
    for timing in ("fit_seconds", "predict_seconds", "tuning_seconds", "peak_memory_mb"):
        assert row[timing] >= 0
    params = json.loads(row["params"])
    assert params["penalty"] in (1.0, *tiny_spec.space["penalty"])

    expected = expected_metrics(task, fold, params)
    assert {k: row[k] for k in expected} == pytest.approx(expected, rel=1e-6)

    path = tmp_path / "r.csv"
    append_row(path, row)  # the row fits the results file as it is
    assert read_run(path).loc[0, "status"] == "ok"


def test_a_failing_model_gives_a_failed_row(task, broken_spec, register_model) -> None:
    register_model(broken_spec)
    row = run_job(Job(task.name, 1, "broken"), task, CONFIG)
    assert row["status"] == "failed"
    assert "all 2 configurations failed" in row["error"] and "boom at fit" in row["error"]
    assert row["n_train"] == len(task.splits[1].train)
    assert set(row) <= set(COLUMNS)
    assert not set(row) & set(CLASSIFICATION_METRICS + REGRESSION_METRICS)


def test_a_model_failing_only_in_the_final_fit_gives_a_failed_row(
    classification_task, tiny_spec, register_model
) -> None:
    calls = {"n": 0}

    def build(kind, params, **kwargs):
        calls["n"] += 1
        if calls["n"] > 3:  # one candidate x three inner folds succeed, then the refit fails
            raise MemoryError("out of memory\n  in the refit")
        return build_linear(kind, params, **kwargs)

    register_model(dataclasses.replace(tiny_spec, build=build))
    row = run_job(Job(classification_task.name, 0, "tiny"), classification_task, CONFIG)
    assert row["status"] == "failed"
    assert row["error"] == "MemoryError: out of memory in the refit"  # one line


def test_an_unknown_model_is_a_failed_row_not_an_exception(task) -> None:
    row = run_job(Job(task.name, 0, "no-such-model"), task, CONFIG)
    assert row["status"] == "failed"
    assert "UnknownName" in row["error"] and "no-such-model" in row["error"]


def test_failure_row(task) -> None:
    row = failure_row(Job(task.name, 0, "m"), task, CONFIG, "timeout", "too slow")
    assert (row["status"], row["error"], row["model"]) == ("timeout", "too slow", "m")
    assert set(row) <= set(COLUMNS)


def test_job_seed_is_shared_by_models_and_differs_by_fold() -> None:
    assert job_seed(0, "iris", 0) == job_seed(0, "iris", 0)
    assert len({job_seed(0, "iris", f) for f in range(5)}) == 5
    assert job_seed(0, "iris", 0) != job_seed(1, "iris", 0)
    assert 0 <= job_seed(123, "x", 4) < 2**31
    assert Job("iris", 2, "rfm").key == ("iris", 2, "rfm")


@pytest.mark.parametrize(
    ("model", "expected"),
    [("rfm", "cuda:1"), ("kernel-ridge", "cuda:1"), ("mlp", "cuda:1"), ("random-forest", "cpu")],
)
def test_rows_name_the_device_the_model_ran_on(model, expected):
    """A forest in a --device cuda run ran on the CPU, and its row says so."""
    assert model_device(model, "cuda:1") == expected
    assert model_device(model, "cpu") == "cpu"


def test_rfm_rows_carry_the_tuned_configurations_validation_curve(monkeypatch) -> None:
    """The refit holds no rows out; the row's validation curve is the chosen candidate's mean
    over the inner folds, one score per iteration 0..iters, and the test curve is the refit's."""
    import rfmbench.tuning as tuning_module
    from tests.conftest import make_task

    tunings = []
    real_tune = tuning_module.tune

    def spy(*args, **kwargs):
        tunings.append(real_tune(*args, **kwargs))
        return tunings[-1]

    monkeypatch.setattr(tuning_module, "tune", spy)
    task = make_task("classification")
    config = JobConfig(run_id="t", seed=0, inner_folds=2, budget=2, device="cpu")
    row = run_job(Job(task.name, 0, "rfm"), task, config)
    assert row["status"] == "ok", row.get("error")
    (tuning,) = tunings
    best = next(c for c in tuning.candidates if c.params == tuning.best_params)
    assert len(best.iteration_scores) == 2  # one curve per inner fold
    expected = np.mean(np.asarray(best.iteration_scores), axis=0)
    val = json.loads(row["iteration_val_scores"])
    assert len(val) == best.params["iters"] + 1
    np.testing.assert_allclose(val, expected, atol=1e-6)
    test = json.loads(row["iteration_test_scores"])
    params = json.loads(row["params"])
    assert len(test) == params["iters"] + 1  # the refit runs the chosen number of iterations
    assert test[-1] == pytest.approx(row["accuracy"], abs=1e-6)
