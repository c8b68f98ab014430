"""RFM groks modular addition: test accuracy per iteration and the whole fit's time.

Usage:  .venv/bin/python benchmarks/grokking.py [--task modadd-61] [--dtype float32] [--iters 30]
                                                [--threads 2] [--plot-dir DIR]

The grokking paper's setting (Mallinar et al. 2024) on the ``features`` suite's task: half of the
pairs (a, b) for training (the suite's fold 0), Gaussian kernel of bandwidth 2.5, ridge 0,
``M = AGOP^0.5`` of centred gradients, every iteration kept (no validation split: the last one is
the model). The test half is scored at every iteration through ``fit(..., monitor=...)``, whose
time is reported apart and not counted in the fit's (wall and CPU time, with the load average:
on a shared machine the wall time is only as good as the machine is quiet). ``--plot-dir`` draws
the curve and the heatmap of M as ``rfmbench compare --plot-dir`` does.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from rfmbench.comparison.plots import feature_heatmap, iteration_curves, save_figure
from rfmbench.features import circulant_score, modular_order
from rfmbench.models.rfm import RFMClassifier
from rfmbench.sources.base import DatasetRef, LoadContext
from rfmbench.sources.features import MODULAR, load

PAPER = dict(
    kernel="gaussian", bandwidth=2.5, reg=0.0, agop_power=0.5, center_grads=True, val_fraction=0.0
)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", default="modadd-61")
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--iters", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--plot-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    task = load(DatasetRef(name=args.task), LoadContext(folds=2, seed=0))
    split = task.splits[0]
    X = task.X.to_numpy(dtype=np.float64)
    model = RFMClassifier(**PAPER, iters=args.iters, dtype=args.dtype, device="cpu", random_state=0)
    start, cpu = time.perf_counter(), time.process_time()
    model.fit(X[split.train], task.y[split.train], monitor=(X[split.test], task.y[split.test]))
    seconds = time.perf_counter() - start - model.monitor_seconds_
    cpu = time.process_time() - cpu
    accuracy = float(np.mean(model.predict(X[split.test]) == task.y[split.test]))
    print(
        f"{args.task}: n_train {len(split.train)}, {args.dtype}, threads {torch.get_num_threads()}"
    )
    print("test accuracy per iteration:", " ".join(f"{a:.3f}" for a in model.monitor_scores_))
    print(f"test accuracy {accuracy:.4f}; fit {seconds:.2f} s wall (+ {model.monitor_seconds_:.2f} s "
          f"monitor), {cpu:.2f} s CPU in all; load average "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")  # fmt: skip
    print("fit timings:", {k: round(v, 2) for k, v in model.fit_timings_.items()})
    if task.truth.modular is not None:
        print(f"circulant_score of M: {circulant_score(model.M_, *task.truth.modular):.3f}")
    if args.plot_dir is not None:
        scores = "[" + ", ".join(f"{a:.6f}" for a in model.monitor_scores_) + "]"
        rows = pd.DataFrame(
            [{"model": "rfm", "fold": 0, "task_kind": "classification",
              "iteration_test_scores": scores}]
        )  # fmt: skip
        stem = f"{args.task}--rfm-paper--{args.dtype}"
        curve = save_figure(iteration_curves(rows, args.task), args.plot_dir / f"{stem}.png")
        order = modular_order(*MODULAR[args.task]) if args.task in MODULAR else None
        heatmap = feature_heatmap(model.M_, f"{stem}: M", order)
        print("figures:", curve, save_figure(heatmap, args.plot_dir / f"M-{stem}.png"))


if __name__ == "__main__":
    main()
