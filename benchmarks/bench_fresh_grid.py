"""The batched effective-sample-size grid vs a naive per-cell, per-run loop, same settings, one process.

    python benchmarks/bench_fresh_grid.py --dim 10 --runs 32

Batched: one :func:`madlib.methods.mad_fresh.fresh_limits` call per (n_r, n_s) carries every lambda and run
(R x L runs in the arrays of one GaussianFamily). Naive: for every (n_r, n_s, lambda) and every run, one
``GaussianFamily(runs=1)`` loop through the same engine with the same burn-in and window, and its default
summary (W2 by :func:`madlib.theory.gaussian.w2_gaussian`). Prints both wall times, the ratio
(naive / batched) and the largest |z| between the two estimates of each limit, which should be O(1).
Not a test: timings vary by machine and load.
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np

from madlib.loops import LoopSpec, run_loop
from madlib.models.gaussian import GaussianFamily
from madlib.methods.mad_fresh import fresh_limits, mixing_time
from madlib.machine import machine_info


def batched(args) -> dict:
    out = {}
    for i, n_r in enumerate(args.n_r):
        for j, n_s in enumerate(args.n_s):
            for limit in fresh_limits(n_r, n_s, tuple(args.lam), dim=args.dim, runs=args.runs, seed=1000 * i + j,
                                      burn_mixing=args.burn_mixing, window_mixing=args.window_mixing):
                out[n_r, n_s, limit.lam] = (limit.wd, limit.se, limit.window)
    return out


def naive(args, windows: dict) -> dict:
    out = {}
    for (n_r, n_s, lam), (_, _, (first, last)) in windows.items():
        per_run = []
        for r in range(args.runs):
            family = GaussianFamily(np.zeros(args.dim), np.eye(args.dim), 1)
            spec = LoopSpec("fresh", generations=last, n_synth=n_s, n_real=n_r, n_ini=n_r + n_s, lam=lam)
            res = run_loop(family, spec, seed=10 ** 6 + r, progress=False)
            per_run.append(res.records["w2"][first - 1:, 0].mean())
        per_run = np.asarray(per_run)
        out[n_r, n_s, lam] = (per_run.mean(), per_run.std(ddof=1) / math.sqrt(args.runs), (first, last))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dim", type=int, default=10)
    parser.add_argument("--n-r", type=int, nargs="+", default=[30, 100, 300])
    parser.add_argument("--n-s", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--lam", type=float, nargs="+", default=[1.0, 0.9, 0.8])
    parser.add_argument("--runs", type=int, default=32)
    parser.add_argument("--burn-mixing", type=float, default=5.0)
    parser.add_argument("--window-mixing", type=float, default=5.0)
    args = parser.parse_args()
    generations = sum(math.ceil(args.burn_mixing * mixing_time(r, s, max(args.lam)))
                      + max(20, math.ceil(args.window_mixing * mixing_time(r, s, max(args.lam))))
                      for r in args.n_r for s in args.n_s)
    print(f"machine: {machine_info()}")  # times mean little without the machine
    print(f"grid: d = {args.dim}, n_r in {args.n_r}, n_s in {args.n_s}, lambda in {args.lam}, {args.runs} runs per cell, "
          f"{generations} generations per (n_r, n_s) in all")
    start = time.perf_counter()
    fast = batched(args)
    t_fast = time.perf_counter() - start
    start = time.perf_counter()
    slow = naive(args, fast)
    t_slow = time.perf_counter() - start
    z = max(abs(fast[k][0] - slow[k][0]) / math.hypot(fast[k][1], slow[k][1]) for k in fast)
    print(f"batched: {t_fast:.2f} s   naive per-cell per-run loop: {t_slow:.2f} s   ratio naive / batched: {t_slow / t_fast:.1f}")
    print(f"largest |z| between the two estimates of a limit over {len(fast)} cells: {z:.2f}")


if __name__ == "__main__":
    main()
