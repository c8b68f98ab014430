"""Task and Split: the plain data every later stage of the pipeline receives. No I/O here."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, NamedTuple

import numpy as np
import pandas as pd
from sklearn.model_selection import KFold, StratifiedKFold

from rfmbench.errors import BadOption
from rfmbench.features import FeatureTruth

TaskKind = Literal["classification", "regression"]


class Split(NamedTuple):
    """One outer fold: row indices into the task's X and y.

    ``fold`` is the split's position in ``Task.splits`` (what results rows call the fold). A task
    whose splits come from several repeats of a cross-validation (an OpenML task run on
    ``repeats``) numbers them repeat by repeat, ``fold = i * folds_per_repeat + fold_in_repeat`` for
    the i-th repeat taken, and ``repeat`` says which repeat a split belongs to (0 for other tasks).
    """

    fold: int
    train: np.ndarray
    test: np.ndarray
    repeat: int = 0


@dataclass(frozen=True, eq=False)  # eq=False: arrays make == meaningless
class Task:
    """A supervised tabular task with its outer splits.

    Parameters
    ----------
    name : str
        Unique name within its suite, e.g. ``"iris"``, ``"openml-31"``, ``"uci121/abalone"``.
    kind : {"classification", "regression"}
    X : pandas.DataFrame
        Raw features; categorical columns are listed in ``categorical``, not yet encoded.
    y : numpy.ndarray
        Raw target (class labels of any type, or floats).
    categorical : tuple of str
        Names of the categorical columns of ``X``.
    splits : tuple of Split
        The outer folds, identical for every model.
    source : str
        Provenance: suite, OpenML task id, file path.
    selection : Split or None
        A fixed train/validation split for choosing hyperparameters, where the data defines one
        (the UCI collection's ``conxuntos.dat``; used by ``--protocol paper``). ``fold`` is -1.
    truth : FeatureTruth or None
        Which features the target depends on, for generated tasks that know it (the ``features``
        suite); results then score how well each model recovers them.
    """

    name: str
    kind: TaskKind
    X: pd.DataFrame
    y: np.ndarray
    categorical: tuple[str, ...]
    splits: tuple[Split, ...]
    source: str
    selection: Split | None = None
    truth: FeatureTruth | None = None

    @property
    def n_classes(self) -> int:
        return int(pd.Series(self.y).nunique()) if self.kind == "classification" else 0


def kfold_splits(y: np.ndarray, kind: TaskKind, folds: int, seed: int) -> tuple[Split, ...]:
    """Seeded outer K-fold splits, stratified for classification."""
    n = len(y)
    # scikit-learn raises ValueError past these; too many --folds is the user's to fix.
    most = int(pd.Series(y).value_counts().max()) if kind == "classification" and n else n
    if folds > most:
        what = f"the largest class has {most} rows" if kind == "classification" else f"{n} rows"
        raise BadOption(f"--folds {folds} is too many for this dataset: {what}")
    if kind == "classification":
        splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
        parts = splitter.split(np.zeros(n), y)
    else:
        parts = KFold(n_splits=folds, shuffle=True, random_state=seed).split(np.zeros(n))
    return tuple(Split(i, train, test) for i, (train, test) in enumerate(parts))
