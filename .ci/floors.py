"""Print the lowest allowed version of each direct dependency as a pip requirement (``name==floor``).

The floors are written once, in pyproject.toml; this turns them into pins so that ``make
test-floors`` (run by CI) installs exactly them and runs the fast tests, and a floor that is lower
than what the code needs fails there instead of at a user's. Extras named on the command line are
included (e.g. ``test``). torch is left out: its wheels on the package index are CUDA builds of
several GB, so the check uses the CPU build the Makefile pins (``TORCH``); the torch floor is the
one that is not checked.
"""

from __future__ import annotations

import sys
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

UNCHECKED = {"torch"}


def floor_pins(pyproject: Path, extras: list[str]) -> list[str]:
    """``name==floor`` for each direct dependency (and those of ``extras``) that applies here."""
    project = tomllib.loads(pyproject.read_text())["project"]
    lines = list(project["dependencies"])
    for extra in extras:
        lines += project["optional-dependencies"][extra]
    pins = []
    for line in lines:
        requirement = Requirement(line)
        if requirement.marker and not requirement.marker.evaluate(default_environment()):
            continue
        if requirement.name in UNCHECKED:
            continue
        floors = [s.version for s in requirement.specifier if s.operator in (">=", "==")]
        if not floors:
            raise SystemExit(f"{requirement.name} has no floor (>= or ==) in {pyproject}")
        extra = f"[{','.join(sorted(requirement.extras))}]" if requirement.extras else ""
        pins.append(f"{requirement.name}{extra}=={floors[0]}")
    return pins


if __name__ == "__main__":
    root = Path(__file__).resolve().parent.parent
    print("\n".join(floor_pins(root / "pyproject.toml", sys.argv[1:])))
