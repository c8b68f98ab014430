"""--protocol paper on the real UCI-121 sample: tuned once on the selection split, 4 outer folds.

The chosen RFM configuration is checked against an independent search written here: every
(reg, row_norm) of the paper grid fitted on the selection split's training rows and scored on its
validation rows.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from rfmbench.cli import app
from rfmbench.results import read_run
from rfmbench.runner.plan import make_plan
from rfmbench.runner.protocols import PaperProtocol
from rfmbench.sources import DatasetRef, LoadContext
from rfmbench.sources.uci121 import load
from tests.sources.conftest import UCI_SAMPLE

runner = CliRunner()
DATASETS = ["iris", "zoo"]
MODELS = ["rfm", "random-forest"]


def paper_run(out: Path, *options: str, run_id: str = "paper") -> pd.DataFrame:
    result = runner.invoke(
        app,
        [
            "run", "--suite", "uci121", "--data-dir", str(UCI_SAMPLE), "--protocol", "paper",
            "--models", ",".join(MODELS), "--datasets", ",".join(DATASETS), "--out", str(out),
            "--run-id", run_id, *options,
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return read_run(out / f"{run_id}.csv").sort_values(["dataset", "model", "fold"])


@pytest.fixture(scope="module")
def serial(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    out = tmp_path_factory.mktemp("paper")
    return out, paper_run(out, "--jobs", "1")


def test_one_row_per_dataset_paper_fold_and_model(serial) -> None:
    out, rows = serial
    assert len(rows) == len(DATASETS) * 4 * len(MODELS)
    assert (rows["status"] == "ok").all(), rows["error"].tolist()
    for (dataset, _model), group in rows.groupby(["dataset", "model"]):
        task = load(DatasetRef(dataset), LoadContext(folds=4, data_dir=UCI_SAMPLE))
        assert group["fold"].tolist() == [0, 1, 2, 3]
        assert group["n_train"].tolist() == [len(s.train) for s in task.splits]
        # Tuned once on the selection split: the same configuration for every outer fold.
        assert group["params"].nunique() == 1 and group["inner_cv_score"].nunique() == 1
        assert (group["tuning_seconds"] > 0).sum() == 1  # the other folds reuse it for free
    assert set(rows.loc[rows["model"] == "rfm", "n_candidates"]) == {10}  # 5 reg x row_norm
    assert set(rows.loc[rows["model"] == "random-forest", "n_candidates"]) == {36}
    stored = sorted(p.name for p in (out / "paper-selection").glob("*.json"))
    assert stored == sorted(f"{d}--{m}--seed0.json" for d in DATASETS for m in MODELS)


def poisoned_copy(tmp_path: Path, name: str, fold: int) -> Path:
    """The collection's folder of ``name`` with outer fold ``fold``'s test rows poisoned.

    Their features become huge and their labels another class; a protocol that lets a test row
    into tuning, scaling or fitting then chooses differently.
    """
    source = UCI_SAMPLE / name
    target = tmp_path / "uci" / name
    target.mkdir(parents=True)
    for path in source.iterdir():
        (target / path.name).write_bytes(path.read_bytes())
    data_file = next(target.glob("*_R.dat"))
    data = pd.read_csv(data_file, sep="\t", index_col=0)
    test = np.array((target / "conxuntos_kfold.dat").read_text().splitlines()[2 * fold + 1].split(),
                    dtype=int)  # fmt: skip
    features, label = data.columns[:-1], data.columns[-1]
    data.iloc[test, data.columns.get_indexer(features)] = 1e3
    data.iloc[test, data.columns.get_loc(label)] = (data[label].iloc[test] + 1) % data[
        label
    ].nunique()
    data.to_csv(data_file, sep="\t")
    return target.parent


def protocol_rows(data_dir: Path, out: Path, protocol: str) -> pd.DataFrame:
    result = runner.invoke(app, [
        "run", "--suite", "uci121", "--data-dir", str(data_dir), "--protocol", protocol,
        "--models", "rfm", "--datasets", "iris", "--out", str(out), "--run-id", "r",
        "--device", "cpu",
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    return read_run(out / "r.csv").set_index("fold")


def test_paper_clean_never_lets_a_test_row_in(tmp_path: Path) -> None:
    poisoned = poisoned_copy(tmp_path, "iris", fold=0)
    clean = protocol_rows(UCI_SAMPLE, tmp_path / "clean", "paper-clean")
    dirty = protocol_rows(poisoned, tmp_path / "dirty", "paper-clean")
    assert (clean["status"] == "ok").all() and (dirty["status"] == "ok").all()
    # Fold 0 never saw its test rows: the same choice, the same inner score, the same training.
    for column in ("params", "inner_cv_score", "n_train", "n_features"):
        assert clean.loc[0, column] == dirty.loc[0, column], column
    # Tuned per fold on the selection rows inside the fold: choices may differ between folds.
    assert clean["tuning_reused"].eq(False).all()
    # Under the paper's own protocol the poisoned rows are part of the selection split: it leaks.
    leaky_clean = protocol_rows(UCI_SAMPLE, tmp_path / "paper-clean", "paper")
    leaky_dirty = protocol_rows(poisoned, tmp_path / "paper-dirty", "paper")
    assert leaky_clean.loc[0, "inner_cv_score"] != leaky_dirty.loc[0, "inner_cv_score"]


def test_a_resumed_run_reuses_the_stored_tuning(serial, monkeypatch, tmp_path: Path) -> None:
    out, rows = serial
    resumed = tmp_path / "resumed"
    resumed.mkdir()
    for path in out.iterdir():  # the finished run, with the rows of fold 3 lost
        if path.is_dir():
            (resumed / path.name).mkdir()
            for item in path.iterdir():
                (resumed / path.name / item.name).write_bytes(item.read_bytes())
        elif path.suffix != ".lock":
            (resumed / path.name).write_bytes(path.read_bytes())
    kept = read_run(resumed / "paper.csv").query("fold != 3")
    kept.to_csv(resumed / "paper.csv", index=False)

    def no_tuning(*args, **kwargs):
        raise AssertionError("tuned again")

    monkeypatch.setattr(PaperProtocol, "tune", no_tuning)
    again = paper_run(resumed, "--jobs", "1")
    assert (again["status"] == "ok").all(), again["error"].tolist()
    refolded = again.query("fold == 3")
    assert (refolded["tuning_seconds"] == 0).all() and refolded["tuning_reused"].all()
    columns = ["dataset", "model", "fold", "params", "accuracy"]
    pd.testing.assert_frame_equal(
        again[columns].reset_index(drop=True), rows[columns].reset_index(drop=True)
    )


def test_workers_share_one_tuning_and_give_the_same_rows(serial, tmp_path: Path) -> None:
    _, rows = serial
    parallel = paper_run(tmp_path, "--jobs", "2")
    # One job tuned each (dataset, model); the others were handed its tuning.
    assert (
        parallel.groupby(["dataset", "model"])["tuning_seconds"].apply(lambda t: (t > 0).sum()) == 1
    ).all()
    assert (parallel.groupby(["dataset", "model"])["tuning_reused"].sum() == 3).all()
    columns = ["dataset", "model", "fold", "status", "params", "accuracy", "inner_cv_score"]
    pd.testing.assert_frame_equal(
        parallel[columns].reset_index(drop=True), rows[columns].reset_index(drop=True)
    )


def test_first_folds_run_first_so_workers_tune_different_pairs() -> None:
    plan = make_plan(
        suite="uci121", datasets=DATASETS, models=MODELS, folds=4, device="cpu",
        protocol="paper", data_dir=UCI_SAMPLE,
    )  # fmt: skip
    firsts = len(DATASETS) * len(MODELS)
    assert [job.fold for job in plan.jobs[:firsts]] == [0] * firsts
    assert {(job.dataset, job.model) for job in plan.jobs[:firsts]} == {
        (d, m) for d in DATASETS for m in MODELS
    }
    assert sorted(job.key for job in plan.jobs) == sorted(
        (d, f, m) for d in DATASETS for f in range(4) for m in MODELS
    )


def test_ray_workers_get_the_tuning_as_data_and_write_nothing(serial, tmp_path: Path) -> None:
    pytest.importorskip("ray")
    _, rows = serial
    on_ray = paper_run(tmp_path, "--executor", "ray")
    columns = ["dataset", "model", "fold", "status", "params", "accuracy", "tuning_reused"]
    pd.testing.assert_frame_equal(
        on_ray[columns].reset_index(drop=True), rows[columns].reset_index(drop=True)
    )
    # Only the driver's files: rows, their lock, metadata, leaderboard and the stored tunings.
    written = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    tunings = sorted(f"paper-selection/{d}--{m}--seed0.json" for d in DATASETS for m in MODELS)
    expected = ["paper-leaderboard.csv", "paper-selection", "paper.csv", "paper.csv.lock"]
    assert written == sorted([*expected, "paper.json", *tunings])
