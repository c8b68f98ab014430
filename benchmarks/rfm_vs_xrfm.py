"""Our RFM against xrfm.RFM (0.4.5): test error, fit time, peak memory, time in the linear solves.

Usage:  .venv/bin/python benchmarks/rfm_vs_xrfm.py [--quick] [--uci DIR] [--iters 5] [--repeats 3]

Both models get the same rows (train / validation / test), the Laplace (l2) kernel, bandwidth, reg,
number of iterations (early stopping off in xrfm, so both run iterations 0..iters) and the full M;
the AGOP is averaged over all training rows in both when n <= 20000. Each fit runs in a fresh
subprocess, ours and xrfm's alternating, so that the peak resident memory (VmHWM, reset through
/proc/self/clear_refs just before the fit) is that fit's alone. Synthetic data: x ~ N(0, I_d),
y = x1 x2 + sin(2 x3) + 0.1 noise (standardised): test error is the MSE. UCI data (``--uci``): rows
shuffled and split 60 / 20 / 20; test error is the error rate. xrfm is used as its authors intend for
this comparison: a new ``xrfm.RFM`` per fit (a refit warm-starts from the old M), ``reg`` and
``iters`` passed to ``fit``, rows shuffled (it estimates the AGOP on the *first* rows), labels 0..K-1
one-hot, its default solver ``solve`` (LU). Its constructor's ``agop_power`` is ignored; it uses
``sqrtM = (AGOP / max)^0.5``, which is our ``agop_power=1``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

N_TEST = 2000


# -- data -------------------------------------------------------------------------------------------


def synthetic(n: int, d: int, seed: int = 0):
    """Train (n rows), validation (n // 4) and test rows of the synthetic regression task."""
    rng = np.random.default_rng(seed)
    n_val = max(n // 4, 50)
    X = rng.normal(size=(n + n_val + N_TEST, d)).astype(np.float32)
    y = X[:, 0] * X[:, 1] + np.sin(2 * X[:, 2]) + 0.1 * rng.normal(size=len(X))
    y = ((y - y.mean()) / y.std()).astype(np.float32)
    cut = [n, n + n_val]
    return np.split(X, cut), np.split(y, cut)


def read_uci(folder: Path):
    """X, y of one UCI-121 data set, as rfmbench's uci121 source reads it (the rows of ``fich1``)."""
    from rfmbench.sources.base import DatasetRef, LoadContext
    from rfmbench.sources.uci121 import load

    task = load(DatasetRef(folder.name), LoadContext(data_dir=folder.parent))
    _, y = np.unique(np.asarray(task.y), return_inverse=True)
    return task.X.to_numpy(dtype=np.float32), y.astype(np.int64)


def uci_splits(folder: Path, seed: int = 0):
    X, y = read_uci(folder)
    order = np.random.default_rng(seed).permutation(len(X))
    X, y = X[order], y[order]
    cut = [int(0.6 * len(X)), int(0.8 * len(X))]
    return np.split(X, cut), np.split(y, cut)


# -- one fit, in a fresh process --------------------------------------------------------------------


def _status_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().split("\n"):
        if line.startswith(field):
            return int(line.split()[1]) / 1024
    return float("nan")


def worker(job: dict) -> dict:
    """Fit one model on one case; return its test error, fit time, memory and solve time."""
    import torch

    if job["case"].startswith("uci:"):
        (X_tr, X_va, X_te), (y_tr, y_va, y_te) = uci_splits(Path(job["case"][4:]))
        kind = "classification"
    else:
        (X_tr, X_va, X_te), (y_tr, y_va, y_te) = synthetic(job["n"], job["d"])
        kind = "regression"
    p = job["params"]
    solve_seconds = [0.0]
    on_gpu = job["device"].startswith("cuda")

    def sync():
        if on_gpu:
            torch.cuda.synchronize()

    if on_gpu:  # CUDA's lazy start-up (context, cuBLAS and cuSOLVER handles) is no part of a fit
        A = 2 * torch.eye(64, device=job["device"])
        torch.linalg.cholesky(A), torch.linalg.solve(A, A), torch.linalg.eigh(A), torch.cdist(A, A)
        sync()

    if job["model"] == "ours":
        from rfmbench.models.rfm import RFMClassifier, RFMRegressor

        cls = RFMClassifier if kind == "classification" else RFMRegressor
        model = cls(
            kernel="laplace", bandwidth=p["bandwidth"], reg=p["reg"], iters=p["iters"], diag=False,
            dtype="float32", device=job["device"], random_state=0,
        )  # fmt: skip

        def fit():
            model.fit(X_tr, y_tr, X_va, y_va)

        def predict(X):
            return model.predict(X)
    else:
        from xrfm import RFM

        original_solve = torch.linalg.solve

        def timed_solve(*args, **kwargs):  # xrfm's solver="solve" calls torch.linalg.solve
            sync()
            start = time.perf_counter()
            out = original_solve(*args, **kwargs)
            sync()
            solve_seconds[0] += time.perf_counter() - start
            return out

        torch.linalg.solve = timed_solve
        model = RFM(
            kernel="laplace", iters=p["iters"], bandwidth=p["bandwidth"], exponent=1.0, diag=False,
            device=job["device"], verbose=False, solver="solve",
            tuning_metric="accuracy" if kind == "classification" else "mse",
        )  # fmt: skip
        if kind == "classification":
            k = int(max(y_tr.max(), y_va.max(), y_te.max())) + 1
            targets_tr, targets_va = (
                np.eye(k, dtype=np.float32)[y_tr],
                np.eye(k, dtype=np.float32)[y_va],
            )
        else:
            targets_tr, targets_va = y_tr[:, None], y_va[:, None]

        def fit():
            model.fit(
                (X_tr, targets_tr), (X_va, targets_va), iters=p["iters"], reg=p["reg"],
                early_stop_rfm=False,
            )  # fmt: skip

        def predict(X):
            out = model.predict(X)
            return out.argmax(axis=1) if kind == "classification" else out[:, 0]

    if on_gpu:  # peak GPU memory allocated by torch during the fit, the inputs included
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated() / 2**20
    else:  # reset VmHWM: the peak below is the fit's
        Path("/proc/self/clear_refs").write_text("5")
        base = _status_mb("VmRSS")
    start = time.perf_counter()
    fit()
    sync()
    fit_s = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated() / 2**20 if on_gpu else _status_mb("VmHWM")
    pred = predict(X_te)
    if kind == "classification":
        error = float(np.mean(pred != y_te))
    else:
        error = float(np.mean((pred - y_te) ** 2))
    if job["model"] == "ours":
        solve_seconds[0] = model.fit_timings_["solve"]
    return {
        "fit_s": fit_s,
        "error": error,
        "peak_mb": peak,
        "base_mb": base,
        "solve_s": solve_seconds[0],
    }


def run_job(job: dict) -> dict:
    paths = [str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in paths if p))
    proc = subprocess.run(
        [sys.executable, __file__, "--worker", json.dumps(job)],
        capture_output=True,
        text=True,
        env=env,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{job['model']} on {job['case']} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().split("\n")[-1])


# -- the comparison ---------------------------------------------------------------------------------


def compare(cases, params, repeats, device="cpu"):
    header = (
        f"{'case':<28}{'n':>6}{'d':>5} | {'err ours':>9}{'err xrfm':>9} | {'fit s ours':>10}"
        f"{'xrfm':>8}{'ratio':>7} | {'peak MB ours':>12}{'xrfm':>7} | {'chol s':>7}{'LU s':>7}"
    )
    print(header)
    print("-" * len(header))
    rows = []
    for case, n, d in cases:
        runs = {"ours": [], "xrfm": []}
        for rep in range(repeats):
            order = (
                ("ours", "xrfm") if rep % 2 == 0 else ("xrfm", "ours")
            )  # alternate who goes first
            for model in order:
                runs[model].append(
                    run_job(
                        {
                            "model": model,
                            "case": case,
                            "n": n,
                            "d": d,
                            "params": params,
                            "device": device,
                        }
                    )  # fmt: skip
                )
        ratio = statistics.median(
            o["fit_s"] / x["fit_s"] for o, x in zip(runs["ours"], runs["xrfm"], strict=True)
        )

        def med(model, key, runs=runs):
            return statistics.median(r[key] for r in runs[model])

        row = dict(case=case, n=n, d=d, ratio=ratio, **{
            f"{key}_{model}": med(model, key) for model in runs
            for key in ("error", "fit_s", "peak_mb", "solve_s")
        })  # fmt: skip
        rows.append(row)
        print(
            f"{case:<28}{n:>6}{d:>5} | {row['error_ours']:>9.4f}{row['error_xrfm']:>9.4f} | "
            f"{row['fit_s_ours']:>10.2f}{row['fit_s_xrfm']:>8.2f}{ratio:>7.2f} | "
            f"{row['peak_mb_ours']:>12.0f}{row['peak_mb_xrfm']:>7.0f} | "
            f"{row['solve_s_ours']:>7.2f}{row['solve_s_xrfm']:>7.2f}",
            flush=True,
        )
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="n in {1000, 5000}, one repeat")
    parser.add_argument("--uci", type=Path, help="folder of UCI-121 data sets (one subfolder each)")
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=None, help="fits per model and case (3)")
    parser.add_argument("--bandwidth", type=float, default=10.0)
    parser.add_argument("--reg", type=float, default=1e-3)
    parser.add_argument(
        "--sizes", type=str, default=None, help="comma-separated n (1000,5000,20000)"
    )
    parser.add_argument("--dims", type=str, default="10,100", help="comma-separated d")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (both models)")
    parser.add_argument("--worker", type=str, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return
    sizes = args.sizes or ("1000,5000" if args.quick else "1000,5000,20000")
    repeats = args.repeats or (1 if args.quick else 3)
    cases = [
        (f"synthetic d={d}", n, d)
        for n in map(int, sizes.split(","))
        for d in map(int, args.dims.split(","))
    ]
    if args.uci:
        for folder in sorted(p for p in args.uci.iterdir() if p.is_dir()):
            X, _ = read_uci(folder)
            cases.append((f"uci:{folder}", int(0.6 * len(X)), X.shape[1]))
    params = {"bandwidth": args.bandwidth, "reg": args.reg, "iters": args.iters}
    import torch

    where = (
        f"cpu ({torch.get_num_threads()} threads)"
        if args.device == "cpu"
        else f"{args.device} ({torch.cuda.get_device_name(args.device)})"
    )
    print(
        f"RFM (ours) vs xrfm.RFM: laplace kernel, bandwidth {args.bandwidth}, reg {args.reg}, "
        f"iters {args.iters}, full M, float32, {where}, "
        f"{repeats} alternating fit(s) per model, medians; n = training rows "
        f"(+ n/4 validation, {N_TEST} test)"
    )
    rows = compare(cases, params, repeats, args.device)
    print(
        "\nratio: median over repeats of (our fit time / xrfm fit time). peak MB: resident-memory "
        "high-water mark of the fitting process during fit (Python, torch and the data included; "
        "on cuda: torch's peak allocated GPU memory). "
        "chol s: our Cholesky solves; LU s: xrfm's torch.linalg.solve calls (summed over iterations)."
    )
    for row in rows:
        row["case"] = row["case"].rsplit("/", 1)[-1]
    return None


if __name__ == "__main__":
    main()
