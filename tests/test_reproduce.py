"""benchmarks/reproduce.py: the tolerances its comparison promises, and the check run for real.

The real runs simulate other machines by forcing other CPU code paths in torch and MKL, and show
that a deliberate change of a model still fails the check.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import subprocess
import sys
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


# --- The check itself, run for real: other machines simulated, a real change caught ---------------


def _cpu_flags() -> set[str]:
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.exists():
        return set()
    for line in cpuinfo.read_text().splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def _environments() -> list[tuple[str, str | None]]:
    """(ATEN_CPU_CAPABILITY, MKL_CBWR) pairs this CPU can run: the code paths of other machines."""
    flags = _cpu_flags()
    capabilities = ["default"] + [c for c in ("avx2", "avx512") if c in flags or f"{c}f" in flags]
    cbwr = [None, "COMPATIBLE"] + (["AVX2"] if "avx2" in flags else [])
    return [(c, m) for c in capabilities for m in cbwr]


ENVIRONMENTS = _environments()
# A quick part of the check in every test run: the widest and the narrowest code paths against the
# reference written under the pinned ones; the whole matrix on every dataset is a slow test.
QUICK = [ENVIRONMENTS[0], ENVIRONMENTS[-1]]


def _run_check(
    capability: str, cbwr: str | None, datasets: str | None
) -> subprocess.CompletedProcess:
    env = {**os.environ, "ATEN_CPU_CAPABILITY": capability}
    env.pop("MKL_CBWR", None)
    if cbwr is not None:
        env["MKL_CBWR"] = cbwr
    command = [sys.executable, str(REPO / "benchmarks" / "reproduce.py"), "--jobs", "2"]
    if datasets:
        command += ["--datasets", datasets]
    if cbwr is None:  # reproduce.py pins MKL_CBWR unless set; "unset" means MKL's own choice
        command = [sys.executable, "-c", _UNPINNED_MKL, *command[1:]]
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)


# Runs reproduce.py with MKL_CBWR left out of its pinned environment.
_UNPINNED_MKL = (
    "import runpy, sys; sys.argv = sys.argv[1:]; "
    "g = runpy.run_path(sys.argv[0], run_name='reproduce'); "
    "g['PINNED_ENV'].pop('MKL_CBWR'); sys.exit(g['main']())"
)


@pytest.mark.parametrize(("capability", "cbwr"), QUICK, ids=lambda v: str(v))
def test_reproduce_holds_under_other_cpu_code_paths_on_iris(capability, cbwr):
    result = _run_check(capability, cbwr, "iris")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 differences" in result.stderr + result.stdout


@pytest.mark.slow
@pytest.mark.parametrize(("capability", "cbwr"), ENVIRONMENTS, ids=lambda v: str(v))
def test_reproduce_holds_under_every_cpu_code_path(capability, cbwr):
    result = _run_check(capability, cbwr, None)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 differences" in result.stderr + result.stdout


def _run_in_process(reproduce, out: Path) -> Path:
    from typer.testing import CliRunner

    from rfmbench.cli import app

    args = ["run", "--out", str(out), "--run-id", reproduce.RUN_ID, "--jobs", "1"]
    for option, value in reproduce.SETTINGS.items():
        args += [option, value]
    result = CliRunner().invoke(app, [*args, "--datasets", "iris"])
    assert result.exit_code == 0, result.output
    return out / f"{reproduce.RUN_ID}.csv"


def test_reproduce_catches_a_changed_model_default(reproduce, monkeypatch, tmp_path, capsys):
    from rfmbench.models import registry

    same = _run_in_process(reproduce, tmp_path / "same")
    assert reproduce.main(["--results", str(same), "--datasets", "iris"]) == 0

    spec = registry.MODELS["kernel-ridge"]
    changed_spec = dataclasses.replace(spec, defaults={**spec.defaults, "bandwidth": 3.0})
    monkeypatch.setitem(registry.MODELS, "kernel-ridge", changed_spec)
    changed_run = _run_in_process(reproduce, tmp_path / "changed")
    capsys.readouterr()
    assert reproduce.main(["--results", str(changed_run), "--datasets", "iris"]) == 1
    captured = capsys.readouterr()
    output = captured.out + captured.err
    assert "kernel-ridge" in output and "results differ from the reference" in output
    assert "random-forest" not in output  # only the changed model's rows differ
