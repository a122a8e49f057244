"""Exact-statistics Gaussian loop vs the naive draw-and-fit loop, same engine, same settings, one process.

    python benchmarks/bench_gaussian_loop.py --dim 100 --n-s 1000 --runs 20 --generations 10

Prints the wall time of each and the speed ratio (naive / exact). Not a test: timings vary by machine.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from madlib.loops import LoopSpec, run_loop
from madlib.models.gaussian import GaussianFamily
from madlib.machine import machine_info


def _time(exact: bool, args) -> float:
    family = GaussianFamily(np.zeros(args.dim), np.eye(args.dim), args.runs, exact=exact)
    spec = LoopSpec("fully_synthetic", generations=args.generations, n_synth=args.n_s, lam=args.lam)
    best = float("inf")
    for _ in range(args.repeats):
        start = time.perf_counter()
        run_loop(family, spec, seed=0, progress=False)
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dim", type=int, default=100)
    parser.add_argument("--n-s", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--generations", type=int, default=10)
    parser.add_argument("--lam", type=float, default=1.0)
    parser.add_argument("--repeats", type=int, default=3, help="best of this many timings")
    args = parser.parse_args()
    exact, naive = _time(True, args), _time(False, args)
    work = args.runs * args.generations
    print(f"machine: {machine_info()}")  # times mean little without the machine
    print(f"d={args.dim} n_s={args.n_s} runs={args.runs} generations={args.generations} (best of {args.repeats})")
    print(f"exact statistics: {exact:.3f} s  ({work / exact:,.0f} run-generations/s)")
    print(f"naive draw + fit: {naive:.3f} s  ({work / naive:,.0f} run-generations/s)")
    print(f"speed ratio naive / exact: {naive / exact:.1f}x")


if __name__ == "__main__":
    main()
