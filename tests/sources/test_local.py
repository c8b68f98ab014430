"""Local files (CSV, Parquet, ARFF): categoricals, missing values, the inferred kind, and errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rfmbench.errors import BadOption, DataSourceError
from rfmbench.sources import LoadContext
from rfmbench.sources.local import file_ref, load

CTX = LoadContext(folds=3, seed=0)


def messy_frame(n: int = 60) -> pd.DataFrame:
    """Numeric, text, low-cardinality integer and float-with-gaps columns; a text target."""
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "size": rng.normal(size=n),
            "color": rng.choice(["red", "green", "blue"], size=n).astype(object),
            "rooms": rng.integers(1, 5, size=n),
            "area": rng.uniform(10, 100, size=n),
            "label": rng.choice(["yes", "no"], size=n).astype(object),
        }
    )
    frame.loc[[3, 7], "size"] = np.nan
    frame.loc[[5], "color"] = None
    return frame


def write(frame: pd.DataFrame, path: Path) -> Path:
    if path.suffix == ".csv":
        frame.to_csv(path, index=False)
    elif path.suffix == ".parquet":
        frame.to_parquet(path, index=False)
    else:
        import arff

        attributes = []
        for column in frame.columns:
            values = frame[column]
            if pd.api.types.is_numeric_dtype(values):
                attributes.append((column, "REAL"))
            else:
                attributes.append((column, sorted(values.dropna().unique().tolist())))
        rows = [[None if pd.isna(v) else v for v in row] for row in frame.itertuples(index=False)]
        path.write_text(arff.dumps({"relation": "messy", "attributes": attributes, "data": rows}))
    return path


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".arff"])
def test_formats_load_with_categoricals_and_missing_values(tmp_path: Path, suffix: str) -> None:
    path = write(messy_frame(), tmp_path / f"messy{suffix}")
    task = load(file_ref(path, "label"), CTX)
    assert task.name == f"file:messy{suffix}"
    assert task.kind == "classification"
    assert list(task.X.columns) == ["size", "color", "rooms", "area"]
    assert "color" in task.categorical and "rooms" in task.categorical
    assert "size" not in task.categorical and "area" not in task.categorical
    assert task.X["size"].isna().sum() == 2 and task.X["color"].isna().sum() == 1
    assert set(task.y) == {"yes", "no"}
    assert len(task.splits) == 3
    assert "sha256:" in task.source


def test_regression_is_inferred_and_overrides_apply(tmp_path: Path) -> None:
    frame = messy_frame()
    frame["price"] = frame["area"] * 3.7 + 0.1
    path = write(frame.drop(columns=["label"]), tmp_path / "prices.csv")
    task = load(file_ref(path, "price"), CTX)
    assert task.kind == "regression" and task.y.dtype == np.float64
    task = load(file_ref(path, "rooms", categorical=["color"]), CTX)
    assert task.kind == "classification"  # an integer target with few values
    assert task.categorical == ("color",)
    task = load(file_ref(path, "rooms", kind="regression"), CTX)
    assert task.kind == "regression"


def test_rows_without_target_are_dropped(tmp_path: Path) -> None:
    frame = messy_frame()
    frame.loc[[0, 1], "label"] = None
    task = load(file_ref(write(frame, tmp_path / "gaps.csv"), "label"), CTX)
    assert len(task.X) == len(frame) - 2


@pytest.mark.parametrize(
    ("content", "target", "message"),
    [
        ("", "label", "is empty"),
        ("a,b,label\n", "label", "is empty"),
        ("a,b,label\n1,2,x\n3,4,y\n", "missing", "target column 'missing' is not in"),
        ("a,label\n1,x\n2,x\n3,x\n4,x\n", "label", "single class"),
    ],
)
def test_bad_csv_files(tmp_path: Path, content: str, target: str, message: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(DataSourceError, match=message):
        load(file_ref(path, target), CTX)


def test_unreadable_and_unknown_files(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.parquet"
    garbage.write_bytes(b"\x00\x01 not parquet at all" * 10)
    with pytest.raises(DataSourceError, match="cannot read .* as PARQUET"):
        load(file_ref(garbage, "y"), CTX)
    bad_arff = tmp_path / "bad.arff"
    bad_arff.write_text("@relation x\n@attribute a REAL\n@data\n1,2,3\n")
    with pytest.raises(DataSourceError, match="cannot read .* as ARFF"):
        load(file_ref(bad_arff, "a"), CTX)
    (tmp_path / "data.xlsx").write_bytes(b"PK")
    with pytest.raises(DataSourceError, match="cannot tell the format"):
        load(file_ref(tmp_path / "data.xlsx", "y"), CTX)
    with pytest.raises(DataSourceError, match="does not exist"):
        load(file_ref(tmp_path / "absent.csv", "y"), CTX)


def test_bad_options(tmp_path: Path) -> None:
    path = write(messy_frame(), tmp_path / "m.csv")
    with pytest.raises(BadOption, match="--categorical names column 'nope'"):
        load(file_ref(path, "label", categorical=["nope"]), CTX)
    with pytest.raises(BadOption, match="--kind must be one of"):
        load(file_ref(path, "label", kind="ranking"), CTX)
    with pytest.raises(DataSourceError, match="needs a numeric target"):
        load(file_ref(path, "label", kind="regression"), CTX)
    with pytest.raises(BadOption, match="needs a target"):
        load(file_ref(path, None), CTX)


def test_a_loaded_file_goes_through_preprocessing(tmp_path: Path) -> None:
    from rfmbench.preprocessing import prepare_fold

    task = load(file_ref(write(messy_frame(), tmp_path / "m.parquet"), "label"), CTX)
    split = task.splits[0]
    fold = prepare_fold(task.X, task.y, task.categorical, task.kind, split.train, split.test)
    assert np.isfinite(fold.X_train).all() and fold.X_train.shape[0] == len(split.train)
