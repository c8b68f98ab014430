"""Results on disk: complete rows appended under a lock, torn lines skipped, atomic derived files."""

from __future__ import annotations

import csv
import json
import multiprocessing as mp
import multiprocessing.synchronize
import os
from pathlib import Path

import pandas as pd
import pytest

from rfmbench.errors import ResultsFileError
from rfmbench.results import (
    COLUMNS,
    append_row,
    read_run,
    run_path,
    write_atomic,
    write_frame,
    write_metadata,
)

HEADER = ",".join(COLUMNS)


def make_row(fold: int = 0, model: str = "m", **extra) -> dict:
    row = {
        "run_id": "r1",
        "dataset": "iris",
        "task_kind": "classification",
        "fold": fold,
        "model": model,
        "status": "ok",
        "error": "",
        "accuracy": 0.96,
        "params": json.dumps({"reg": 0.001, "kernel": "laplace, l2"}),
        "n_train": 120,
        "seed": 0,
        "started_at": "2024-05-01T12:00:00+00:00",
    }
    return {**row, **extra}


def records(path: Path) -> list[list[str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.reader(handle))


def test_header_once_then_one_complete_row_per_append(tmp_path: Path) -> None:
    path = run_path(tmp_path / "out", "r1")
    assert path == tmp_path / "out" / "r1.csv"
    error = 'ValueError: bad "thing", with a comma'
    for fold in range(3):
        append_row(path, make_row(fold, status="failed" if fold == 2 else "ok", error=error))
    lines = path.read_text().split("\n")
    assert lines[0] == HEADER and lines[-1] == ""  # one header, every line terminated
    assert len(lines) == 5
    assert all(len(record) == len(COLUMNS) for record in records(path))

    frame = read_run(path)
    assert list(frame.columns) == list(COLUMNS)
    assert frame["fold"].tolist() == [0, 1, 2]
    assert frame["status"].tolist() == ["ok", "ok", "failed"]
    assert frame.loc[2, "error"] == error
    assert json.loads(frame.loc[0, "params"]) == {"reg": 0.001, "kernel": "laplace, l2"}
    assert frame.loc[0, "accuracy"] == 0.96
    assert pd.isna(frame.loc[0, "rmse"])  # a column the row did not have is empty


def test_names_that_look_like_numbers_stay_strings(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    append_row(path, make_row(0, model="1e3", dataset="007", run_id="2024"))
    frame = read_run(path)
    assert frame.loc[0, ["run_id", "dataset", "model"]].tolist() == ["2024", "007", "1e3"]


def test_a_key_that_is_not_a_column_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="accuracyy"):
        append_row(tmp_path / "r.csv", make_row(accuracyy=0.5))


def cut_points(line: str) -> dict[str, int]:
    """Where a killed writer might have stopped inside ``line``."""
    status_end = line.index(",ok,") + len(",ok")
    return {
        "before-status": line.index(",iris,") + 3,
        "after-status": status_end,
        "inside-metrics": status_end + len(",,0.9"),
        "inside-quoted-params": line.index("laplace"),
        "before-last-field": line.rindex(","),
    }


@pytest.mark.parametrize(
    "where",
    [
        "before-status",
        "after-status",
        "inside-metrics",
        "inside-quoted-params",
        "before-last-field",
    ],
)
def test_a_torn_last_line_is_skipped_and_the_next_row_starts_a_line(
    tmp_path: Path, where: str
) -> None:
    path = tmp_path / "r.csv"
    append_row(path, make_row(0))
    line = path.read_text().split("\n")[1]
    with open(path, "a", encoding="utf-8") as handle:  # a writer killed in mid-row
        handle.write(line.replace("0.96", "0.97")[: cut_points(line)[where]])

    frame = read_run(path)
    assert frame["fold"].tolist() == [0]
    assert frame["accuracy"].tolist() == [0.96]

    append_row(path, make_row(1))
    assert all(len(record) == len(COLUMNS) for record in records(path))
    frame = read_run(path)
    assert frame["fold"].tolist() == [0, 1]
    assert frame["accuracy"].tolist() == [0.96, 0.96]
    assert path.read_text().endswith("\n")


def test_a_whole_last_row_without_a_newline_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    append_row(path, make_row(0))
    path.write_text(path.read_text().rstrip("\n"))  # e.g. saved by an editor
    assert read_run(path)["fold"].tolist() == [0]
    append_row(path, make_row(1))
    assert read_run(path)["fold"].tolist() == [0, 1]
    assert all(len(record) == len(COLUMNS) for record in records(path))


def test_a_torn_header_is_rewritten(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_text(HEADER[:25])  # killed during the very first write
    append_row(path, make_row(0))
    assert path.read_text().split("\n")[0] == HEADER
    assert read_run(path)["fold"].tolist() == [0]


def test_rows_with_an_unknown_status_are_dropped(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    append_row(path, make_row(0))
    append_row(path, make_row(1, status="bogus"))
    assert read_run(path)["fold"].tolist() == [0]


@pytest.mark.parametrize(
    ("text", "match"),
    [
        (None, "not found"),
        ("", "cannot read"),
        ("a,b\n1,2\n", "not an rfmbench results file"),
    ],
)
def test_unreadable_results_files(tmp_path: Path, text: str | None, match: str) -> None:
    path = tmp_path / "r.csv"
    if text is not None:
        path.write_text(text)
    with pytest.raises(ResultsFileError, match=match):
        read_run(path)


def _writer(path: str, model: str, n: int, start: mp.synchronize.Barrier) -> None:
    start.wait()  # both processes are up and importing is done: they append at the same time
    for i in range(n):
        append_row(Path(path), make_row(i, model=model, error="x" * 300))


def test_two_processes_appending_never_interleave(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    context = mp.get_context("spawn")
    start = context.Barrier(2)
    writers = [
        context.Process(target=_writer, args=(str(path), model, 200, start)) for model in ("a", "b")
    ]
    for process in writers:
        process.start()
    for process in writers:
        process.join(timeout=120)
        assert process.exitcode == 0
    lines = path.read_text().split("\n")
    assert lines.count(HEADER) == 1 and lines[0] == HEADER
    assert all(len(record) == len(COLUMNS) for record in records(path))
    frame = read_run(path)
    assert len(frame) == 400
    for model in ("a", "b"):
        assert frame.loc[frame["model"] == model, "fold"].tolist() == list(range(200))
    assert set(frame["error"]) == {"x" * 300}


def test_write_atomic_replaces_the_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "board.csv"
    write_atomic(path, "old\n")
    write_atomic(path, "new\n")
    assert path.read_text() == "new\n"
    assert os.listdir(path.parent) == ["board.csv"]


def test_a_failed_atomic_write_keeps_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "board.csv"
    write_atomic(path, "old\n")
    with pytest.raises(TypeError):
        write_atomic(path, 42)  # type: ignore[arg-type]
    assert path.read_text() == "old\n"
    assert os.listdir(tmp_path) == ["board.csv"]


def test_write_frame_and_metadata(tmp_path: Path) -> None:
    frame = pd.DataFrame({"model": ["a", "b"], "rank": [1, 2]})
    write_frame(tmp_path / "f.csv", frame)
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "f.csv"), frame)
    write_metadata(tmp_path / "m.json", {"seed": 0, "path": tmp_path})
    assert json.loads((tmp_path / "m.json").read_text()) == {"seed": 0, "path": str(tmp_path)}
    assert sorted(os.listdir(tmp_path)) == ["f.csv", "m.json"]
