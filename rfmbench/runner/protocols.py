"""Tuning protocols: how a job chooses its hyperparameters, and which jobs share a choice.

A protocol checks that the tasks suit it, orders the jobs, and tunes. ``default`` tunes every
(dataset, fold, model) by inner cross-validation on that fold's training rows. ``paper`` is the
RFM paper's UCI-121 protocol: one tuning per (dataset, model) on the task's fixed selection split,
shared by every outer fold. A shared tuning is computed by the first job of its group and handed
back to the driver in the row; the driver stores it (so a resumed run does not tune again) and
hands it to the group's other jobs as data, so workers write nothing and a Ray cluster needs no
shared disk.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from rfmbench.errors import BadOption

if TYPE_CHECKING:
    from rfmbench.models.spec import ModelSpec
    from rfmbench.preprocessing import PreparedFold
    from rfmbench.runner.jobs import Job, JobConfig
    from rfmbench.tasks import Split, Task
    from rfmbench.tuning import TuningResult


def job_seed(seed: int, dataset: str, fold: int) -> int:
    """A seed per (dataset, fold), the same for every model so all see the same inner splits."""
    return zlib.crc32(f"{seed}/{dataset}/{fold}".encode()) % (2**31)


@dataclass(frozen=True)
class Protocol:
    """The interface; subclasses set ``name`` and ``summary`` and override what differs."""

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    # True when the jobs of one (dataset, model) share one tuning (see the module docstring).
    shares_tuning: ClassVar[bool] = False
    # True when the test folds' fits reuse the state the tuning's model learned (ModelSpec).
    keeps_state: ClassVar[bool] = False

    def check_source(self, source: str, suite: str) -> None:
        """Raise BadOption before loading when the suite's source cannot serve this protocol."""

    def check_tasks(self, tasks: Mapping[str, Task]) -> None:
        """Raise BadOption when a loaded task cannot be run under this protocol."""

    def order(self, jobs: list[Job], tasks: Mapping[str, Task]) -> list[Job]:
        """The jobs in the order they should run (default: as planned)."""
        return jobs

    def prepare(self, task: Task, train: np.ndarray, test: np.ndarray) -> PreparedFold:
        """The rows ``train`` and ``test`` preprocessed, fitted on ``train`` only."""
        from rfmbench.preprocessing import prepare_fold

        return prepare_fold(task.X, task.y, task.categorical, task.kind, train, test)

    def tune(
        self,
        spec: ModelSpec,
        task: Task,
        split: Split,
        fold: PreparedFold,
        config: JobConfig,
        seed: int,
    ) -> TuningResult:
        """The tuning of ``spec`` for outer fold ``split`` (``fold``: its preprocessed rows)."""
        raise NotImplementedError


@dataclass(frozen=True)
class DefaultProtocol(Protocol):
    name: ClassVar[str] = "default"
    summary: ClassVar[str] = "inner K-fold cross-validation on each outer fold's training rows"

    def tune(self, spec, task, split, fold, config, seed):
        from rfmbench.tuning import tune

        return tune(
            spec,
            task.kind,
            fold.X_train,
            fold.y_train,
            inner_folds=config.inner_folds,
            budget=config.budget,
            seed=seed,
            device=config.device,
            n_jobs=config.threads,
            precision=config.precision,
        )


@dataclass(frozen=True)
class PaperProtocol(Protocol):
    """The authors' 2022 UCI script (DESIGN.md, "The authors' UCI script"), step by step.

    Features as stored in the collection's files (already standardised: no scaler is fitted);
    each model's paper grid searched on the task's selection split (``conxuntos.dat``), the first
    strictly best (configuration, iteration) kept; each outer fold (``conxuntos_kfold.dat``) then
    fits the chosen configuration on its training rows, and RFM reuses the M selected on the
    selection split as it is (no new iterations). The selection rows overlap the test folds: this
    is the paper's leak, which ``paper-clean`` removes. ``balance-scale`` is never row-normalised,
    as in the script.
    """

    name: ClassVar[str] = "paper"
    summary: ClassVar[str] = (
        "the RFM paper's uci121 protocol, exactly: the paper grid tuned once per dataset on its "
        "fixed train/validation split (which overlaps the outer test folds, as in the paper)"
    )
    shares_tuning: ClassVar[bool] = True
    keeps_state: ClassVar[bool] = True

    def check_source(self, source, suite):
        if source != "uci121":  # only that source has selection splits
            raise BadOption(
                f"--protocol {self.name} needs datasets with a fixed selection split; "
                f"'{suite}' has none",
                hint="use it with --suite uci121",
            )

    def check_tasks(self, tasks):
        lacking = [name for name, task in tasks.items() if task.selection is None]
        if lacking:
            raise BadOption(
                f"--protocol {self.name} needs datasets with a fixed selection split; "
                f"'{lacking[0]}' has none",
                hint="use it with --suite uci121",
            )

    def order(self, jobs, tasks):
        # Each (dataset, model) is tuned by its first job; every first fold runs before the rest.
        return sorted(jobs, key=lambda job: job.fold != tasks[job.dataset].splits[0].fold)

    def prepare(self, task, train, test):
        from rfmbench.preprocessing import prepare_fold

        return prepare_fold(task.X, task.y, task.categorical, task.kind, train, test, scale=False)

    def tune(self, spec, task, split, fold, config, seed):
        """Choose on the task's selection split (``fold`` is not used: the choice is shared)."""
        selection = task.selection
        return self._tune_on(spec, task, config, selection.train, selection.test, -1)

    def _tune_on(self, spec, task, config, train, valid, fold_number):
        """The paper grid fitted on ``train`` and scored on ``valid`` (row indices of the task).

        Validation labels unseen in training count as wrong predictions.
        """
        from rfmbench.tuning import tune

        chosen = self.prepare(task, train, valid)
        if task.kind == "classification":
            known = np.isin(chosen.y_test_raw, chosen.classes)
            y_valid = np.where(known, np.searchsorted(chosen.classes, chosen.y_test_raw), -1)
        else:
            y_valid = (chosen.y_test_raw - chosen.y_mean) / chosen.y_scale
        X = np.vstack([chosen.X_train, chosen.X_test])
        y = np.concatenate([chosen.y_train, y_valid])
        n_train = len(chosen.y_train)
        return tune(
            spec,
            task.kind,
            X,
            y,
            inner_folds=config.inner_folds,
            budget=config.budget,
            seed=job_seed(config.seed, task.name, fold_number),
            device=config.device,
            n_jobs=config.threads,
            splits=[(np.arange(n_train), np.arange(n_train, len(y)))],
            paper=True,
            precision=config.precision,
            grid=self.grid(spec, task),
            keep_state=self.keeps_state,
        )

    def grid(self, spec: ModelSpec, task: Task) -> dict | None:
        """The model's paper grid for this task: the script never row-normalises balance-scale."""
        if spec.paper_space is None or task.name != "balance-scale":
            return None
        space = dict(spec.paper_space)
        if "row_norm" in space:
            space["row_norm"] = [False]
        return space


@dataclass(frozen=True)
class PaperCleanProtocol(PaperProtocol):
    """The paper's grids and folds without its leak: nothing ever sees a test row.

    For each outer fold, hyperparameters and the iteration are chosen on the selection split
    restricted to that fold's training rows (its training part fits, its validation part scores),
    then the model is refitted on the fold's training rows, so RFM relearns M there for the chosen
    number of iterations. Features as stored, as under ``paper``.
    """

    name: ClassVar[str] = "paper-clean"
    summary: ClassVar[str] = (
        "the paper's grids and folds, tuned per fold on the selection split restricted to the "
        "fold's training rows; M relearned on them (no test row is ever seen)"
    )
    shares_tuning: ClassVar[bool] = False
    keeps_state: ClassVar[bool] = False

    def order(self, jobs, tasks):
        return jobs

    def tune(self, spec, task, split, fold, config, seed):
        in_fold = np.zeros(len(task.y), dtype=bool)
        in_fold[split.train] = True
        train = task.selection.train[in_fold[task.selection.train]]
        valid = task.selection.test[in_fold[task.selection.test]]
        if len(train) == 0 or len(valid) == 0:
            raise ValueError(
                f"fold {split.fold} of {task.name} leaves no selection "
                f"{'training' if len(train) == 0 else 'validation'} rows to tune on"
            )
        return self._tune_on(spec, task, config, train, valid, split.fold)


PROTOCOLS: dict[str, Protocol] = {
    p.name: p for p in (DefaultProtocol(), PaperProtocol(), PaperCleanProtocol())
}


def get_protocol(name: str | Protocol) -> Protocol:
    """The protocol called ``name`` (a Protocol passes through); BadOption otherwise."""
    if isinstance(name, Protocol):
        return name
    if name not in PROTOCOLS:
        raise BadOption(f"--protocol must be one of {', '.join(PROTOCOLS)}, got '{name}'")
    return PROTOCOLS[name]
