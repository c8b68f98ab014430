"""Figures of a comparison: critical-difference diagram, pairwise scatter, rank distribution.

Each function takes frames from ``compare.stats`` and returns a matplotlib ``Figure`` built on the
Agg canvas directly (no pyplot, no global state, no display needed); ``save_figure`` writes it
through a temporary file and ``os.replace``, so a reader never sees half a PNG.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from rfmbench.errors import BadOption
from rfmbench.files import atomic_path


def _figure(width: float, height: float) -> Figure:
    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def cd_diagram(mean_ranks: pd.Series, pvalues: pd.DataFrame, title: str = "") -> Figure:
    """A critical-difference diagram: models on the mean-rank axis, bars join those not different.

    ``pvalues`` is the post-hoc p-value matrix (e.g. Nemenyi after Friedman) over the same models.
    Drawn by scikit-posthocs' ``critical_difference_diagram`` (alpha 0.05).
    """
    import scikit_posthocs as sp

    figure = _figure(7.0, 0.5 + 0.35 * max(len(mean_ranks), 3))
    axes = figure.add_subplot()
    sp.critical_difference_diagram(
        mean_ranks, pvalues.loc[mean_ranks.index, mean_ranks.index], ax=axes
    )
    axes.set_title(title or "Critical difference diagram (mean rank, lower is better)", fontsize=10)
    return figure


def pair_scatter(scores: pd.DataFrame, a: str, b: str, metric: str, title: str = "") -> Figure:
    """One point per dataset: model ``a``'s metric against model ``b``'s, with the diagonal.

    Datasets where either model has no score are left out of the plot and counted in the title.
    """
    for model in (a, b):
        if model not in scores.columns:
            raise BadOption(
                f"--pair: no results for model '{model}'",
                hint=f"models in the results: {', '.join(scores.columns)}",
            )
    both = scores[[a, b]].dropna()
    figure = _figure(5.0, 5.0)
    axes = figure.add_subplot()
    axes.scatter(both[b], both[a], s=30, zorder=3)
    for dataset, row in both.iterrows():
        axes.annotate(
            str(dataset),
            (row[b], row[a]),
            fontsize=7,
            alpha=0.7,
            xytext=(3, 3),
            textcoords="offset points",
        )
    values = both.to_numpy().ravel()
    if len(values):
        low, high = float(np.min(values)), float(np.max(values))
        pad = 0.05 * (high - low or abs(high) or 1.0)
        axes.plot([low - pad, high + pad], [low - pad, high + pad], color="grey", lw=1, ls="--")
    axes.set_xlabel(f"{b} {metric}")
    axes.set_ylabel(f"{a} {metric}")
    missing = len(scores) - len(both)
    note = f" ({missing} datasets without both left out)" if missing else ""
    axes.set_title(title or f"{a} vs {b}: {len(both)} datasets{note}", fontsize=10)
    axes.grid(alpha=0.3)
    return figure


def rank_distribution(ranks: pd.DataFrame, title: str = "") -> Figure:
    """A box plot of each model's per-dataset ranks with the ranks themselves as jittered points."""
    models = list(ranks.columns)
    figure = _figure(1.2 + 1.1 * len(models), 4.0)
    axes = figure.add_subplot()
    axes.boxplot([ranks[m].to_numpy() for m in models], tick_labels=models, showfliers=False)
    jitter = np.random.default_rng(0)  # fixed: the same results give the same picture
    for position, model in enumerate(models, start=1):
        values = ranks[model].to_numpy()
        axes.scatter(
            position + jitter.uniform(-0.12, 0.12, len(values)), values, s=12, alpha=0.6, zorder=3
        )
    axes.set_ylabel("rank on a dataset (1 = best)")
    axes.invert_yaxis()
    axes.set_title(title or f"Rank distribution over {len(ranks)} datasets", fontsize=10)
    axes.grid(axis="y", alpha=0.3)
    return figure


def save_figure(figure: Figure, path: Path, dpi: int = 150) -> Path:
    """Write ``figure`` to ``path`` (format from its suffix) via a temporary file and os.replace."""
    path = Path(path)
    with atomic_path(path, suffix=path.suffix) as tmp:  # savefig picks the format by suffix
        figure.savefig(tmp, dpi=dpi, bbox_inches="tight")  # labels outside the axes
    return path


def default_pair(models: list[str]) -> tuple[str, str] | None:
    """RFM against the best-ranked other model, else the two best (``models`` sorted best first)."""
    if len(models) < 2:
        return None
    if "rfm" in models:
        return ("rfm", next(m for m in models if m != "rfm"))
    return (models[0], models[1])


def check_plot_path(plot: Path) -> Path:
    """Return ``plot`` if matplotlib can write a figure in the format its suffix names."""
    supported = FigureCanvasAgg(Figure()).get_supported_filetypes()
    if Path(plot).suffix.lstrip(".").lower() not in supported:
        raise BadOption(
            f"--plot: cannot write a figure as '{Path(plot).suffix or Path(plot).name}'",
            hint=f"use one of {', '.join('.' + s for s in sorted(supported))}",
        )
    return Path(plot)


def write_plots(
    comparisons: list,
    *,
    plot: Path | None = None,
    plot_dir: Path | None = None,
    pair: tuple[str, str] | None = None,
) -> tuple[list[Path], list[str]]:
    """Write the figures asked for; return the paths written and why any figure was skipped.

    ``plot``: the critical-difference diagram, at that path when the results have one task kind,
    else one file per kind with the kind before the suffix (``cd.png`` -> ``cd-classification.png``,
    ``cd-regression.png``). ``plot_dir``: per kind, ``cd-KIND.png``, ``ranks-KIND.png`` and
    ``pair-A-vs-B-KIND.png`` (``pair``, else ``default_pair``).
    """
    if plot is not None:
        check_plot_path(plot)
    written: list[Path] = []
    skipped: list[str] = []
    several = len(comparisons) > 1
    for comparison in comparisons:
        kind = comparison.kind
        cd_paths = []
        if plot is not None:
            plot = Path(plot)
            cd_paths.append(plot.with_name(f"{plot.stem}-{kind}{plot.suffix}") if several else plot)
        if plot_dir is not None:
            cd_paths.append(Path(plot_dir) / f"cd-{kind}.png")
        if cd_paths and comparison.nemenyi is None:
            skipped.append(
                f"no critical difference diagram for {kind}: Friedman test "
                f"{comparison.friedman.note}"
            )
        elif cd_paths:
            mean_ranks = comparison.table.set_index("model")["mean_rank"]
            title = (
                f"{kind}, {comparison.metric}: mean rank over {comparison.n_datasets} datasets\n"
                f"Friedman p={comparison.friedman.p_value:.3g}; bars join models Nemenyi "
                f"cannot tell apart (p >= 0.05)"
            )
            figure = cd_diagram(mean_ranks, comparison.nemenyi, title)
            written += [save_figure(figure, path) for path in cd_paths]
        if plot_dir is None:
            continue
        plot_dir = Path(plot_dir)
        title = f"{kind}: rank by {comparison.metric} over {comparison.n_datasets} datasets"
        written.append(
            save_figure(rank_distribution(comparison.ranks, title), plot_dir / f"ranks-{kind}.png")
        )
        chosen = pair or default_pair(list(comparison.table["model"]))
        if chosen is None:
            skipped.append(f"no pair scatter for {kind}: fewer than 2 models")
            continue
        a, b = chosen
        figure = pair_scatter(comparison.scores, a, b, comparison.metric)
        written.append(save_figure(figure, plot_dir / f"pair-{a}-vs-{b}-{kind}.png"))
    return written, skipped


# Feature learning (the features suite): RFM's per-iteration scores and the learned matrices. ------


def iteration_curves(rows: pd.DataFrame, dataset: str) -> Figure:
    """Score per iteration of each (model, fold) of ``dataset`` that recorded them (RFM).

    Solid: the test fold (``iteration_test_scores``, recorded, never selected on: the grokking
    transition shows as the jump); dashed: the validation rows (``iteration_val_scores``).
    """
    figure = _figure(6.0, 4.0)
    axes = figure.add_subplot()
    kind = ""
    for _, row in rows.iterrows():
        label = f"{row['model']} fold {row['fold']}"
        kind = row.get("task_kind", kind)
        for column, style, what in (
            ("iteration_test_scores", "-", "test"),
            ("iteration_val_scores", "--", "validation"),
        ):
            scores = _scores_list(row.get(column))
            if scores is not None:
                axes.plot(range(len(scores)), scores, style, marker=".", label=f"{label} {what}")
    axes.set_xlabel("iteration (0: M = I)")
    axes.set_ylabel("accuracy" if kind == "classification" else "-MSE (standardized target)")
    axes.set_title(f"{dataset}: score per iteration", fontsize=10)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=7)
    return figure


def _scores_list(value) -> list[float] | None:
    """A JSON list of scores from a results cell (null as NaN), or None for an empty cell."""
    import json

    if not isinstance(value, str) or not value.startswith("["):
        return None
    return [np.nan if v is None else float(v) for v in json.loads(value)]


def feature_heatmap(M: np.ndarray, title: str, order: np.ndarray | None = None) -> Figure:
    """A heatmap of a learned feature matrix, rows and columns permuted by ``order`` if given."""
    M = np.asarray(M, dtype=np.float64)
    if order is not None:
        M = M[np.ix_(order, order)]
    figure = _figure(5.5, 4.8)
    axes = figure.add_subplot()
    image = axes.imshow(M, cmap="viridis", interpolation="nearest")
    figure.colorbar(image, ax=axes, shrink=0.8)
    axes.set_title(title, fontsize=9)
    return figure


def write_feature_plots(rows: pd.DataFrame, paths: list[Path], plot_dir: Path) -> list[Path]:
    """Per dataset, ``iterations-DATASET.png`` from rows with per-iteration scores, and for every
    feature matrix a run kept (``RUN_ID-features/`` beside each results file in ``paths``),
    ``M-DATASET--MODEL--foldK.png``: for a modular task in `rfmbench.features.modular_order`
    (multiplication by discrete logarithm, so its circulant blocks show). Returns the paths written.
    """
    from rfmbench.features import modular_order
    from rfmbench.sources.features import MODULAR

    plot_dir = Path(plot_dir)
    written: list[Path] = []
    if "iteration_test_scores" in rows.columns:
        has = rows["iteration_test_scores"].map(lambda v: _scores_list(v) is not None)
        for dataset, group in rows[has].groupby("dataset", sort=True):
            name = f"iterations-{dataset}.png".replace("/", "_")
            written.append(save_figure(iteration_curves(group, str(dataset)), plot_dir / name))
    for path in paths:
        folder = Path(path).with_name(f"{Path(path).stem}-features")
        for matrix_path in sorted(folder.glob("*.npy")) if folder.is_dir() else []:
            dataset = matrix_path.stem.split("--")[0]
            order, note = None, ""
            if dataset in MODULAR:
                operation, p = MODULAR[dataset]
                order = modular_order(operation, p)
                note = " (a, b by discrete log)" if operation == "mul" else " (a, then b)"
            title = f"{matrix_path.stem}{note}"
            figure = feature_heatmap(np.load(matrix_path), title, order)
            written.append(save_figure(figure, plot_dir / f"M-{matrix_path.stem}.png"))
    return written
