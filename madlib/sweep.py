"""Map a cell function over a grid of cells: in process, on Slurm through submitit, or on Ray.

A *cell* is one independent piece of a figure's grid (one (n_r, n_s) loop of MAD-3/4, one |D_s| loop of
SIMS-1, one figure of a build): a dict of plain keyword arguments (numbers, strings, booleans, None, and
lists or dicts of these) for a plain module-level *cell function*, so that the executors can send it to any
worker that can import madlib (they pickle the function and the cells on their way to a worker; nothing read
from ``result_dir`` is ever unpickled). :func:`sweep` maps the function over the cells on one of three executors:

- ``"local"`` (the default): in this process, one cell after another, exactly as a plain loop would; with option
  ``lanes`` = L > 1, in L worker processes of this machine, each with one torch thread (two one-thread processes
  give about 1.95x one thread's throughput on a 2-core CPU, where one two-thread process gives about 1.5x and
  slows 3-8x beside any other job). A cell's numbers do not depend on the lane it ran in.
- ``"submitit"``: one job per cell through submitit's ``AutoExecutor``: a Slurm job array
  (``map_array``, at most ``array_parallelism`` running at once) where Slurm is installed, or
  ``cluster="local"`` (subprocesses on this machine, at most ``local_workers`` at once, each pinned to its
  own GPUs) or ``cluster="debug"`` (in process, for a debugger).
- ``"ray"``: one Ray task per cell on the cluster at ``address``, or on a local Ray instance started for the
  call and shut down after it; ``num_gpus`` per task makes Ray give each task its own
  ``CUDA_VISIBLE_DEVICES``.

With ``result_dir`` set, each cell's result is written atomically to ``<result_dir>/<key>.npz`` under a
key derived from the function's qualified name, its arguments and madlib's version (:func:`cell_key`), by
the worker that computed it; a later call reads finished cells back and computes only the missing or failed
ones, so a sweep interrupted by a crash, a preemption or Ctrl-C resumes with the same numbers. The file is
madlib's plain-data format (:func:`madlib._io.save_plain`: arrays and tensors in an ``.npz``, the rest as JSON,
a checksum; read with ``numpy.load(allow_pickle=False)``), so a result folder copied from elsewhere cannot run
code: a cell's value must be numbers, strings, None, lists, tuples, dicts, numpy arrays, tensors or madlib's
dataclasses of these (anything else fails the cell with a message naming it). A file that is truncated,
damaged, or holds another function's or cell's result is named in a :class:`madlib._io.StorageWarning` and
its cell is computed again; results of older madlib versions (``<key>.pkl``, pickles) are never read. The
key does not see code changes within one madlib version: clear ``result_dir`` after editing a cell function.

A cell that raises is submitted again up to ``retries`` times (Ray: the engine's own ``retry_exceptions``);
cells that still fail are named in a :class:`SweepError` after every other cell has finished. Every check
(executor name, options, the extra installed, the Ray address reachable, function and cells picklable) runs
before the first job is submitted.

Options come from ``options`` and, below them, from a small YAML file (``options["config"]`` or the
environment variable ``MADLIB_SWEEP_CONFIG``) with one section per executor, e.g.::

    submitit: {partition: gpu, account: my-lab, timeout_min: 120, gpus_per_task: 1, array_parallelism: 32}
    ray: {address: "head-node:6379", num_gpus: 1}

The accepted names and their defaults are :data:`OPTIONS`.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import pickle
import shutil
import socket
import sys
import tempfile
import time
import warnings
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from madlib._io import DamagedFileError, PlainDataError, StorageWarning, load_plain, save_plain

__all__ = ["EXECUTORS", "OPTIONS", "SweepError", "SweepResult", "cell_key", "check_executor", "local_ray", "probe", "source_digest",
           "sweep"]

EXECUTORS = ("local", "submitit", "ray")

# Every option of each executor with its default; a name not listed here is an error that lists these.
OPTIONS: dict[str, dict[str, Any]] = {
    "local": {
        "lanes": 1,  # cells run at once, each in its own one-thread process (1: in this process, in order)
    },
    "submitit": {
        "cluster": None,  # None: Slurm where sbatch exists, else this machine ("local"); or "slurm", "local", "debug"
        "folder": None,  # submitit's job folder (pickles, logs); None: result_dir/_submitit or a temporary folder
        "partition": None,  # Slurm partition
        "account": None,  # Slurm account
        "qos": None,  # Slurm quality of service
        "timeout_min": 60,  # time limit per job, minutes
        "cpus_per_task": 1,
        "gpus_per_task": 0,  # Slurm: --gpus-per-node of the one-task job; local: GPUs pinned per job
        "mem_gb": None,  # memory per job (None: the cluster's default)
        "array_parallelism": 64,  # Slurm: at most this many array tasks run at once (slurm_array_parallelism)
        "local_workers": 1,  # cluster "local": at most this many jobs run at once
        "visible_gpus": None,  # cluster "local": GPU ids handed out to jobs (None: range(local_workers * gpus_per_task))
        "slurm_additional_parameters": None,  # dict of further sbatch options, e.g. {"constraint": "a100"}
        "setup": None,  # list of shell lines run before each job (e.g. "module load cuda")
        "poll_s": 0.2,  # how often job states are read
    },
    "ray": {
        "address": None,  # None: start a local Ray instance for this call; "auto" or "host:port": join a cluster
        "num_cpus": 1,  # CPUs per task
        "num_gpus": 0,  # GPUs per task (Ray sets each task's CUDA_VISIBLE_DEVICES)
        "cluster_cpus": None,  # local instance: CPUs it offers (None: all of this machine's)
        "cluster_gpus": None,  # local instance: GPU slots it declares (None: the GPUs Ray detects)
        "connect_timeout_s": 3.0,  # an address that does not answer within this is an error before submitting
    },
}


class SweepError(RuntimeError):
    """A sweep that cannot start (bad executor, option, function or cell) or whose cells failed."""


@dataclass(frozen=True)
class SweepResult:
    """What :func:`sweep` returns: ``values[i]`` is ``cell_fn(**cells[i])``; ``devices[i]`` where it ran.

    jobs: jobs submitted by this call (resubmissions included); skipped: cells read back from ``result_dir``;
    failed: cell index -> error of cells that failed every try (empty unless ``allow_failures``).
    """

    executor: str
    values: list
    devices: list[dict]
    keys: list[str]
    jobs: int
    skipped: int
    seconds: float
    failed: dict[int, str] = field(default_factory=dict)

    def summary(self) -> dict:
        """Plain JSON-able record for a figure's JSON: executor, counts, seconds and each cell's device."""
        return {"executor": self.executor, "cells": len(self.values), "jobs": self.jobs, "skipped": self.skipped,
                "failed": len(self.failed), "seconds": round(self.seconds, 3), "devices": self.devices}


# --- cells, keys and results on disk ---------------------------------------------------------------------

def _plain(value, where: str):
    """value as JSON-able plain data (tuples become lists, numpy scalars numbers), or a SweepError."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return repr(value)  # json has no inf / nan; the key still tells them apart
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, Mapping):
        bad = [k for k in value if not isinstance(k, str)]
        if bad:
            raise SweepError(f"{where}: dict keys must be strings; got {bad[0]!r}")
        return {k: _plain(v, f"{where}[{k!r}]") for k, v in value.items()}
    item = getattr(value, "item", None)  # numpy scalars
    if callable(item) and getattr(value, "shape", None) == ():
        return _plain(item(), where)
    raise SweepError(f"{where} must be plain data (number, string, bool, None, list or dict of these) so that the "
                     f"cell has a stable key; got {type(value).__name__}")


def _qualname(cell_fn) -> str:
    return f"{getattr(cell_fn, '__module__', '?')}.{getattr(cell_fn, '__qualname__', repr(cell_fn))}"


def cell_key(cell_fn: Callable, cell: Mapping[str, Any]) -> str:
    """The file stem a cell's result is stored under: the function's name and a hash of its qualified
    name, its arguments (as canonical JSON) and madlib's version."""
    from madlib import __version__

    identity = {"function": _qualname(cell_fn), "arguments": _plain(dict(cell), "cell"), "madlib": __version__}
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    return f"{getattr(cell_fn, '__name__', 'cell')}-{digest[:20]}"


def source_digest() -> str:
    """A digest of madlib's own Python sources (16 hex digits). :func:`cell_key` sees madlib's version, not edits
    within it: a cell whose stored result must not outlive a code change carries this digest among its arguments."""
    root = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def _device() -> dict:
    """Where this process runs: host, process, the GPUs it was given and the engine's job id."""
    info = {"host": socket.gethostname(), "pid": os.getpid(),
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES")}
    for name in ("SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID", "SUBMITIT_LOCAL_JOB_ID"):
        if os.environ.get(name):
            info[name.lower()] = os.environ[name]
    ray = sys.modules.get("ray")
    if ray is not None and getattr(ray, "is_initialized", lambda: False)():
        try:
            info["ray_gpu_ids"] = [str(g) for g in ray.get_gpu_ids()]
            info["ray_node_id"] = ray.get_runtime_context().get_node_id()
        except Exception:  # noqa: BLE001 - the driver itself is not a task
            pass
    return info


def _run_cell(cell_fn: Callable, cell: dict, path: str | None) -> tuple[Any, dict, float]:
    """The job every executor runs: the cell, timed, its device recorded, its result stored atomically."""
    start = time.perf_counter()
    value = cell_fn(**cell)
    seconds = time.perf_counter() - start
    device = _device()
    if path is not None:
        try:
            save_plain(path, {"function": _qualname(cell_fn), "cell": cell, "value": value, "device": device,
                              "seconds": seconds})
        except PlainDataError as err:
            raise SweepError(f"the result of {_qualname(cell_fn)} cannot be stored in {Path(path).parent} "
                             f"without pickle: {err}") from None
    return value, device, seconds


_RESULT_SUFFIX = ".npz"
_OLD_SUFFIX = ".pkl"  # earlier versions of madlib wrote pickles; they are never read


def _load(path: Path, cell_fn: Callable, cell: dict):
    """(value, device) of a stored result, or None when absent; a damaged or foreign file is named in a warning."""
    if not path.exists():
        return None
    try:
        stored = load_plain(path)
        if not isinstance(stored, dict) or not {"function", "cell", "value", "device"} <= set(stored):
            raise DamagedFileError(f"{path} is not a sweep result")
        if stored["function"] != _qualname(cell_fn) or not _same_cell(stored["cell"], cell):
            raise DamagedFileError(f"{path} holds the result of {stored['function']}({str(stored['cell'])[:200]}), "
                                   "not of this cell")
    except DamagedFileError as err:
        warnings.warn(f"sweep result not used: {err}; computing the cell again", StorageWarning, stacklevel=3)
        return None
    return stored["value"], stored["device"]


def _same_cell(stored, cell: dict) -> bool:
    try:
        return _plain(stored, "stored cell") == _plain(cell, "cell")
    except SweepError:  # not plain data: not a cell of ours
        return False


# --- checks before anything is submitted -----------------------------------------------------------------

def _config_file(path) -> dict:
    path = path if path is not None else os.environ.get("MADLIB_SWEEP_CONFIG")
    if not path:
        return {}
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except OSError as err:
        raise SweepError(f"sweep config file {path!r} cannot be read: {err}") from None
    if not isinstance(data, dict) or any(k not in EXECUTORS for k in data):
        raise SweepError(f"sweep config file {path!r} must map executor names {list(EXECUTORS)} to options; "
                         f"got {list(data) if isinstance(data, dict) else type(data).__name__}")
    return data


def check_executor(executor: str, options: Mapping[str, Any] | None = None) -> dict:
    """The executor's full options (defaults < config file < ``options``), checked; raises SweepError naming
    an unknown executor or option, and ImportError naming the missing extra."""
    if executor not in EXECUTORS:
        raise SweepError(f"executor must be one of {list(EXECUTORS)}; got {executor!r}")
    options = dict(options or {})
    from_file = _config_file(options.pop("config", None)).get(executor) or {}
    resolved = {**OPTIONS[executor], **from_file, **options}
    unknown = sorted(set(resolved) - set(OPTIONS[executor]))
    if unknown:
        raise SweepError(f"unknown option(s) {unknown} for executor {executor!r}; accepted: "
                         f"{sorted(OPTIONS[executor]) or 'none'}")
    if executor != "local":
        module = {"submitit": "submitit", "ray": "ray"}[executor]
        try:
            __import__(module)
        except ImportError as err:
            raise ImportError(f"executor {executor!r} needs the {module} package, in madlib's 'scale' extra: "
                              f"pip install 'madlib[scale]' ({err})") from None
    if executor == "local" and (isinstance(resolved["lanes"], bool) or not isinstance(resolved["lanes"], int)
                                or resolved["lanes"] < 1):
        raise SweepError(f"local option lanes must be an integer >= 1; got {resolved['lanes']!r}")
    if executor == "submitit" and resolved["cluster"] not in (None, "slurm", "local", "debug"):
        raise SweepError(f"submitit option cluster must be one of [None, 'slurm', 'local', 'debug']; "
                         f"got {resolved['cluster']!r}")
    if executor == "ray" and resolved["address"] not in (None, "auto"):
        _check_reachable(str(resolved["address"]), float(resolved["connect_timeout_s"]))
    return resolved


def _check_reachable(address: str, timeout: float) -> None:
    hostport = address.split("://", 1)[-1].rsplit("/", 1)[0]
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise SweepError(f"ray address must be 'auto', 'host:port' or 'ray://host:port'; got {address!r}")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            pass
    except OSError as err:
        raise SweepError(f"ray address {address!r} is not reachable ({err}); start a cluster there "
                         "(`ray start --head`) or leave address unset for a local Ray instance") from None


def _check_picklable(cell_fn, cells: list[dict]) -> None:
    if not callable(cell_fn):
        raise SweepError(f"cell_fn must be a function; got {type(cell_fn).__name__}")
    try:
        pickle.dumps(cell_fn)
    except Exception as err:  # noqa: BLE001 - pickle raises several types
        raise SweepError(f"cell_fn {_qualname(cell_fn)} does not pickle ({err}); the cell function must be a plain "
                         "module-level function, importable by name in every worker") from None
    for i, cell in enumerate(cells):
        try:
            pickle.dumps(cell)
        except Exception as err:  # noqa: BLE001
            raise SweepError(f"cell {i} does not pickle ({err})") from None


# --- the executors ----------------------------------------------------------------------------------------
# Each runs the pending cells and calls done(i, value, device) or failed(i, message) as each one ends.

def _run_lanes(fn, cells, paths, pending, retries, done, failed, lanes):
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    from madlib.machine import ONE_THREAD, environment

    # spawn: a fresh interpreter per lane (fork would copy this process's torch thread pool and state), started
    # inside ONE_THREAD, so that torch, MKL and OpenBLAS each start one thread: L lanes never oversubscribe L cores
    context = multiprocessing.get_context("spawn")
    with environment(ONE_THREAD), ProcessPoolExecutor(max_workers=min(lanes, len(pending)), mp_context=context) as pool:
        running = {pool.submit(_run_cell, fn, cells[i], paths[i]): (i, 1) for i in pending}
        while running:
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                i, attempt = running.pop(future)
                try:
                    value, device, _ = future.result()
                except Exception as err:  # noqa: BLE001 - a failing cell is reported, the others run
                    if attempt <= retries:
                        running[pool.submit(_run_cell, fn, cells[i], paths[i])] = (i, attempt + 1)
                    else:
                        failed(i, f"{type(err).__name__}: {err}")
                    continue
                done(i, value, device, attempt)


def _run_local(fn, cells, paths, pending, retries, done, failed, options):
    if options["lanes"] > 1 and len(pending) > 1:
        return _run_lanes(fn, cells, paths, pending, retries, done, failed, options["lanes"])
    for i in pending:
        for attempt in range(retries + 1):
            try:
                value, device, _ = _run_cell(fn, cells[i], paths[i])
            except Exception as err:  # noqa: BLE001 - a failing cell is reported, the others run
                if attempt == retries:
                    failed(i, f"{type(err).__name__}: {err}")
                continue
            done(i, value, device, attempt + 1)
            break


def _submitit_executor(options, folder: Path, cluster: str | None):
    import submitit

    executor = submitit.AutoExecutor(folder=folder, cluster=cluster)
    params = {"timeout_min": int(options["timeout_min"]), "cpus_per_task": int(options["cpus_per_task"]),
              "gpus_per_node": int(options["gpus_per_task"]), "tasks_per_node": 1, "nodes": 1, "name": "madlib"}
    if options["mem_gb"] is not None:
        params["mem_gb"] = float(options["mem_gb"])
    if executor.cluster == "slurm":
        params["slurm_array_parallelism"] = int(options["array_parallelism"])
        for name in ("partition", "account", "qos"):
            if options[name] is not None:
                params[f"slurm_{name}"] = options[name]
        if options["slurm_additional_parameters"]:
            params["slurm_additional_parameters"] = dict(options["slurm_additional_parameters"])
        if options["setup"]:
            params["slurm_setup"] = list(options["setup"])
    elif executor.cluster == "local" and options["setup"]:
        params["local_setup"] = list(options["setup"])
    executor.update_parameters(**params)
    return executor


def _job_error(job) -> str | None:
    """None when the job succeeded, else the last line of its error."""
    err = job.exception()
    if err is None:
        return None
    lines = [line for line in str(err).strip().splitlines() if line.strip()]
    return lines[-1] if lines else type(err).__name__


def _run_submitit(fn, cells, paths, pending, retries, done, failed, options):
    cluster = options["cluster"]
    temporary = None
    folder = options["folder"]
    if folder is None:
        first = next((p for p in paths if p is not None), None)
        folder = Path(first).parent / "_submitit" if first else Path(temporary := tempfile.mkdtemp(prefix="madlib-submitit-"))
    folder = Path(folder)
    executor = _submitit_executor(options, folder, cluster)
    kind = executor.cluster
    tries = {i: 0 for i in pending}
    queue = list(pending)
    poll = float(options["poll_s"])
    any_failed = False

    def finish(i, job):
        nonlocal any_failed
        tries[i] += 1
        error = _job_error(job)
        if error is None:
            value, device, _ = job.result()
            done(i, value, device, tries[i])
        elif tries[i] <= retries:
            queue.append(i)
        else:
            any_failed = True
            failed(i, f"{error} (logs: {job.paths.stderr})")

    try:
        while queue:
            batch, queue[:] = list(queue), []
            if kind == "debug":  # in process, one after another; exception() runs it without a debugger
                for i in batch:
                    finish(i, executor.submit(_run_cell, fn, cells[i], paths[i]))
            elif kind == "local":  # submitit starts every local job at once: keep at most local_workers running
                workers = max(1, int(options["local_workers"]))
                per = int(options["gpus_per_task"])
                gpus = list(options["visible_gpus"]) if options["visible_gpus"] is not None else list(range(workers * per))
                if per and len(gpus) < workers * per:
                    raise SweepError(f"submitit local: {workers} workers x {per} GPUs need {workers * per} visible_gpus; "
                                     f"got {gpus}")
                free, running = list(range(workers)), {}
                while batch or running:
                    while batch and free:
                        slot, i = free.pop(0), batch.pop(0)
                        executor._executor.update_parameters(visible_gpus=tuple(gpus[slot * per:(slot + 1) * per]))  # not an AutoExecutor option
                        running[i] = (slot, executor.submit(_run_cell, fn, cells[i], paths[i]))
                    for i, (slot, job) in list(running.items()):
                        if job.done():
                            del running[i]
                            free.append(slot)
                            finish(i, job)
                    time.sleep(poll if running else 0)
            else:  # Slurm: one job array, Slurm caps the running tasks at array_parallelism
                jobs = executor.map_array(_run_cell, [fn] * len(batch), [cells[i] for i in batch],
                                          [paths[i] for i in batch])
                running = dict(zip(batch, jobs))
                checked = time.monotonic()
                while running:
                    # the result file says a job ended; the engine's check (sacct, which needs accounting) only
                    # every 30 s, for jobs that die without writing one
                    force = time.monotonic() - checked > 30
                    checked = time.monotonic() if force else checked
                    for i, job in list(running.items()):
                        if job.paths.result_pickle.exists() or (force and job.done()):
                            del running[i]
                            finish(i, job)
                    time.sleep(poll if running else 0)
    finally:
        if temporary is not None and not any_failed:
            shutil.rmtree(temporary, ignore_errors=True)
    return kind, sum(tries.values())


@contextmanager
def local_ray(num_cpus: int | None = None, num_gpus: int | None = None):
    """A local Ray instance for the block, shared by every :func:`sweep` inside it (Ray starts in seconds,
    not milliseconds). Its session folders go into a temporary folder removed on exit, and no auth token is
    written to ~/.ray (token auth guards a cluster that others can reach; this one listens on this machine).
    ``num_gpus`` may declare GPU slots that do not exist: each task then still gets its own
    CUDA_VISIBLE_DEVICES."""
    import ray

    if ray.is_initialized():
        raise SweepError("a Ray session is already running in this process; use it, or ray.shutdown() first")
    temp_dir = tempfile.mkdtemp(prefix="madlib-ray-")
    saved = os.environ.get("RAY_AUTH_MODE")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    try:
        ray.init(num_cpus=num_cpus, num_gpus=num_gpus, include_dashboard=False, log_to_driver=False,
                 configure_logging=False, _temp_dir=temp_dir)
    except Exception as err:
        shutil.rmtree(temp_dir, ignore_errors=True)
        raise SweepError(f"a local Ray instance did not start: {err}") from None
    finally:
        if saved is None:
            os.environ.pop("RAY_AUTH_MODE", None)
        else:
            os.environ["RAY_AUTH_MODE"] = saved
    try:
        yield ray
    finally:
        ray.shutdown()
        shutil.rmtree(temp_dir, ignore_errors=True)


def _run_ray(fn, cells, paths, pending, retries, done, failed, options):
    import ray

    with ExitStack() as stack:
        if not ray.is_initialized():  # else: the session the caller started (ray.init or local_ray) is used
            if options["address"] is None:
                stack.enter_context(local_ray(options["cluster_cpus"], options["cluster_gpus"]))
            else:
                try:
                    ray.init(address=options["address"], include_dashboard=False, log_to_driver=False,
                             configure_logging=False)
                except Exception as err:
                    raise SweepError(f"ray.init(address={options['address']!r}) failed: {err}") from None
                stack.callback(ray.shutdown)
        remote = ray.remote(num_cpus=options["num_cpus"], num_gpus=options["num_gpus"], max_retries=retries,
                            retry_exceptions=True)(_run_cell)
        fn_ref = ray.put(fn)
        refs = {remote.remote(fn_ref, cells[i], paths[i]): i for i in pending}
        while refs:
            ready, _ = ray.wait(list(refs), num_returns=1)
            for ref in ready:
                i = refs.pop(ref)
                try:
                    value, device, _ = ray.get(ref)
                except Exception as err:  # noqa: BLE001 - RayTaskError wraps the cell's error
                    cause = getattr(err, "cause", None) or err
                    failed(i, f"{type(cause).__name__}: {str(cause).strip().splitlines()[-1] if str(cause).strip() else ''}")
                    continue
                done(i, value, device, None)
    return "ray", len(pending)


# --- the one entry point ----------------------------------------------------------------------------------

def sweep(cell_fn: Callable, cells: Iterable[Mapping[str, Any]], *, executor: str = "local",
          result_dir: str | os.PathLike | None = None, options: Mapping[str, Any] | None = None, retries: int = 1,
          progress: bool = True, desc: str | None = None, allow_failures: bool = False,
          callback: Callable[[int, Any, dict], None] | None = None) -> SweepResult:
    """``[cell_fn(**cell) for cell in cells]`` on an executor (:data:`EXECUTORS`), resumable.

    Args:
        cell_fn: a plain module-level function (it must pickle by name).
        cells: dicts of plain keyword arguments (numbers, strings, bools, None, lists and dicts of these).
        executor: ``"local"`` (in process, in order), ``"submitit"`` or ``"ray"``.
        result_dir: folder of per-cell results (skip-if-done); None: nothing is stored.
        options: the executor's options (:data:`OPTIONS`), over those of the config file.
        retries: how often a failed cell is submitted again.
        progress: a tqdm bar over cells (done / total, elapsed, failures); False: quiet.
        allow_failures: return failed cells in ``SweepResult.failed`` instead of raising SweepError.
        callback: called as ``callback(index, value, device)`` in this process as each cell finishes.
    """
    from tqdm import tqdm

    cells = [dict(c) for c in cells]
    for i, cell in enumerate(cells):
        if any(not isinstance(k, str) for k in cell):
            raise SweepError(f"cell {i}: argument names must be strings")
    if not isinstance(retries, int) or retries < 0:
        raise SweepError(f"retries must be an integer >= 0; got {retries!r}")
    opts = check_executor(executor, options)
    _check_picklable(cell_fn, cells)
    keys = [cell_key(cell_fn, c) for c in cells]
    folder = Path(result_dir) if result_dir is not None else None
    paths = [str(folder / f"{k}{_RESULT_SUFFIX}") if folder is not None else None for k in keys]
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
        old = [k for k in keys
               if (folder / f"{k}{_OLD_SUFFIX}").exists() and not (folder / f"{k}{_RESULT_SUFFIX}").exists()]
        if old:
            warnings.warn(f"{len(old)} result(s) in {folder} are pickles of an older madlib ({old[0]}{_OLD_SUFFIX}"
                          f"{', ...' if len(old) > 1 else ''}), which are not read (unpickling a file can run code); "
                          "their cells are computed again", StorageWarning, stacklevel=2)

    start = time.perf_counter()
    values: list = [None] * len(cells)
    devices: list = [None] * len(cells)
    pending = []
    for i, path in enumerate(paths):
        stored = _load(Path(path), cell_fn, cells[i]) if path is not None else None
        if stored is None:
            pending.append(i)
        else:
            values[i], devices[i] = stored[0], {**stored[1], "stored": True}
    skipped = len(cells) - len(pending)
    errors: dict[int, str] = {}
    bar = tqdm(total=len(cells), initial=skipped, desc=desc or getattr(cell_fn, "__name__", "cells"), unit="cell",
               disable=not progress, dynamic_ncols=True)

    def done(i, value, device, attempts):
        values[i], devices[i] = value, {**device, **({"attempts": attempts} if attempts else {})}
        bar.update(1)
        if callback is not None:
            callback(i, value, devices[i])

    def failed(i, message):
        errors[i] = message
        bar.set_postfix(failures=len(errors))

    runner = {"local": _run_local, "submitit": _run_submitit, "ray": _run_ray}[executor]
    try:
        outcome = runner(cell_fn, cells, paths, pending, retries, done, failed, opts) if pending else None
    finally:
        bar.close()
    jobs = len(pending) if executor == "local" else (outcome[1] if outcome else 0)
    label = executor if executor != "submitit" or outcome is None else f"submitit/{outcome[0]}"
    if errors and not allow_failures:
        where = f"; finished cells are kept in {folder} and a rerun computes only the rest" if folder else ""
        lines = [f"  cell {i} {json.dumps(_plain(cells[i], 'cell'))[:200]}: {errors[i]}" for i in sorted(errors)]
        raise SweepError(f"{len(errors)} of {len(cells)} cells of {_qualname(cell_fn)} failed on {label} "
                         f"after {retries + 1} tr{'y' if retries == 0 else 'ies'}{where}:\n" + "\n".join(lines))
    return SweepResult(executor=label, values=values, devices=devices, keys=keys, jobs=jobs, skipped=skipped,
                       seconds=time.perf_counter() - start, failed=errors)


def probe(index: int, sleep: float = 0.0, fail_marker: str | None = None) -> dict:
    """A cell for checking an executor: waits ``sleep`` seconds and says where it ran. With ``fail_marker`` (a
    file path) the first try creates the file and raises, so a retry is visible; later tries succeed."""
    if fail_marker is not None and not os.path.exists(fail_marker):
        Path(fail_marker).touch()
        raise RuntimeError(f"probe {index}: failing once on purpose (marker {fail_marker})")
    if sleep:
        time.sleep(sleep)
    return {"index": index, "square": index * index, **_device()}
