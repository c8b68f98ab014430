"""Wall time of one benchmark grid under each executor, side by side, with the speed-up.

Runs the real CLI (``python -m rfmbench run``) on the embedded suite with every model, once per
executor: ``local --jobs 1`` (in process), ``local --jobs 2`` and ``ray`` (a local Ray runtime, or
``--ray-address``), into a temporary folder. It also checks that the three runs wrote the same rows
(statuses, hyperparameters, metrics to a relative 1e-9). The wall time includes start-up: process
spawning, and for Ray, starting its runtime.

    python benchmarks/executors.py                    # budget 2, 3 folds: a few minutes
    python benchmarks/executors.py --budget 6 --folds 5 --jobs 4
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from rfmbench.metrics import ALL_METRICS
from rfmbench.results import read_run

ROOT = Path(__file__).resolve().parent.parent
KEYS = ["dataset", "fold", "model"]
COMPARED = ["status", "params", *ALL_METRICS, "inner_cv_score"]


def run(out: Path, run_id: str, args: argparse.Namespace, options: list[str]) -> float:
    command = [
        sys.executable, "-m", "rfmbench", "run", "--suite", args.suite,
        "--models", args.models, "--budget", str(args.budget), "--folds", str(args.folds),
        "--device", "cpu", "--seed", "0", "--out", str(out), "--run-id", run_id, *options,
    ]  # fmt: skip
    start = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if done.returncode != 0:
        sys.exit(f"{' '.join(options)} failed:\n{done.stderr.decode()[-2000:]}")
    return time.perf_counter() - start


def same_rows(a: pd.DataFrame, b: pd.DataFrame) -> bool:
    a, b = (f.sort_values(KEYS).reset_index(drop=True) for f in (a, b))
    try:
        pd.testing.assert_frame_equal(a[KEYS], b[KEYS])
        pd.testing.assert_frame_equal(a[COMPARED], b[COMPARED], check_exact=False, rtol=1e-9)
    except AssertionError:
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--suite", default="embedded")
    parser.add_argument("--models", default="rfm,kernel-ridge,random-forest,mlp")
    parser.add_argument("--budget", type=int, default=2)
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=2, help="Workers of the parallel local run.")
    parser.add_argument("--ray-address", default=None)
    args = parser.parse_args(argv)

    executors = [("local --jobs 1", ["--jobs", "1"]), (f"local --jobs {args.jobs}", ["--jobs", str(args.jobs)])]  # fmt: skip
    if importlib.util.find_spec("ray") is not None:
        ray = ["--executor", "ray"] + (
            ["--ray-address", args.ray_address] if args.ray_address else []
        )
        executors.append(("ray", ray))
    else:
        print("ray is not installed: its run is skipped (pip install 'rfmbench[ray]')")

    print(
        f"suite {args.suite}, models {args.models}, --budget {args.budget} --folds {args.folds} "
        f"(shortened from the defaults 6 and 5), {os.cpu_count()} cores, 1 thread per job"
    )
    times, frames = {}, {}
    with tempfile.TemporaryDirectory(prefix="rfmbench-executors-") as tmp:
        for index, (name, options) in enumerate(executors):
            times[name] = run(Path(tmp), f"r{index}", args, options)
            frames[name] = read_run(Path(tmp) / f"r{index}.csv")
            print(f"  {name}: {times[name]:.1f} s", flush=True)
    base = next(iter(times.values()))
    reference = next(iter(frames.values()))
    print(f"\n{'executor':<18}{'wall s':>9}{'speed-up':>10}{'jobs':>6}  same rows as --jobs 1")
    for name, seconds in times.items():
        rows = frames[name]
        same = "yes" if same_rows(reference, rows) else "NO"
        print(f"{name:<18}{seconds:>9.1f}{base / seconds:>9.2f}x{len(rows):>6}  {same}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
