"""AGOP time of both closed forms (``per-output`` and ``gram``) against their matrix products.

Usage:  .venv/bin/python benchmarks/agop.py [--dtype float32] [--repeats 3]

For each (n, d, outputs): the Gaussian-kernel AGOP over all n rows with the kernel rows kept from
the solve (as RFM's fit does), in each form, and as a floor the time of the one matrix product
that dominates that form (per-output: c products (n x n)(n x d); gram: (n x n)^T (n x n)). Median
of ``--repeats``. ``auto`` is what `rfmbench.models.agop.agop` picks. Sizes: the grokking task
(1,860 pairs, 122 one-hot inputs, 61 classes), letter-sized data (20,000 x 16, 26 classes: the
gram form there needs two more n x n matrices, 3.2 GB, and n^3 = 8e12 multiply-adds, about 100 s,
so it is timed on 5,000 rows, and at 20,000 only with ``--letter-gram``), and few outputs. The
load average is printed with the timings: on a shared machine they are only as good as it is quiet.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import time

import torch

from rfmbench.models.agop import agop
from rfmbench.models.kernels import GaussianKernel

CASES = [
    (1860, 122, 61),
    (5000, 16, 26),
    (20000, 16, 26),
    (4000, 16, 1),
    (2000, 50, 10),
    (2000, 50, 1),
]
GRAM_ROWS = 5000  # above: the gram form only with --letter-gram


def timed(function, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def chosen_form(X, coef, kwargs) -> str:
    """The form `agop` picks by itself (it says so in its debug log)."""
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = logging.getLogger("rfmbench.models.agop")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        agop(GaussianKernel(2.5), X, coef, **kwargs)
    finally:
        logger.removeHandler(handler)
    return "gram" if any("gram form" in r.getMessage() for r in records) else "per-output"


def measure(n: int, d: int, c: int, dtype: torch.dtype, repeats: int, gen, gram_too: bool) -> str:
    X = torch.randn(n, d, generator=gen, dtype=dtype)
    coef = torch.randn(n, c, generator=gen, dtype=dtype)
    kernel = GaussianKernel(2.5)
    K = kernel.matrix(X, X)
    kwargs = dict(K_rows=K, block_rows=1024)
    per_output = timed(lambda: agop(kernel, X, coef, form="per-output", **kwargs), repeats)
    products = timed(lambda: [K @ (coef[:, i : i + 1] * X) for i in range(c)], repeats)
    if gram_too or n <= GRAM_ROWS:
        gram = timed(lambda: agop(kernel, X, coef, form="gram", **kwargs), repeats)
        square = timed(lambda: K.mT @ K, repeats)
        gram_text = f"{gram:>7.3f}s {square:>7.3f}s | {per_output / gram:>5.1f}"
    else:
        gram_text = f"{'-':>8} {'-':>8} | {'-':>5}"
    return (
        f"{n:>6} {d:>4} {c:>3} | {per_output:>9.3f}s {products:>8.3f}s | {gram_text} "
        f"{chosen_form(X, coef, kwargs)} | load {_load()}"
    )


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--letter-gram", action="store_true", help="time gram at 20,000 rows")
    parser.add_argument("--max-rows", type=int, default=None, help="skip larger cases")
    args = parser.parse_args(argv)
    dtype = getattr(torch, args.dtype)
    gen = torch.Generator().manual_seed(0)
    print(f"threads {torch.get_num_threads()}, {args.dtype}, median of {args.repeats}")
    print(f"{'n':>6} {'d':>4} {'c':>3} | {'per-output':>10} {'its GEMMs':>9} | "
          f"{'gram':>8} {'its GEMM':>8} | {'ratio':>5} auto | load average")  # fmt: skip
    for n, d, c in CASES:
        if args.max_rows is None or n <= args.max_rows:
            print(measure(n, d, c, dtype, args.repeats, gen, args.letter_gram), flush=True)


if __name__ == "__main__":
    main()
