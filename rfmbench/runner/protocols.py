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
    from rfmbench.tasks import Task
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

    def check_source(self, source: str, suite: str) -> None:
        """Raise BadOption before loading when the suite's source cannot serve this protocol."""

    def check_tasks(self, tasks: Mapping[str, Task]) -> None:
        """Raise BadOption when a loaded task cannot be run under this protocol."""

    def order(self, jobs: list[Job], tasks: Mapping[str, Task]) -> list[Job]:
        """The jobs in the order they should run (default: as planned)."""
        return jobs

    def tune(
        self, spec: ModelSpec, task: Task, fold: PreparedFold, config: JobConfig, seed: int
    ) -> TuningResult:
        raise NotImplementedError


@dataclass(frozen=True)
class DefaultProtocol(Protocol):
    name: ClassVar[str] = "default"
    summary: ClassVar[str] = "inner K-fold cross-validation on each outer fold's training rows"

    def tune(self, spec, task, fold, config, seed):
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
    name: ClassVar[str] = "paper"
    summary: ClassVar[str] = (
        "the RFM paper's uci121 protocol: the paper grid, tuned once per dataset on its fixed "
        "train/validation split (which overlaps the outer test folds, as in the paper)"
    )
    shares_tuning: ClassVar[bool] = True

    def check_source(self, source, suite):
        if source != "uci121":  # only that source has selection splits
            raise BadOption(
                f"--protocol paper needs datasets with a fixed selection split; '{suite}' has none",
                hint="use it with --suite uci121",
            )

    def check_tasks(self, tasks):
        lacking = [name for name, task in tasks.items() if task.selection is None]
        if lacking:
            raise BadOption(
                f"--protocol paper needs datasets with a fixed selection split; "
                f"'{lacking[0]}' has none",
                hint="use it with --suite uci121",
            )

    def order(self, jobs, tasks):
        # Each (dataset, model) is tuned by its first job; every first fold runs before the rest.
        return sorted(jobs, key=lambda job: job.fold != tasks[job.dataset].splits[0].fold)

    def tune(self, spec, task, fold, config, seed):
        """Choose on the task's selection split (``fold`` is not used: the choice is shared).

        Preprocessing is fitted on the selection's training rows; the selection's validation
        labels unseen in training count as wrong predictions.
        """
        from rfmbench.preprocessing import prepare_fold
        from rfmbench.tuning import tune

        selection = task.selection
        chosen = prepare_fold(
            task.X, task.y, task.categorical, task.kind, selection.train, selection.test
        )
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
            seed=job_seed(config.seed, task.name, -1),
            device=config.device,
            n_jobs=config.threads,
            splits=[(np.arange(n_train), np.arange(n_train, len(y)))],
            paper=True,
            precision=config.precision,
        )


PROTOCOLS: dict[str, Protocol] = {p.name: p for p in (DefaultProtocol(), PaperProtocol())}


def get_protocol(name: str | Protocol) -> Protocol:
    """The protocol called ``name`` (a Protocol passes through); BadOption otherwise."""
    if isinstance(name, Protocol):
        return name
    if name not in PROTOCOLS:
        raise BadOption(f"--protocol must be one of {', '.join(PROTOCOLS)}, got '{name}'")
    return PROTOCOLS[name]
