"""Results survive crashes: a run killed with SIGKILL resumes to every row exactly once, and two
processes appending to the same results file never interleave or lose rows. Real subprocesses."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MODELS = ["random-forest", "kernel-ridge"]
FOLDS = 3


def rfmbench_run(out: Path, run_id: str, datasets: list[str]) -> list[str]:
    return [
        sys.executable, "-m", "rfmbench", "run", "--datasets", ",".join(datasets),
        "--models", ",".join(MODELS), "--folds", str(FOLDS), "--inner-folds", "2",
        "--budget", "1", "--device", "cpu", "--seed", "0", "--out", str(out),
        "--run-id", run_id,
    ]  # fmt: skip


def start(command: list[str]) -> subprocess.Popen:
    # Its own session, so the kill reaches any worker process too.
    return subprocess.Popen(
        command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        start_new_session=True,
    )  # fmt: skip


def data_lines(path: Path) -> list[str]:
    if not path.exists():
        return []
    return path.read_text(encoding="utf-8").splitlines()[1:]


def parsed_rows(path: Path) -> list[dict[str, str]]:
    """Every line, checked: one header, then rows with exactly the header's fields."""
    text = path.read_text(encoding="utf-8")
    assert text.endswith("\n")
    lines = list(csv.reader(text.splitlines()))
    header = lines[0]
    assert header[:2] == ["run_id", "dataset"]
    for line in lines[1:]:
        assert len(line) == len(header), f"malformed line: {line}"
        assert line != header, "a second header"
    return [dict(zip(header, line, strict=True)) for line in lines[1:]]


def expected_keys(datasets: list[str]) -> set[tuple[str, str, str]]:
    return {(d, str(f), m) for d in datasets for f in range(FOLDS) for m in MODELS}


def assert_complete(path: Path, datasets: list[str]) -> None:
    rows = parsed_rows(path)
    keys = [(row["dataset"], row["fold"], row["model"]) for row in rows]
    assert len(keys) == len(set(keys)), "a job's row written twice"
    assert set(keys) == expected_keys(datasets)
    assert {row["status"] for row in rows} == {"ok"}


def test_a_killed_run_resumes_to_every_row_exactly_once(tmp_path: Path):
    datasets = ["iris", "wine"]
    path = tmp_path / "crash.csv"
    process = start(rfmbench_run(tmp_path, "crash", datasets))
    deadline = time.monotonic() + 120
    while len(data_lines(path)) < 2 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    written = len(data_lines(path))
    assert process.returncode == -signal.SIGKILL, process.stderr.read().decode()[-2000:]
    assert 2 <= written < len(expected_keys(datasets)), "the kill should land mid-run"
    parsed_rows(path)  # what the kill left is readable

    resumed = subprocess.run(
        rfmbench_run(tmp_path, "crash", datasets), cwd=REPO, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"({len(expected_keys(datasets)) - written} to run)" in resumed.stdout.replace("\n", " ")
    assert_complete(path, datasets)


def test_two_processes_writing_one_file_interleave_no_rows(tmp_path: Path):
    path = tmp_path / "shared.csv"
    processes = [start(rfmbench_run(tmp_path, "shared", [name])) for name in ("iris", "wine")]
    for process in processes:
        try:
            process.wait(timeout=300)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
        assert process.returncode == 0, process.stderr.read().decode()[-2000:]
    assert_complete(path, ["iris", "wine"])


# Cutting 7 bytes leaves half a row (dropped); cutting only the newline leaves a whole row, which
# is kept and ended so the next row starts on its own line.
@pytest.mark.parametrize(("cut", "kept"), [(7, ["0", "2"]), (1, ["0", "1", "2"])])
def test_a_torn_last_line_is_repaired_on_the_next_append(tmp_path: Path, cut: int, kept: list):
    from rfmbench.results import append_row, read_run

    path = tmp_path / "torn.csv"
    row = {"run_id": "r", "dataset": "d", "task_kind": "regression", "model": "m", "status": "ok"}
    append_row(path, {**row, "fold": 0})
    append_row(path, {**row, "fold": 1})
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - cut])  # a writer killed inside its last row
    assert read_run(path)["fold"].astype(str).tolist() == kept[:-1]
    append_row(path, {**row, "fold": 2})
    assert [r["fold"] for r in parsed_rows(path)] == kept
