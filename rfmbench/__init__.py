"""rfmbench: Recursive Feature Machines against tuned baselines on real tabular data."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = [
    "CompareResult",
    "RFMClassifier",
    "RFMRegressor",
    "RunConfig",
    "RunResult",
    "__version__",
    "compare",
    "run",
]


def __getattr__(name: str) -> Any:
    # Lazy, so `rfmbench --help` and the CLI's error paths do not pay for importing torch.
    if name in ("RFMClassifier", "RFMRegressor"):
        from rfmbench.models import rfm

        return getattr(rfm, name)
    if name == "RunConfig":
        from rfmbench.config import RunConfig

        return RunConfig
    if name in ("run", "RunResult", "compare", "CompareResult"):
        from rfmbench import benchmark

        return getattr(benchmark, name)
    raise AttributeError(f"module 'rfmbench' has no attribute {name!r}")
