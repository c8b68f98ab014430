"""`rfmbench models [--details]`: every registered model, whether it is installed, its search space."""

from __future__ import annotations

import dataclasses

from typer.testing import CliRunner

from rfmbench.cli import app
from rfmbench.models.registry import MODELS, get_model

runner = CliRunner()
WIDE = {"COLUMNS": "200"}  # wide enough that no cell is cut short; long cells still wrap


def table_rows(output: str) -> dict[str, dict[str, str]]:
    """Parse a rich table: {first cell: {column: cell text}}, wrapped cell lines joined by spaces."""
    lines = [line for line in output.splitlines() if line.startswith(("┃", "│"))]
    header = [cell.strip() for cell in lines[0].split("┃")[1:-1]]
    rows: list[list[list[str]]] = []
    for line in lines[1:]:
        cells = [cell.strip() for cell in line.split("│")[1:-1]]
        if cells[0]:  # a new row starts where the first column has text
            rows.append([[] for _ in header])
        for parts, cell in zip(rows[-1], cells, strict=True):
            if cell:
                parts.append(cell)
    return {
        " ".join(row[0]): {
            column: " ".join(parts) for column, parts in zip(header, row, strict=True)
        }
        for row in rows
    }


def describe(axis: object) -> str:
    """How a search-space axis should read: a grid's values, or a distribution and its bounds."""
    if isinstance(axis, list | tuple):
        return "{" + ", ".join(str(value) for value in axis) + "}"
    low, high = axis.support()
    return f"{axis.dist.name}[{low:g}, {high:g}]"


def test_models_lists_every_registered_model_and_whether_it_is_installed() -> None:
    result = runner.invoke(app, ["models"], env=WIDE)
    assert result.exit_code == 0, result.output
    rows = table_rows(result.output)
    assert list(rows) == list(MODELS)
    for name, row in rows.items():
        assert row["available"] == str(get_model(name).available())
        assert "search space" not in row


def test_details_show_each_models_search_space_and_defaults() -> None:
    result = runner.invoke(app, ["models", "--details"], env=WIDE)
    assert result.exit_code == 0, result.output
    rows = table_rows(result.output)
    assert list(rows) == list(MODELS)
    for name, spec in MODELS.items():
        row = rows[name]
        assert row["available"] == str(spec.available())
        assert row["search space"] == "; ".join(
            f"{key}: {describe(axis)}" for key, axis in spec.space.items()
        )
        for key, value in spec.defaults.items():
            assert f"{key}={value}" in row["defaults"]


def test_a_model_whose_packages_are_missing_is_listed_as_not_available(register_model) -> None:
    missing = dataclasses.replace(
        get_model("xgboost"), name="needs-missing", requires=("rfmbench_no_such_module",)
    )
    register_model(missing)
    result = runner.invoke(app, ["models", "--details"], env=WIDE)
    assert result.exit_code == 0, result.output
    row = table_rows(result.output)["needs-missing"]
    assert row["available"] == "False"
    assert row["search space"].startswith("max_depth: randint[1, 11]; learning_rate:")


def test_the_summary_keeps_the_name_of_the_extra_to_install() -> None:
    result = runner.invoke(app, ["models"], env=WIDE)
    rows = table_rows(result.output)
    assert "rfmbench[gbdt]" in rows["xgboost"]["summary"]
    assert "rfmbench[xrfm]" in rows["xrfm"]["summary"]
