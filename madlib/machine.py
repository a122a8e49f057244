"""The machine a number was measured on: CPU model, cores, threads, GPU, and a matmul probe of its speed.

Two 2-core machines can differ by 3.6x in training throughput (a 2017 AMD EPYC against the machine the
README's times came from), so every figure JSON and benchmark records :func:`machine_info`, and a build's
estimate scales recorded costs by the ratio of :func:`matmul_gflops` probes.
"""

from __future__ import annotations

import functools
import os
import platform
import time
from contextlib import contextmanager

__all__ = ["LANES_ENV", "ONE_THREAD", "environment", "cpu_model", "usable_cores", "build_lanes", "matmul_gflops",
           "machine_info"]

# The environment of a one-thread lane: torch / OpenMP, MKL and numpy's OpenBLAS each on one thread.
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}

# Set by ``python -m madlib.figures build`` for every notebook kernel it starts: how many figures it runs at once.
LANES_ENV = "MADLIB_BUILD_LANES"


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, else :func:`platform.processor`)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith(("model name", "hardware")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def usable_cores() -> int:
    """Cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def build_lanes() -> int | None:
    """How many figures the build that started this process runs at once (its lanes, from :data:`LANES_ENV`);
    None outside a build."""
    try:
        lanes = int(os.environ.get(LANES_ENV, ""))
    except ValueError:
        return None
    return lanes if lanes >= 1 else None


@functools.lru_cache(maxsize=None)
def matmul_gflops(size: int = 1024, repeats: int = 5, threads: int = 1) -> float:
    """Best-of-``repeats`` float32 GFLOP/s of one ``size`` x ``size`` matmul on the CPU at ``threads`` threads
    (2 size^3 flops each); about 0.1 s. Measured once per process and argument set."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        g = torch.Generator().manual_seed(0)
        a, b = torch.randn(size, size, generator=g), torch.randn(size, size, generator=g)
        a @ b  # warm-up: the first call allocates
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            a @ b
            best = min(best, time.perf_counter() - start)
    finally:
        torch.set_num_threads(before)
    return 2 * size**3 / best / 1e9


def machine_info(*, probe: bool = True) -> dict:
    """CPU model, usable cores, the build's lanes (figures run at once; None outside a build), torch threads, GPU
    name (or None), and with ``probe`` the one-thread 1024-matmul GFLOP/s: what a figure JSON or benchmark records
    beside its times."""
    info = {"cpu": cpu_model(), "machine": platform.machine(), "cores": usable_cores(), "lanes": build_lanes(),
            "torch_threads": None, "gpu": None}
    try:
        import torch
    except ImportError:  # the numpy-only parts of madlib
        return info
    info["torch_threads"] = torch.get_num_threads()
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    if probe:
        info["matmul_gflops_1thread"] = round(matmul_gflops(), 1)
    return info


@contextmanager
def environment(values: dict[str, str]):
    """``os.environ`` updated with ``values`` inside the block: every process started there (a build's notebook
    kernels, a sweep's lanes) inherits them, and the thread pools they start read them."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
