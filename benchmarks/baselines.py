"""Are the tuned baselines at least as good as their libraries' defaults? (issues 4 and 14)

Usage:  .venv/bin/python benchmarks/baselines.py [--datasets iris,wine] [--folds 5] [--keep DIR]
            [--models random-forest,mlp,kernel-ridge,catboost,realmlp] [--references auto|none]
            [--time-default-run]

On the embedded suite (iris, wine, breast_cancer, digits, diabetes) the real pipeline runs
random-forest, mlp and kernel-ridge (``make_plan`` + ``run_plan``, tuning budget = the default of
``rfmbench run``, seed 0) into a temporary folder; ``--models`` adds catboost or realmlp (their
extras installed) or picks a subset. Each baseline is then compared with its library's default
configuration on exactly the same outer folds and the same preprocessing (``prepare_fold``:
imputation, one-hot, standardized inputs and regression target):

- random-forest: ``RandomForestClassifier()`` / ``RandomForestRegressor()`` (100 trees);
- mlp: ``MLPClassifier()`` / ``MLPRegressor()``; when a fit warns that it has not converged in the
  default 200 iterations, it is fitted again with ``max_iter=2000`` and the table says so;
- kernel-ridge: ``KernelRidge(kernel="laplacian")`` (alpha 1, gamma 1 / n_features); classification
  is ridge regression on one-hot labels, class by argmax;
- catboost: ``CatBoostClassifier()`` / ``CatBoostRegressor()`` (1000 rounds, automatic rate);
- realmlp: pytabkit's ``RealMLP_TD_Classifier()`` / ``RealMLP_TD_Regressor()``.

Beside every row, the table prints two strong references from the field, whichever extras are
installed (``--references none`` skips them): RealMLP-TD and CatBoost with their defaults.

``random_state`` is fixed to the seed in the defaults too (it is not a hyperparameter, and a fixed
seed makes the table reproducible), and every default runs on one thread. The metric is test
accuracy (R² for regression), averaged over the outer folds; the criterion is "tuned >= default -
0.5 point" for mlp (issue 14) and "- 1 point" for the others (issue 4).

``--time-default-run`` first times the default ``rfmbench run`` (the suite, 5 folds, its default
models, budget and jobs) in a subprocess, and prints its wall time, each model's job seconds (the
mlp's share) and the load average before and after (the machine may be shared).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import tempfile
import time
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
from sklearn.exceptions import ConvergenceWarning
from sklearn.kernel_ridge import KernelRidge
from sklearn.metrics import accuracy_score, r2_score
from sklearn.neural_network import MLPClassifier, MLPRegressor

from rfmbench.config import RunConfig
from rfmbench.metrics import PRIMARY_METRIC
from rfmbench.preprocessing import PreparedFold, prepare_fold
from rfmbench.results import read_run
from rfmbench.runner.plan import make_plan, run_plan
from rfmbench.tasks import Task

MODELS = ("random-forest", "mlp", "kernel-ridge")
TOLERANCE = {"mlp": 0.5}  # points: tuned may be at most this much below the default
DEFAULT_TOLERANCE = 1.0
REFERENCES = {"realmlp": "pytabkit", "catboost": "catboost"}  # reference default -> its package
RAISED_MAX_ITER = 2000


def default_budget() -> int:
    """The tuning budget `rfmbench run` uses when none is given."""
    return RunConfig().budget


# -- scikit-learn defaults ---------------------------------------------------------------------------


def _fit_mlp(kind: str, fold: PreparedFold, seed: int) -> tuple[np.ndarray, bool]:
    """Fit the default MLP; refit with more iterations if it warns. Returns (predictions, raised)."""
    cls = MLPClassifier if kind == "classification" else MLPRegressor
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        model = cls(random_state=seed).fit(fold.X_train, fold.y_train)
    raised = any(issubclass(w.category, ConvergenceWarning) for w in caught)
    if raised:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model = cls(max_iter=RAISED_MAX_ITER, random_state=seed).fit(fold.X_train, fold.y_train)
    return model.predict(fold.X_test), raised


def _fit_kernel_ridge(kind: str, fold: PreparedFold) -> np.ndarray:
    model = KernelRidge(kernel="laplacian")
    if kind == "regression":
        return model.fit(fold.X_train, fold.y_train).predict(fold.X_test)
    onehot = np.eye(len(fold.classes))[fold.y_train]
    return np.argmax(model.fit(fold.X_train, onehot).predict(fold.X_test), axis=1)


def _fit_forest(kind: str, fold: PreparedFold, seed: int) -> np.ndarray:
    cls = RandomForestClassifier if kind == "classification" else RandomForestRegressor
    return cls(random_state=seed).fit(fold.X_train, fold.y_train).predict(fold.X_test)


def _fit_catboost(kind: str, fold: PreparedFold, seed: int) -> np.ndarray:
    import catboost

    cls = catboost.CatBoostClassifier if kind == "classification" else catboost.CatBoostRegressor
    model = cls(random_seed=seed, thread_count=1, verbose=False, allow_writing_files=False)
    return np.asarray(model.fit(fold.X_train, fold.y_train).predict(fold.X_test)).ravel()


def _fit_realmlp(kind: str, fold: PreparedFold, seed: int) -> np.ndarray:
    from pytabkit import RealMLP_TD_Classifier, RealMLP_TD_Regressor

    cls = RealMLP_TD_Classifier if kind == "classification" else RealMLP_TD_Regressor
    model = cls(random_state=seed, n_threads=1, device="cpu", verbosity=0)
    return np.asarray(model.fit(fold.X_train, fold.y_train).predict(fold.X_test)).ravel()


def default_scores(task: Task, model: str, seed: int) -> tuple[list[float], int]:
    """Per-fold test scores of ``model``'s scikit-learn default, and how many folds raised max_iter."""
    scores, raised = [], 0
    for split in task.splits:
        fold = prepare_fold(task.X, task.y, task.categorical, task.kind, split.train, split.test)
        if model == "mlp":
            predicted, more = _fit_mlp(task.kind, fold, seed)
            raised += more
        elif model == "kernel-ridge":
            predicted = _fit_kernel_ridge(task.kind, fold)
        elif model == "catboost":
            predicted = _fit_catboost(task.kind, fold, seed)
        elif model == "realmlp":
            predicted = _fit_realmlp(task.kind, fold, seed)
        else:
            predicted = _fit_forest(task.kind, fold, seed)
        if task.kind == "classification":
            scores.append(accuracy_score(fold.y_test_raw, fold.classes[predicted.astype(int)]))
        else:
            scores.append(r2_score(fold.y_test_raw, fold.target_to_original(predicted)))
    return scores, raised


# -- report ------------------------------------------------------------------------------------------


def _common_params(params: list[str]) -> str:
    """The configurations tuning chose across folds, most frequent first."""
    counts = Counter(params)
    return "; ".join(f"{n}x {p}" for p, n in counts.most_common())


def time_default_run(folder: Path) -> tuple[float, dict[str, float]]:
    """Wall seconds of a default ``rfmbench run`` (into ``folder``), run as a user would run it,
    and each model's share: the sum of its jobs' tuning, fit and predict seconds."""
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "rfmbench", "run", "--out", str(folder), "--run-id", "timed"],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    wall = time.perf_counter() - started
    rows = read_run(folder / "timed.csv")
    seconds = rows["tuning_seconds"] + rows["fit_seconds"] + rows["predict_seconds"]
    return wall, seconds.groupby(rows["model"]).sum().to_dict()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", default=None, help="comma-separated (default: the suite)")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated subset")
    parser.add_argument(
        "--keep", type=Path, default=None, help="keep the tuned run's CSV here (a rerun resumes it)"
    )
    parser.add_argument("--references", choices=("auto", "none"), default="auto")
    parser.add_argument("--time-default-run", action="store_true")
    args = parser.parse_args(argv)
    models = args.models.split(",")
    references = [
        name
        for name, package in REFERENCES.items()
        if args.references == "auto" and importlib.util.find_spec(package) is not None
    ]
    if args.time_default_run:
        load = os.getloadavg()
        with tempfile.TemporaryDirectory() as tmp:
            wall, per_model = time_default_run(Path(tmp))
        shares = ", ".join(f"{m} {s:.0f} s" for m, s in sorted(per_model.items()))
        print(
            f"default `rfmbench run` wall time: {wall:.0f} s (target 120 s on 2 cores); job seconds:"
            f" {shares}; load average before {load[0]:.2f}, after {os.getloadavg()[0]:.2f}",
            flush=True,
        )

    budget = default_budget()
    datasets = args.datasets.split(",") if args.datasets else None
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        out = args.keep or Path(tmp)
        plan = make_plan(
            suite="embedded",
            datasets=datasets,
            models=models,
            folds=args.folds,
            seed=args.seed,
            device="cpu",
            run_id="baselines",
            out=out,
        )
        print(
            f"tuned: {len(plan.jobs)} jobs, budget {budget}, {plan.job_config.inner_folds} inner folds,"
            f" {args.folds} outer folds, seed {args.seed}",
            file=sys.stderr,
            flush=True,
        )

        def on_done(job, row) -> None:
            print(f"  {job.dataset} fold {job.fold} {job.model}: {row['status']}", file=sys.stderr)

        path = run_plan(plan, on_done=on_done)
        tuned = read_run(path)
    tuned_seconds = time.perf_counter() - started

    started = time.perf_counter()
    defaults: dict[tuple[str, str], tuple[list[float], int]] = {}
    for name, task in plan.tasks.items():
        for model in dict.fromkeys([*models, *references]):
            defaults[name, model] = default_scores(task, model, args.seed)
    default_seconds = time.perf_counter() - started

    failures = 0
    for name, task in plan.tasks.items():
        metric = PRIMARY_METRIC[task.kind]
        print(f"\n{name} ({task.kind}, {len(task.y)} rows; {metric}, mean of {args.folds} folds)")
        refs = "".join(f" {'RealMLP-TD' if r == 'realmlp' else 'CatBoost':>11}" for r in references)
        ref_values = "".join(f" {np.mean(defaults[name, r][0]):11.4f}" for r in references)
        print(f"  {'model':<14} {'tuned':>7} {'default':>8} {'diff':>7}{refs}  result")
        for model in models:
            rows = tuned[(tuned["dataset"] == name) & (tuned["model"] == model)]
            ok = rows[rows["status"] == "ok"]
            tuned_mean = float(ok[metric].mean()) if len(ok) == len(task.splits) else float("nan")
            scores, raised = defaults[name, model]
            default_mean = float(np.mean(scores))
            diff = 100 * (tuned_mean - default_mean)
            passed = bool(diff >= -TOLERANCE.get(model, DEFAULT_TOLERANCE))
            failures += not passed
            note = (
                f"  (default max_iter raised to {RAISED_MAX_ITER} on {raised} folds)"
                if raised
                else ""
            )
            print(
                f"  {model:<14} {tuned_mean:7.4f} {default_mean:8.4f} {diff:+7.2f}{ref_values}  "
                f"{'PASS' if passed else 'FAIL'}{note}"
            )
            if not passed:
                print(f"      tuned chose: {_common_params(list(ok['params']))}")
                print(f"      tuned per fold: {np.round(ok[metric].to_numpy(), 4).tolist()}")
                print(f"      default per fold: {np.round(scores, 4).tolist()}")
    print(
        f"\ncriterion: tuned >= default - {TOLERANCE.get('mlp')} point for mlp, "
        f"- {DEFAULT_TOLERANCE:g} for the others; "
        f"{failures} FAIL of {len(plan.tasks) * len(models)}"
    )
    print(
        f"time: tuned pipeline {tuned_seconds:.0f} s, scikit-learn defaults {default_seconds:.0f} s,"
        f" total {tuned_seconds + default_seconds:.0f} s"
    )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
