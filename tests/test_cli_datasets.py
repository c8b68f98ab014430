"""`rfmbench datasets ...` and the data options of `rfmbench run`, through the real CLI: typer's
CliRunner in process, and `python -m rfmbench` in a subprocess for the exit status and stderr."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from rfmbench.cli import app
from tests.sources.conftest import UCI_SAMPLE, closed_port

runner = CliRunner()
REPO = Path(__file__).resolve().parents[1]


def needs_models() -> None:
    """`run` imports every model; skip while a model module is missing (not this test's subject)."""
    try:
        import rfmbench.models.registry  # noqa: F401
    except ImportError as exc:
        pytest.skip(f"models not importable: {exc}")


def one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: ") and "Traceback" not in stderr
    return lines[0]


@pytest.fixture
def no_network_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """An empty cache and an OpenML server address where nothing listens."""
    env = {
        "RFMBENCH_CACHE_DIR": str(tmp_path / "empty-cache"),
        "RFMBENCH_OPENML_SERVER": f"http://127.0.0.1:{closed_port()}/api/v1/xml",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


def small_csv(tmp_path: Path) -> Path:
    rng = np.random.default_rng(1)
    frame = pd.DataFrame(
        {
            "x": rng.normal(size=40),
            "kind": rng.choice(["a", "b"], size=40),
            "y": rng.choice(["up", "down"], size=40),
        }
    )
    frame.loc[2, "x"] = np.nan
    path = tmp_path / "small.csv"
    frame.to_csv(path, index=False)
    return path


def test_info_embedded() -> None:
    result = runner.invoke(app, ["datasets", "info", "iris"])
    assert result.exit_code == 0, result.output
    assert "150" in result.stdout and "classification" in result.stdout


def test_info_uci121_both_spellings() -> None:
    for args in (
        ["datasets", "info", "uci121/monks-1", "--data-dir", str(UCI_SAMPLE)],
        ["datasets", "info", "monks-1", "--suite", "uci121", "--data-dir", str(UCI_SAMPLE)],
    ):
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
        assert "124" in result.stdout and "62 train / 62 validation" in result.stdout


def test_info_local_file(tmp_path: Path) -> None:
    path = small_csv(tmp_path)
    result = runner.invoke(app, ["datasets", "info", "--data", str(path), "--target", "y"])
    assert result.exit_code == 0, result.output
    assert "file:small.csv" in result.stdout and "1 (1.2% of cells)" in result.stdout


def test_list_suites(tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["datasets", "list", "--suite", "tabular", "--cache-dir", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    assert "credit-g" in result.stdout and "task_id=31" in result.stdout
    result = runner.invoke(
        app, ["datasets", "list", "--suite", "uci121", "--data-dir", str(UCI_SAMPLE)]
    )
    assert result.exit_code == 0 and "titanic" in result.stdout


@pytest.mark.parametrize(
    ("content", "args", "message"),
    [
        ("", ["--target", "y"], "is empty"),
        ("a,y\n1,p\n2,q\n", ["--target", "nope"], "target column 'nope' is not in"),
        ("a,y\n1,p\n2,p\n3,p\n", ["--target", "y"], "single class"),
        ("\x00\x01\x02", ["--target", "y"], "cannot read"),
    ],
)
def test_local_file_errors_exit_2_with_one_line(
    tmp_path: Path, content: str, args: list[str], message: str
) -> None:
    path = tmp_path / ("bad.parquet" if "\x00" in content else "bad.csv")
    path.write_text(content)
    result = runner.invoke(app, ["datasets", "info", "--data", str(path), *args])
    assert result.exit_code == 2
    assert message in one_error_line(result.stderr)


def test_fetch_without_network_fails_fast(no_network_env: dict[str, str]) -> None:
    start = time.monotonic()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "rfmbench",
            "datasets",
            "fetch",
            "--suite",
            "tabular",
            "--datasets",
            "credit-g",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, **no_network_env},
        timeout=60,
    )
    assert time.monotonic() - start < 30
    assert result.returncode == 2, result.stderr
    assert "cannot reach the OpenML server" in one_error_line(result.stderr)


def test_unresolved_suite_without_network(
    no_network_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # cc18 ships pinned (cc18.lock.toml), so an unpinned copy stands in for a suite not resolved yet.
    suites = tmp_path / "suites"
    suites.mkdir()
    (suites / "unpinned.toml").write_text('source = "openml"\nopenml_suite = 99\n')
    monkeypatch.setenv("RFMBENCH_SUITES_DIR", str(suites))
    result = runner.invoke(app, ["datasets", "fetch", "--suite", "unpinned"])
    assert result.exit_code == 2
    assert "cannot reach the OpenML server" in one_error_line(result.stderr)
    assert not (suites / "unpinned.lock.toml").exists()
    result = runner.invoke(app, ["datasets", "list", "--suite", "unpinned"])
    assert result.exit_code == 2
    assert "not resolved yet" in one_error_line(result.stderr)


def test_offline_cache_miss_names_the_task(no_network_env: dict[str, str]) -> None:
    result = runner.invoke(app, ["datasets", "info", "credit-g", "--offline"])
    assert result.exit_code == 2
    line = one_error_line(result.stderr)
    assert "OpenML task 31" in line and "rfmbench datasets fetch" in line


def test_run_offline_cache_miss_and_no_network(no_network_env: dict[str, str]) -> None:
    needs_models()
    result = runner.invoke(
        app, ["run", "--suite", "tabular", "--datasets", "credit-g", "--offline"]
    )
    assert result.exit_code == 2
    assert "OpenML task 31" in one_error_line(result.stderr)
    start = time.monotonic()
    result = runner.invoke(app, ["run", "--suite", "tabular", "--datasets", "credit-g"])
    assert time.monotonic() - start < 30
    assert result.exit_code == 2
    assert "cannot reach the OpenML server" in one_error_line(result.stderr)


def test_run_local_file_error(tmp_path: Path) -> None:
    needs_models()
    path = small_csv(tmp_path)
    result = runner.invoke(
        app, ["run", "--data", str(path), "--target", "nope", "--out", str(tmp_path / "out")]
    )
    assert result.exit_code == 2
    assert "target column 'nope' is not in" in one_error_line(result.stderr)


def test_local_file_error_in_a_subprocess(tmp_path: Path) -> None:
    path = tmp_path / "empty.csv"
    path.write_text("")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "rfmbench",
            "datasets",
            "info",
            "--data",
            str(path),
            "--target",
            "y",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert result.returncode == 2
    assert "is empty" in one_error_line(result.stderr)
