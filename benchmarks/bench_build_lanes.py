"""Two figures built at once in two lanes (``build --jobs 2``) vs one after another (``--jobs 1``).

    python benchmarks/bench_build_lanes.py                      # mad_1_gaussian_collapse + mad_5_last_k, smoke
    python benchmarks/bench_build_lanes.py --figures mad_1_gaussian_collapse mad_6_growing --repeats 3

Each build is the command a user types (``python -m madlib.figures build NAMES --profile smoke --jobs N -q``),
run in a fresh process into a temporary folder and timed from outside, so kernel start-up and imports count.
``--jobs 2`` gives each figure's kernel one thread; ``--jobs 1`` runs them one after another and lets each use
every core (the build's rule: a lane's threads are the usable cores // N), and is timed a second time with
OMP_NUM_THREADS=1 (one thread, one after another). The three are alternated ``--repeats`` times and the medians
compared. Prints the machine, the load average before and after (another job on the machine skews every
side), each build's wall time and the ratios to the two lanes. Not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from madlib.machine import machine_info

ROOT = Path(__file__).resolve().parents[1]


VARIANTS = {  # name: (--jobs, extra environment)
    "two lanes (--jobs 2)": (2, {}),
    "one after another (--jobs 1)": (1, {}),
    "one after another, one thread": (1, {"OMP_NUM_THREADS": "1"}),
}


def timed_build(figures: list[str], jobs: int, env: dict, folder: Path) -> tuple[float, list[dict]]:
    """Wall seconds of one build and the ``machine`` record of each figure JSON it wrote."""
    out = folder / f"jobs{jobs}-{time.monotonic_ns()}"
    command = [sys.executable, "-m", "madlib.figures", "build", *figures, "--profile", "smoke", "--out", str(out),
               "--executed", str(out / "executed"), "--jobs", str(jobs), "-q"]
    start = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env={**os.environ, **env})
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"build --jobs {jobs} failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    return seconds, [json.loads((out / f"{name}.json").read_text())["machine"] for name in figures]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--figures", nargs=2, default=["mad_1_gaussian_collapse", "mad_5_last_k"], metavar="NAME",
                        help="two figures of the manifest whose smoke profiles take a similar few seconds")
    parser.add_argument("--repeats", type=int, default=2, help="builds of each kind, alternated (default 2)")
    args = parser.parse_args()

    print(f"machine: {machine_info()}")  # times mean little without the machine
    print(f"load average before: {os.getloadavg()[0]:.2f} (1 min)")
    times: dict[str, list[float]] = {name: [] for name in VARIANTS}
    threads: dict[str, set] = {name: set() for name in VARIANTS}
    with tempfile.TemporaryDirectory(prefix="bench_build_lanes-") as folder:
        for repeat in range(args.repeats):
            for name in (list(VARIANTS) if repeat % 2 == 0 else list(VARIANTS)[::-1]):
                jobs, env = VARIANTS[name]
                seconds, machines = timed_build(args.figures, jobs, env, Path(folder))
                times[name].append(seconds)
                threads[name] |= {(m.get("lanes"), m.get("torch_threads")) for m in machines}
                print(f"  {name}: {seconds:6.1f} s", flush=True)
    print(f"load average after: {os.getloadavg()[0]:.2f} (1 min)")
    print(f"{' + '.join(args.figures)} at smoke, median of {args.repeats}:")
    lanes = statistics.median(times["two lanes (--jobs 2)"])
    for name in VARIANTS:
        median = statistics.median(times[name])
        kernels = ", ".join(f"{n} lane(s) x {t} torch thread(s)" for n, t in sorted(threads[name]))
        print(f"  {name:<31}: {median:6.1f} s  {median / lanes:5.2f}x the two lanes  [{kernels}]")


if __name__ == "__main__":
    main()
