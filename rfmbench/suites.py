"""Suite files: ``datasets/suites/*.toml`` -> Suite (a source and a list of dataset references)."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from rfmbench.errors import RfmbenchError, unknown
from rfmbench.files import write_atomic
from rfmbench.sources.base import DatasetRef

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

SUITES_ENV = "RFMBENCH_SUITES_DIR"
LOCK_SUFFIX = ".lock.toml"


@dataclass(frozen=True)
class Suite:
    """A named list of datasets from one source, as written in a suite file."""

    name: str
    source: str
    description: str
    datasets: tuple[DatasetRef, ...]
    path: Path

    def select(self, names: list[str] | None) -> tuple[DatasetRef, ...]:
        """The references named in ``names`` (all when None), in the order given."""
        if not names:
            return self.datasets
        by_name = {ref.name: ref for ref in self.datasets}
        missing = [name for name in names if name not in by_name]
        if missing:
            raise unknown(f"dataset in suite '{self.name}'", missing[0], list(by_name))
        return tuple(by_name[name] for name in names)


def suite_dirs() -> list[Path]:
    """Where suite files are looked up: $RFMBENCH_SUITES_DIR, the repo's datasets/suites, the wheel's copy."""
    package = Path(__file__).resolve().parent
    candidates = [package.parent / "datasets" / "suites", package / "_suites"]
    if os.environ.get(SUITES_ENV):
        candidates.insert(0, Path(os.environ[SUITES_ENV]))
    return [path for path in candidates if path.is_dir()]


def read_suite(path: Path) -> Suite:
    """Parse one suite file."""
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise RfmbenchError(f"cannot read suite file {path}: {exc}") from None
    entries = data.get("datasets") or read_lock(lock_path(path))
    try:
        refs = tuple(
            DatasetRef(name=entry["name"], params={k: v for k, v in entry.items() if k != "name"})
            for entry in entries
        )
    except (KeyError, TypeError, AttributeError):  # an entry without a name, or not a table
        raise RfmbenchError(
            f"cannot read suite file {path}: every [[datasets]] entry needs a name"
        ) from None
    return Suite(
        name=data.get("name", path.stem),
        source=data.get("source", path.stem),
        description=data.get("description", ""),
        datasets=refs,
        path=path,
    )


def all_suites() -> dict[str, Suite]:
    """Every suite found, by name; an earlier directory wins over a later one."""
    suites: dict[str, Suite] = {}
    for directory in reversed(suite_dirs()):
        for path in sorted(directory.glob("*.toml")):
            if path.name.endswith(LOCK_SUFFIX):
                continue
            suite = read_suite(path)
            suites[suite.name] = suite
    return suites


def get_suite(name: str) -> Suite:
    """The suite called ``name``; raise UnknownName listing the suites otherwise."""
    suites = all_suites()
    if name not in suites:
        raise unknown("suite", name, list(suites))
    return suites[name]


def suite_settings(suite: Suite) -> dict:
    """The suite file's top-level fields (e.g. ``openml_suite``, ``max_rows``), datasets excluded."""
    try:
        data = tomllib.loads(suite.path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise RfmbenchError(f"cannot read suite file {suite.path}: {exc}") from None
    return {k: v for k, v in data.items() if k != "datasets"}


def lock_path(suite_path: Path) -> Path:
    """The lock file beside a suite file: ``NAME.toml`` -> ``NAME.lock.toml``."""
    return suite_path.with_name(suite_path.stem + LOCK_SUFFIX)


def read_lock(path: Path) -> list[dict]:
    """The ``[[datasets]]`` entries a lock file pins (empty when there is no lock file)."""
    if not path.is_file():
        return []
    try:
        return list(tomllib.loads(path.read_text()).get("datasets", []))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise RfmbenchError(f"cannot read lock file {path}: {exc}") from None


def write_lock(path: Path, header: dict, entries: list[dict], comment: str = "") -> None:
    """Write a lock file (top-level ``header`` fields, then one ``[[datasets]]`` per entry).

    Written to a temporary file and moved into place, so a reader never sees half a lock.
    """
    lines = [f"# {line}" for line in comment.splitlines()]
    lines += [f"{key} = {_toml_value(value)}" for key, value in header.items() if value is not None]
    for entry in entries:
        lines += ["", "[[datasets]]"]
        lines += [f"{k} = {_toml_value(v)}" for k, v in entry.items() if v is not None]
    write_atomic(path, "\n".join(lines) + "\n")


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(str(value), ensure_ascii=False)  # a JSON string is a valid TOML basic string
