"""RunConfig: every setting of a benchmark run, each default written here once.

The CLI's ``rfmbench run`` options map one to one onto its fields (``--jobs`` is ``workers``);
a Python user builds one and calls :func:`rfmbench.run`. Its :meth:`RunConfig.record` is what the
run's metadata stores and what a resumed run must match.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from rfmbench.errors import BadOption, check_seed

DEFAULT_MODELS = ("rfm", "kernel-ridge", "random-forest", "mlp")
PRECISIONS = ("float32", "float64")
EXECUTORS = ("local", "ray")
# Settings that change what a row means: a run may only be resumed with the same values. Threads
# and precision are among them: they change float sums, and with them tuning choices.
RESUME_SETTINGS = (
    "suite",
    "folds",
    "inner_folds",
    "budget",
    "seed",
    "protocol",
    "threads",
    "precision",
)


@dataclass(frozen=True)
class RunConfig:
    """A benchmark run: what to run, how to tune, where it runs and where results go.

    What: ``suite`` and optionally some of its ``datasets`` (or one local file ``data`` with its
    ``target``, ``categorical`` columns and task ``kind``), and ``models``.
    How: ``folds`` outer folds, ``inner_folds`` for tuning, ``budget`` configurations per model,
    ``seed``, the tuning ``protocol`` (``default``, ``paper``), the float ``precision`` of the
    torch models (None: each model's own) and ``threads`` per job (fixed whatever the executor, so
    rows do not depend on it).
    Where: ``device`` (auto, cpu, cuda, cuda:N); ``workers`` jobs at once (0: as many as fit, 1: in
    this process) on the ``executor`` (local processes or a Ray cluster at ``ray_address``), each
    with an optional ``time_limit`` in seconds.
    Results: ``out`` folder, ``run_id`` (default: a timestamp; an existing one is resumed, and its
    failed rows rerun with ``retry_failed``). Data: ``data_dir``, ``cache_dir``, ``offline``.
    """

    suite: str = "embedded"
    datasets: tuple[str, ...] | None = None
    models: tuple[str, ...] = DEFAULT_MODELS
    folds: int = 5
    inner_folds: int = 3
    budget: int = 6
    seed: int = 0
    protocol: str = "default"
    precision: str | None = None
    threads: int = 1
    device: str = "auto"
    workers: int = 0
    executor: str = "local"
    ray_address: str | None = None
    time_limit: float | None = None
    out: Path = Path("results")
    run_id: str | None = None
    retry_failed: bool = False
    data: Path | None = None
    target: str | None = None
    categorical: tuple[str, ...] | None = None
    kind: str | None = None
    data_dir: Path | None = None
    cache_dir: Path | None = None
    offline: bool = False

    def __post_init__(self) -> None:
        # Lists given by a Python user become tuples, so the config stays hashable and frozen.
        for name in ("datasets", "models", "categorical"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, tuple):
                object.__setattr__(self, name, tuple(value))

    def replace(self, **changes: Any) -> RunConfig:
        """A copy with ``changes``; an unknown name is a BadOption, not a TypeError."""
        known = {f.name for f in fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise BadOption(f"RunConfig has no setting '{unknown[0]}'")
        return replace(self, **changes)

    def check(self) -> RunConfig:
        """Raise BadOption for any value no run can use; nothing is read or written before.

        Returns the config with the run id checked and the seed a plain int.
        """
        from rfmbench.files import check_out_dir, check_run_id
        from rfmbench.runner.protocols import get_protocol
        from rfmbench.sources.local import check_file_options

        seed = check_seed(self.seed)
        if self.run_id is not None:
            check_run_id(self.run_id)
        check_out_dir(self.out)
        _at_least("--folds", self.folds, 2)
        _at_least("--inner-folds", self.inner_folds, 2)
        _at_least("--threads", self.threads, 1)
        _at_least("--budget", self.budget, 1)
        get_protocol(self.protocol)
        if self.precision is not None and self.precision not in PRECISIONS:
            raise BadOption(
                f"--precision must be one of {', '.join(PRECISIONS)}, got '{self.precision}'"
            )
        if self.data is None and self.datasets is not None and not self.datasets:
            raise BadOption("--datasets names no dataset", hint="see `rfmbench datasets list`")
        if self.data is not None and self.datasets is not None:
            raise BadOption("--datasets cannot be used with --data (the file is the one dataset)")
        check_file_options(self.data, self.target, list(self.categorical or []) or None, self.kind)
        if not self.models:
            raise BadOption("--models names no model", hint="see `rfmbench models`")
        self._check_execution()
        return replace(self, seed=seed)

    def _check_execution(self) -> None:
        if self.executor not in EXECUTORS:
            raise BadOption(
                f"--executor must be one of {', '.join(EXECUTORS)}, got '{self.executor}'"
            )
        if self.workers < 0:
            raise BadOption(f"--jobs must be at least 1 (or 0: as many as fit), got {self.workers}")
        limit = self.time_limit
        if limit is not None and not (0 < limit < math.inf):  # nan fails too
            raise BadOption(f"--time-limit must be a positive number of seconds, got {limit:g}")
        if self.ray_address and self.executor != "ray":
            raise BadOption("--ray-address needs --executor ray")

    def record(self) -> dict[str, Any]:
        """The settings as plain data: the run's metadata, and the resume check's reference."""
        record = asdict(self)
        for name, value in record.items():
            if isinstance(value, Path):
                record[name] = str(value)
            elif isinstance(value, tuple):
                record[name] = list(value)
        return record


def _at_least(option: str, value: int, low: int) -> None:
    if isinstance(value, bool) or not hasattr(value, "__index__") or value < low:
        raise BadOption(f"{option} must be at least {low}, got {value}")
