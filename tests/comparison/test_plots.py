"""compare.plots: each figure renders to a real PNG, written atomically; files are named per kind."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rfmbench.comparison.plots import (
    cd_diagram,
    default_pair,
    pair_scatter,
    rank_distribution,
    save_figure,
    write_plots,
)
from rfmbench.comparison.stats import compare
from rfmbench.errors import BadOption

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def results(models: list[str], n_datasets: int = 6, kinds=("classification",)) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for kind in kinds:
        metric = "accuracy" if kind == "classification" else "r2"
        for i in range(n_datasets):
            for j, model in enumerate(models):
                rows.append(
                    {
                        "dataset": f"{kind[:3]}{i}",
                        "task_kind": kind,
                        "fold": 0,
                        "model": model,
                        "status": "ok",
                        metric: 0.6 + 0.05 * j + rng.normal(0, 0.03),
                    }
                )
    return pd.DataFrame(rows)


def assert_png(path: Path) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 5000
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]  # no temp file left


def test_each_figure_saves_as_a_png(tmp_path: Path):
    (comparison,) = compare(results(["rfm", "kernel-ridge", "random-forest", "mlp"]))
    mean_ranks = comparison.table.set_index("model")["mean_rank"]
    figures = {
        "cd.png": cd_diagram(mean_ranks, comparison.nemenyi),
        "pair.png": pair_scatter(comparison.scores, "rfm", "mlp", "accuracy"),
        "ranks.png": rank_distribution(comparison.ranks),
    }
    for name, figure in figures.items():
        assert save_figure(figure, tmp_path / name) == tmp_path / name
        assert_png(tmp_path / name)


def test_pair_scatter_rejects_an_unknown_model():
    (comparison,) = compare(results(["a", "b", "c"]))
    with pytest.raises(BadOption, match="no results for model 'zzz'"):
        pair_scatter(comparison.scores, "a", "zzz", "accuracy")


def test_default_pair_prefers_rfm_against_the_best_other():
    assert default_pair(["mlp", "rfm", "kernel-ridge"]) == ("rfm", "mlp")
    assert default_pair(["b", "a"]) == ("b", "a")
    assert default_pair(["a"]) is None


def test_write_plots_names_one_file_per_kind(tmp_path: Path):
    comparisons = compare(results(["a", "b", "c"], kinds=("classification", "regression")))
    written, skipped = write_plots(
        comparisons, plot=tmp_path / "cd.png", plot_dir=tmp_path / "figs", pair=("a", "c")
    )
    names = sorted(str(p.relative_to(tmp_path)) for p in written)
    assert names == sorted(
        [
            "cd-classification.png",
            "cd-regression.png",
            "figs/cd-classification.png",
            "figs/cd-regression.png",
            "figs/ranks-classification.png",
            "figs/ranks-regression.png",
            "figs/pair-a-vs-c-classification.png",
            "figs/pair-a-vs-c-regression.png",
        ]
    )
    assert skipped == []
    for path in written:
        assert_png(path)


def test_write_plots_skips_the_cd_diagram_when_friedman_cannot_run(tmp_path: Path):
    comparisons = compare(results(["a", "b"]))
    written, skipped = write_plots(comparisons, plot=tmp_path / "cd.png")
    assert written == [] and "cannot run" in skipped[0]
    with pytest.raises(BadOption, match="cannot write a figure"):
        write_plots(comparisons, plot=tmp_path / "cd.xyz")


def test_feature_plots_draw_iteration_curves_and_reordered_heatmaps(tmp_path):
    from rfmbench.comparison.plots import write_feature_plots
    from rfmbench.features import modular_order

    rows = pd.DataFrame(
        {
            "dataset": ["modmul-61", "modmul-61", "iris"],
            "model": ["rfm", "rfm", "random-forest"],
            "fold": [0, 1, 0],
            "task_kind": ["classification"] * 3,
            "iteration_test_scores": ["[0.0, 0.1, 0.99]", "[0.0, 0.5, 1.0]", np.nan],
            "iteration_val_scores": ["[0.0, null, 1.0]", np.nan, np.nan],
        }
    )
    results = tmp_path / "r.csv"
    folder = tmp_path / "r-features"
    folder.mkdir()
    np.save(folder / "modmul-61--rfm--fold0.npy", np.eye(122))
    written = write_feature_plots(rows, [results], tmp_path / "plots")
    names = sorted(p.name for p in written)
    assert names == ["M-modmul-61--rfm--fold0.png", "iterations-modmul-61.png"]  # none for iris
    for path in written:
        assert path.read_bytes().startswith(b"\x89PNG") and path.stat().st_size > 5000
    order = modular_order("mul", 61)
    assert sorted(order.tolist()) == list(range(122)) and order[1:4].tolist() == [1, 2, 4]
