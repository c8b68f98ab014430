"""Our RFM against xrfm.RFM (0.4.5) under the RFM paper's UCI-121 protocol: test accuracy.

Usage:  .venv/bin/python benchmarks/paper_vs_xrfm.py --uci DIR [--device cpu|cuda] [--datasets a,b]

For each data set of the collection (read by rfmbench's own ``uci121`` source), both models get the
same preprocessed rows and the same settings: Laplace kernel, bandwidth 10, full M, float32. The
protocol is the paper's, run identically for both:

1. On the fixed selection split (``conxuntos.dat``: train / validation rows) each model fits every
   (reg, row normalisation) of the paper grid, reg in {10, 1, 0.1, 0.01, 0.001}, for iterations
   0..5, and keeps the (reg, row_norm, iteration) with the best validation accuracy (first in grid
   order on ties).
2. With that choice, M is relearned from scratch on each of the 4 training folds of
   ``conxuntos_kfold.dat`` (all training rows, the chosen number of AGOP updates, last iteration
   kept) and scored on the fold's test rows. The reported accuracy is the mean over the 4 folds.

xrfm is used as its authors intend: a new ``xrfm.RFM`` per fit, ``reg`` and ``iters`` passed to
``fit``, early stopping off, labels one-hot 0..K-1, its default solver; for the fold refits
``return_best_params=False`` keeps the last iteration. Row normalisation is applied to its inputs.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time
from pathlib import Path

import numpy as np

from rfmbench.preprocessing import prepare_fold
from rfmbench.sources.base import DatasetRef, LoadContext
from rfmbench.sources.uci121 import load, scan

REGS = (10.0, 1.0, 0.1, 0.01, 0.001)
ROW_NORMS = (True, False)
ITERS = 5
BANDWIDTH = 10.0


def encoded_labels(fold) -> tuple[np.ndarray, np.ndarray]:
    """Training labels 0..K-1 and test labels in the same code (-1: a class unseen in training)."""
    known = np.isin(fold.y_test_raw, fold.classes)
    y_test = np.where(known, np.searchsorted(fold.classes, fold.y_test_raw), -1)
    return fold.y_train, y_test


def row_normalised(X: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    return X / np.maximum(norms, np.finfo(np.float32).tiny)


class Ours:
    name = "ours"

    def __init__(self, device: str):
        self.device = device

    def select(self, X_tr, y_tr, X_va, y_va, reg, row_norm):
        """Validation accuracy of iterations 0..ITERS; returns (best accuracy, best iteration)."""
        from rfmbench import RFMClassifier

        model = RFMClassifier(
            kernel="laplace", bandwidth=BANDWIDTH, reg=reg, iters=ITERS, diag=False,
            row_norm=row_norm, dtype="float32", device=self.device, random_state=0,
        )  # fmt: skip
        model.fit(X_tr, y_tr, X_va, y_va)
        return float(np.mean(model.predict(X_va) == y_va)), int(model.best_iter_)

    def refit_predict(self, X_tr, y_tr, X_te, reg, row_norm, iters):
        from rfmbench import RFMClassifier

        model = RFMClassifier(
            kernel="laplace", bandwidth=BANDWIDTH, reg=reg, iters=iters, diag=False,
            row_norm=row_norm, val_fraction=0.0, dtype="float32", device=self.device,
            random_state=0,
        )  # fmt: skip
        return model.fit(X_tr, y_tr).predict(X_te)


class Xrfm:
    name = "xrfm"

    def __init__(self, device: str):
        self.device = device

    def _model(self, iters):
        from xrfm import RFM

        return RFM(
            kernel="laplace", iters=iters, bandwidth=BANDWIDTH, exponent=1.0, diag=False,
            device=self.device, verbose=False, solver="solve", tuning_metric="accuracy",
        )  # fmt: skip

    @staticmethod
    def _one_hot(y, k):
        return np.eye(k, dtype=np.float32)[y]

    def _inputs(self, X, row_norm):
        return (row_normalised(X) if row_norm else X).astype(np.float32)

    def select(self, X_tr, y_tr, X_va, y_va, reg, row_norm):
        k = int(y_tr.max()) + 1
        model = self._model(ITERS)
        X_tr, X_va = self._inputs(X_tr, row_norm), self._inputs(X_va, row_norm)
        # Classes unseen in training cannot be predicted; give xrfm a target it can score.
        targets_va = self._one_hot(np.where(y_va < 0, 0, y_va), k)
        model.fit(
            (X_tr, self._one_hot(y_tr, k)), (X_va, targets_va), iters=ITERS, reg=reg,
            early_stop_rfm=False,
        )  # fmt: skip
        predicted = np.asarray(model.predict(X_va)).argmax(axis=1)
        return float(np.mean(predicted == y_va)), int(model.best_iter)

    def refit_predict(self, X_tr, y_tr, X_te, reg, row_norm, iters):
        k = int(y_tr.max()) + 1
        model = self._model(iters)
        X_tr, X_te = self._inputs(X_tr, row_norm), self._inputs(X_te, row_norm)
        targets = self._one_hot(y_tr, k)
        model.fit(
            (X_tr, targets), (X_tr, targets), iters=iters, reg=reg, early_stop_rfm=False,
            return_best_params=False,
        )  # fmt: skip
        return np.asarray(model.predict(X_te)).argmax(axis=1)


def evaluate(task, model) -> dict:
    """The paper protocol for one model on one task."""
    selection = prepare_fold(
        task.X, task.y, task.categorical, task.kind, task.selection.train, task.selection.test
    )
    y_tr, y_va = encoded_labels(selection)
    best = None
    for reg, row_norm in itertools.product(REGS, ROW_NORMS):
        accuracy, best_iter = model.select(
            selection.X_train, y_tr, selection.X_test, y_va, reg, row_norm
        )
        if best is None or accuracy > best[0]:
            best = (accuracy, reg, row_norm, best_iter)
    val_accuracy, reg, row_norm, iters = best
    accuracies = []
    for split in task.splits:
        fold = prepare_fold(task.X, task.y, task.categorical, task.kind, split.train, split.test)
        y_train, y_test = encoded_labels(fold)
        predicted = model.refit_predict(fold.X_train, y_train, fold.X_test, reg, row_norm, iters)
        accuracies.append(float(np.mean(np.asarray(predicted) == y_test)))
    return {
        "val": val_accuracy,
        "test": float(np.mean(accuracies)),
        "choice": f"reg={reg:g} rn={'y' if row_norm else 'n'} it={iters}",
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--uci", type=Path, required=True, help="folder of UCI-121 data sets")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--datasets", default=None, help="comma-separated names (default: all)")
    parser.add_argument("--threshold-rows", type=int, default=300)
    args = parser.parse_args(argv)
    names = sorted(scan(args.uci)) if args.datasets is None else args.datasets.split(",")
    ctx = LoadContext(folds=4, data_dir=args.uci, protocol="paper")
    models = [Ours(args.device), Xrfm(args.device)]
    print(
        f"Paper protocol (selection split -> reg, row_norm, iteration; M relearned on 4 folds), "
        f"laplace, bandwidth {BANDWIDTH}, full M, float32, {args.device}; accuracy in %"
    )
    header = (
        f"{'dataset':<30}{'rows':>6} | {'val ours':>8}{'xrfm':>7} | {'test ours':>9}{'xrfm':>7}"
        f"{'diff':>7} | {'choice ours':<22}{'choice xrfm':<22}| {'s ours':>7}{'xrfm':>7}"
    )
    print(header)
    print("-" * len(header))
    diffs, large_diffs = [], []
    for name in names:
        task = load(DatasetRef(name), ctx)
        result, seconds = {}, {}
        for model in models:
            start = time.perf_counter()
            result[model.name] = evaluate(task, model)
            seconds[model.name] = time.perf_counter() - start
        ours, xrfm = result["ours"], result["xrfm"]
        diff = 100 * (ours["test"] - xrfm["test"])
        diffs.append(diff)
        if len(task.y) >= args.threshold_rows:
            large_diffs.append(abs(diff))
        print(
            f"{name:<30}{len(task.y):>6} | {100 * ours['val']:>8.2f}{100 * xrfm['val']:>7.2f} | "
            f"{100 * ours['test']:>9.2f}{100 * xrfm['test']:>7.2f}{diff:>+7.2f} | "
            f"{ours['choice']:<22}{xrfm['choice']:<22}| "
            f"{seconds['ours']:>7.1f}{seconds['xrfm']:>7.1f}",
            flush=True,
        )
    print(
        f"\nmean test-accuracy difference ours - xrfm over {len(diffs)} data sets: "
        f"{statistics.mean(diffs):+.3f} points; largest |difference| on the "
        f"{len(large_diffs)} data sets with >= {args.threshold_rows} rows: "
        f"{max(large_diffs, default=float('nan')):.3f} points"
    )


if __name__ == "__main__":
    main()
