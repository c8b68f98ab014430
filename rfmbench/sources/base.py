"""What every source works with: a dataset reference and the context of loading it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class DatasetRef:
    """One dataset of a suite: its name and the source-specific fields of its suite entry."""

    name: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class LoadContext:
    """What a source needs besides the reference: outer folds, seed, and where data lives."""

    folds: int = 5
    seed: int = 0
    cache_dir: Path | None = None
    data_dir: Path | None = None
    offline: bool = False

    def check(self) -> LoadContext:
        """Raise BadOption for a value no source can use; called before any data is touched."""
        from rfmbench.errors import BadOption, check_seed
        from rfmbench.files import check_dir_option

        if isinstance(self.folds, bool) or not hasattr(self.folds, "__index__") or self.folds < 2:
            raise BadOption(f"--folds must be at least 2, got {self.folds}")
        check_seed(self.seed)
        check_dir_option(self.cache_dir, "--cache-dir")
        check_dir_option(self.data_dir, "--data-dir")
        return self
