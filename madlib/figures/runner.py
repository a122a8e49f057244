"""Execute figure notebooks headless with papermill, profile by profile."""

from __future__ import annotations

import functools
import json
import os
import queue
import signal
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, TextIO

from madlib.figures.gallery import write_gallery_after_build
from madlib.figures.manifest import RUNNER_OWNED, RUNNER_PARAMETERS, FigureEntry, load_manifest
from madlib.figures.params import ParameterError, notebook_parameters, resolve_parameters
from madlib.figures.record import atomic_write_text, default_out_dir, level_counts, repo_root, write_claims_summary
from madlib.machine import LANES_ENV, environment, matmul_gflops, usable_cores


@dataclass
class BuildResult:
    name: str
    ok: bool
    seconds: float
    message: str
    executed: Path


class BuildInterrupted(KeyboardInterrupt):
    """Ctrl-C during :func:`build`; its text says which figures finished (and are kept) and which not. Every
    write is atomic, so the figure that was stopped left nothing half-written."""


def resolve_figure(entry: FigureEntry, profile: str, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The checked parameters a build passes to the notebook (manifest profile, then overrides)."""
    specs = notebook_parameters(entry.notebook)
    missing = [p for p in RUNNER_PARAMETERS if p not in specs]
    if missing:
        raise ParameterError(f"{entry.name}: the parameters cell must declare {missing}")
    if profile not in entry.profiles:
        raise ParameterError(f"profile must be one of {list(entry.profiles)}; got {profile!r}")
    # The runner sets these after the overrides: -p out_dir=... was checked, then silently replaced.
    owned = [n for n in overrides or {} if n in RUNNER_OWNED]
    if owned:
        raise ParameterError("; ".join(f"parameter {n} is set by the runner: use {RUNNER_OWNED[n]}, not -p {n}=..."
                                       for n in owned))
    params = resolve_parameters(specs, {**entry.profiles[profile], **(overrides or {})}, entry.name)
    # notebooks run in notebooks/: a relative folder (cache_dir=build/x) means one relative to where build was called
    params |= {k: str(Path(v).resolve()) for k, v in params.items() if k.endswith("_dir") and isinstance(v, str)}
    params["profile"] = profile if not overrides else "custom"
    return params


def select(entries: dict[str, FigureEntry], names: Iterable[str]) -> list[FigureEntry]:
    names = list(names)
    unknown = [n for n in names if n not in entries]
    if unknown:
        raise ParameterError(f"unknown figure(s) {unknown}; known: {', '.join(entries)}")
    return [entries[n] for n in names] if names else list(entries.values())


def _failure_message(err: Exception) -> str:
    index = getattr(err, "cell_index", None)
    if index is None:
        return f"{type(err).__name__}: {err}".strip()
    source = (getattr(err, "source", "") or "").strip().splitlines()
    first = source[0] if source else ""
    # the index counts papermill's injected-parameters cell: it is the executed notebook's
    return f"cell {index} of the executed notebook, starting {first[:60]!r}, raised {err.ename}: {err.evalue}"


def _claims_line(json_path: Path) -> str:
    if not json_path.exists():
        return "no JSON written"
    claims = json.loads(json_path.read_text()).get("claims", [])
    return f"claims {level_counts(claims)}"


def _started_a_cell(executed: Path) -> bool:
    """Whether papermill began any cell of the executed notebook (False when it never wrote one)."""
    try:
        cells = json.loads(executed.read_text()).get("cells", [])
    except (OSError, ValueError):
        return False
    return any(c.get("execution_count") is not None or c.get("outputs")
               or (c.get("metadata", {}).get("papermill", {}) or {}).get("start_time") for c in cells
               if c.get("cell_type") == "code")


# The kernels of a local build that are running now (kernel manager -> (the thread that runs papermill, the
# kernel's pid)), so that Ctrl-C can stop them:
# a kernel runs in its own session, out of reach of the terminal's Ctrl-C, and a lane's papermill runs in a thread,
# out of reach of the KeyboardInterrupt that the main thread gets.
_KERNELS: dict = {}
_KERNELS_LOCK = threading.Lock()
_STOPPING = threading.Event()  # set by _stop_kernels: a kernel that starts from now on is stopped at once


def _kill_kernel(pid: int) -> None:
    """SIGKILL the kernel ``pid`` and its process group (what it started), as papermill's own cleanup after
    Ctrl-C kills a kernel; never this process's own group."""
    try:
        group = os.getpgid(pid)
        if group == pid and group != os.getpgrp():
            os.killpg(group, signal.SIGKILL)
        else:
            os.kill(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _stop_kernels() -> None:
    """Kill every kernel this build started that is still running, and any that starts later (Ctrl-C)."""
    with _KERNELS_LOCK:
        _STOPPING.set()
        pids = [pid for _, pid in _KERNELS.values()]
    for pid in pids:
        _kill_kernel(pid)


@functools.lru_cache(maxsize=None)
def _kernel_manager_class():
    """jupyter_client's AsyncKernelManager (papermill's default) that registers its kernel in ``_KERNELS``."""
    from jupyter_client import AsyncKernelManager

    class RegisteredKernelManager(AsyncKernelManager):
        async def start_kernel(self, **kw):
            await super().start_kernel(**kw)
            pid = getattr(self.provisioner, "pid", None)
            if pid is not None:
                with _KERNELS_LOCK:
                    _KERNELS[self] = (threading.get_ident(), pid)
                    stopping = _STOPPING.is_set()
                if stopping:
                    _kill_kernel(pid)

        async def shutdown_kernel(self, *args, **kw):
            with _KERNELS_LOCK:  # before the process ends: its pid may be reused afterwards
                _KERNELS.pop(self, None)
            await super().shutdown_kernel(*args, **kw)

    return RegisteredKernelManager


def _execute_notebook(notebook: str | Path, executed: str | Path, parameters: dict) -> None:
    """papermill runs ``notebook`` headless in its own folder; the one place a figure's notebook is executed.
    The kernel inherits this process's environment (a local build sets its lanes' thread counts there)."""
    import papermill

    try:
        papermill.execute_notebook(
            str(notebook), str(executed), parameters=parameters, kernel_name="python3",
            cwd=str(Path(notebook).parent), progress_bar=False, log_output=False,
            kernel_manager_class=_kernel_manager_class(),
            # the kernel's own start-up warnings (e.g. about TCP transport) would clutter batch logs
            extra_arguments=["--IPKernelApp.log_level=ERROR"])
    finally:  # papermill has ended this thread's kernel (a dead one is not always shut down through its manager)
        with _KERNELS_LOCK:
            for manager in [m for m, (thread, _) in _KERNELS.items() if thread == threading.get_ident()]:
                del _KERNELS[manager]


def _writable_folder(path: Path, flag: str) -> Path:
    """``path``, created if missing and checked writable before any notebook runs (a read-only --out was
    found only after the compute; a file there gave a FileExistsError traceback)."""
    if path.exists() and not path.is_dir():
        raise ParameterError(f"{flag} {path} is a file; give a folder (it is created if missing)")
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as err:
        raise ParameterError(f"{flag} {path} is not a writable folder ({err.strerror or err}); "
                             "give a folder this user can write") from None
    return path


# The type of each executor option whose default in madlib.sweep.OPTIONS is None, as madlib.sweep uses it; the
# others take their default's type, except that Ray takes fractions of a CPU or GPU per task.
_OPTION_TYPES = {"cluster": str, "folder": str, "partition": str, "account": str, "qos": str, "config": str,
                 "address": str, "mem_gb": float, "cluster_cpus": int, "cluster_gpus": int, "visible_gpus": list,
                 "setup": list, "slurm_additional_parameters": dict, "num_cpus": float, "num_gpus": float}
_TYPE_NAMES = {int: "an int", float: "a number", str: "a string", list: "a list", dict: "a mapping"}


def check_executor_options(executor: str, options: dict) -> None:
    """Refuse ``-o`` options that the executor would ignore or misread, before madlib.sweep sees them: the
    local executor takes none, and a value must have its option's type (or be None, the default)."""
    from madlib.sweep import OPTIONS

    if executor == "local" and options:
        raise ParameterError(f"executor options {sorted(options)} would be ignored by --executor local, which takes "
                             "none; use --executor submitit or ray, or drop -o")
    for name, value in options.items():
        default = OPTIONS.get(executor, {}).get(name)
        kind = _OPTION_TYPES.get(name) or (type(default) if default is not None else None)
        if value is None or kind not in _TYPE_NAMES:  # unknown names are madlib.sweep.check_executor's to name
            continue
        accepted = (int, float) if kind is float else kind
        if isinstance(value, bool) or not isinstance(value, accepted):
            raise ParameterError(f"executor option {name}: expected {_TYPE_NAMES[kind]} (or null for the "
                                 f"default); got {value!r} ({type(value).__name__})")


def run_figure_job(notebook: str, executed: str, parameters: dict, json_path: str, attempts: int = 3) -> dict:
    """One figure as one job (``build --executor submitit|ray``): papermill runs the notebook headless.

    A kernel that fails before its first cell ran (two kernels started at the same moment can collide on
    a ZMQ port, nteract/papermill#511) is started again, up to ``attempts`` times; a failure inside a cell
    is reported at once. Returns ``{"ok", "message", "seconds", "attempts"}``."""
    # The kernels inherit this (as in the local build): a user's own setting wins.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    start = time.perf_counter()
    for attempt in range(1, attempts + 1):
        try:
            _execute_notebook(notebook, executed, parameters)
            ok, message = True, _claims_line(Path(json_path))
            break
        except Exception as err:  # noqa: BLE001 - reported like the local build's failures
            ok, message = False, _failure_message(err)
            if getattr(err, "cell_index", None) is not None or _started_a_cell(Path(executed)):
                break
    return {"ok": ok, "message": message, "seconds": time.perf_counter() - start, "attempts": attempt}


def _record_job(json_path: Path, job: dict) -> None:
    """Add how the figure ran (executor, jobs, device) to its JSON, as the key "job"."""
    if not json_path.exists():
        return
    record = json.loads(json_path.read_text())
    record["job"] = job
    atomic_write_text(json_path, json.dumps(record, indent=1, allow_nan=False) + "\n")


def _build_on(executor: str, options: dict | None, plans, out: Path, executed: Path, quiet: bool,
              stream: TextIO, results: dict[int, BuildResult]) -> None:
    """Every figure as its own job on ``executor`` (:func:`madlib.sweep.sweep`), collected into ``results`` as
    the local build collects them; a job that the engine lost is a failed figure, the others still count."""
    from madlib.sweep import sweep

    cells = [dict(notebook=str(entry.notebook), executed=str(executed / entry.notebook.name),
                  parameters={**params, "out_dir": str(out), "progress": False},
                  json_path=str(out / f"{entry.name}.json")) for entry, params in plans]

    def report(i, job, device):
        entry, params = plans[i]
        results[i] = BuildResult(entry.name, job["ok"], job["seconds"], job["message"], executed / entry.notebook.name)
        _record_job(out / f"{entry.name}.json", {"executor": swept_label[0], "attempts": job["attempts"],
                                                 "seconds": round(job["seconds"], 3), "device": device})
        if not quiet or not job["ok"]:
            retried = f" (kernel started {job['attempts']} times)" if job["attempts"] > 1 else ""
            print(f"[{len(results)}/{len(plans)}] {entry.name} ({params['profile']}) {'ok' if job['ok'] else 'FAILED'} "
                  f"in {job['seconds']:.1f} s on {swept_label[0]}{retried}: {job['message']}", file=stream, flush=True)

    swept_label = [executor]
    if executor == "submitit":
        import submitit

        swept_label[0] = f"submitit/{options.get('cluster') or submitit.AutoExecutor.which()}"
    swept = sweep(run_figure_job, cells, executor=executor, options=options, retries=0, progress=False,
                  allow_failures=True, callback=report)
    for i, error in swept.failed.items():
        entry, params = plans[i]
        results[i] = BuildResult(entry.name, False, 0.0, f"job failed on {swept.executor}: {error}",
                                 executed / entry.notebook.name)
        print(f"[{len(results)}/{len(plans)}] {entry.name} ({params['profile']}) FAILED on {swept.executor}: {error}",
              file=stream, flush=True)


# --- lanes: a local build runs independent figures at once, each in its own kernel ---------------------------

def check_jobs(jobs, cores: int | None = None) -> int:
    """``jobs`` (an int, or its text from the command line) as the number of lanes of a local build."""
    cores = usable_cores() if cores is None else cores
    try:
        lanes = int(jobs) if isinstance(jobs, str) else jobs
    except ValueError:
        lanes = None
    if isinstance(lanes, bool) or not isinstance(lanes, int) or lanes < 1:
        raise ParameterError(f"--jobs takes a whole number of lanes, 1 or more: N runs N figures at once with "
                             f"{cores} // N threads each (default {cores}, the usable cores: one thread per lane; "
                             f"1: one figure at a time on all {cores} cores); got {jobs}")
    return lanes


def lane_threads(jobs: int, cores: int) -> int:
    """Threads of each lane's kernel: the usable cores shared out among ``jobs`` lanes, at least one."""
    return max(1, cores // jobs)


def _positive_int(text) -> int | None:
    try:
        value = int(text)
    except (TypeError, ValueError):
        return None
    return value if value >= 1 else None


def lane_environment(jobs: int, lanes: int, cores: int, environ=None) -> dict[str, str]:
    """What every kernel of a local build finds in its environment.

    OMP_NUM_THREADS and MKL_NUM_THREADS (and so torch's threads) are the lane's share of the cores,
    :func:`lane_threads`; OPENBLAS_NUM_THREADS is 1 (numpy's batched small-matrix work, the Gaussian loops, runs
    5-8x slower with threaded OpenBLAS on a busy 2-core machine). A user's own lower value of any of them wins; a
    higher one is cut to the share, so that a multi-thread kernel never runs beside another lane (MKL follows a
    user's OMP_NUM_THREADS unless MKL_NUM_THREADS is set).
    :data:`madlib.machine.LANES_ENV` is ``lanes``, which each figure JSON records (``machine.lanes``)."""
    environ = os.environ if environ is None else environ
    share = lane_threads(jobs, cores)
    omp = min(_positive_int(environ.get("OMP_NUM_THREADS")) or share, share)
    return {"OMP_NUM_THREADS": str(omp),  # MKL follows OMP_NUM_THREADS unless told otherwise, as MKL itself does
            "MKL_NUM_THREADS": str(min(_positive_int(environ.get("MKL_NUM_THREADS")) or omp, share)),
            "OPENBLAS_NUM_THREADS": str(min(_positive_int(environ.get("OPENBLAS_NUM_THREADS")) or 1, share)),
            LANES_ENV: str(lanes)}


def _share_cores_with_lanes(plans, jobs: int, cores: int) -> None:
    """A figure whose notebook declares ``lanes`` (its independent fits as one-thread worker processes,
    :mod:`madlib.sweep`) gets the cores its build lane owns, ``cores // min(jobs, figures)``, unless the profile or
    ``-p lanes=`` sets it: one figure built alone uses every core, figures built side by side one each."""
    share = max(1, cores // max(1, min(jobs, len(plans))))
    for entry, params in plans:
        if "lanes" not in params and "lanes" in notebook_parameters(entry.notebook):
            params["lanes"] = share


def _check_threads_parameter(plans, jobs: int, cores: int) -> None:
    """Refuse ``-p threads=k`` above the lane's share when figures run beside each other."""
    share = lane_threads(jobs, cores)
    over = [f"{entry.name} (threads={params['threads']})" for entry, params in plans
            if isinstance(params.get("threads"), int) and params["threads"] > share]
    if over and min(jobs, len(plans)) > 1:
        raise ParameterError(f"parameter threads: {', '.join(over)} would run more than {share} thread(s) beside "
                             f"another lane on {cores} cores; use --jobs 1 (one figure at a time, up to {cores} "
                             f"threads) or threads <= {share}")


# --- the estimate printed before a build --------------------------------------------------------------------

@dataclass
class FigureEstimate:
    """One figure's expected wall time here: its recorded ``wall_time_s`` times the ratio of the recording
    machine's matmul probe to this one's (``seconds`` None: no recorded time; ``recorded_gflops`` None: the
    record has no probe and the time is used unscaled)."""
    name: str
    seconds: float | None
    recorded: float | None = None
    recorded_gflops: float | None = None
    source: Path | None = None


def greedy_lanes(seconds: Iterable[float], lanes: int) -> list[float]:
    """Each figure's time, longest first, given to the lane with the least work so far; the work of each lane
    (the wall time of the whole run is the largest)."""
    loads = [0.0] * lanes
    for s in sorted(seconds, reverse=True):
        loads[loads.index(min(loads))] += s
    return loads


@dataclass
class BuildEstimate:
    figures: list[FigureEstimate]
    profile: str
    lanes: int | None  # None: an executor's jobs, which run as the cluster allows
    threads: int | None
    gflops: float | None  # this machine's one-thread 1024-matmul GFLOP/s; None: not probed

    @property
    def work(self) -> float:
        return sum(f.seconds for f in self.figures if f.seconds is not None)

    @property
    def wall(self) -> float | None:
        known = [f.seconds for f in self.figures if f.seconds is not None]
        return max(greedy_lanes(known, self.lanes)) if self.lanes and known else None

    @property
    def unknown(self) -> list[str]:
        return [f.name for f in self.figures if f.seconds is None]

    def lines(self) -> list[str]:
        where = (f"{self.lanes} lane{'s' if self.lanes > 1 else ''} of {self.threads} thread"
                 f"{'s' if self.threads > 1 else ''}" if self.lanes else "the executor's jobs")
        probe = f"; this CPU: {self.gflops:.1f} GFLOP/s one-thread 1024 matmul" if self.gflops else ""
        lines = [f"estimate for {len(self.figures)} figure(s) at profile {self.profile} on {where}{probe}:"]
        width = max(len(f.name) for f in self.figures)
        for f in self.figures:
            if f.seconds is None:
                lines.append(f"  {f.name:<{width}}  unknown      (no recorded time at profile {self.profile})")
                continue
            if f.recorded_gflops and self.gflops:
                how = f"{_duration(f.recorded)} recorded at {f.recorded_gflops:.1f} GFLOP/s"
            elif self.gflops:
                how = f"{_duration(f.recorded)} recorded, unscaled: that JSON has no matmul probe"
            else:
                how = f"{_duration(f.recorded)} recorded, unscaled: this machine was not probed"
            lines.append(f"  {f.name:<{width}}  ~{_duration(f.seconds):<11} ({how})")
        if len(self.unknown) == len(self.figures):
            return lines + ["  total: unknown (no figure has a recorded time)"]
        total = f"  total: ~{_duration(self.work)} of work"
        if self.wall is not None:
            total += f", ~{_duration(self.wall)} over {self.lanes} lane{'s' if self.lanes > 1 else ''}"
        if self.unknown:
            total += f", plus {len(self.unknown)} figure(s) of unknown time"
        return lines + [total]


def _recorded_time(entry: FigureEntry, params: dict, folders) -> tuple[float, float | None, Path] | None:
    """``(wall_time_s, machine.matmul_gflops_1thread or None, path)`` of the first JSON of ``entry`` in
    ``folders`` made at the same profile (at ``custom``, also with the same parameters), or None."""
    mine = {k: v for k, v in params.items() if k not in RUNNER_OWNED and not k.endswith("_dir")}
    for folder in folders:
        path = Path(folder) / f"{entry.name}.json"
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        wall = record.get("wall_time_s") if isinstance(record, dict) else None
        if record.get("profile") != params["profile"] or isinstance(wall, bool) or not isinstance(wall, (int, float)):
            continue
        theirs = record.get("params") or {}
        if params["profile"] == "custom" and any(k not in theirs or theirs[k] != v for k, v in mine.items()):
            continue
        gflops = (record.get("machine") or {}).get("matmul_gflops_1thread")
        ok = isinstance(gflops, (int, float)) and not isinstance(gflops, bool) and gflops > 0
        return float(wall), float(gflops) if ok else None, path
    return None


def estimate_build(plans, folders, *, profile: str, lanes: int | None = None, threads: int | None = None,
                   gflops=None) -> BuildEstimate:
    """The expected wall time of each planned figure and of the whole run (:class:`BuildEstimate`).

    folders: where to look for each figure's JSON, first match wins. gflops: this machine's one-thread matmul
    GFLOP/s (:func:`madlib.machine.matmul_gflops`), or a function returning it, called only when some record
    has a probe to compare with; None leaves the recorded times unscaled."""
    found = [(entry, _recorded_time(entry, params, folders)) for entry, params in plans]
    if callable(gflops):
        gflops = gflops() if any(f is not None and f[1] is not None for _, f in found) else None
    figures = []
    for entry, record in found:
        if record is None:
            figures.append(FigureEstimate(entry.name, None))
            continue
        wall, theirs, path = record
        figures.append(FigureEstimate(entry.name, wall * theirs / gflops if theirs and gflops else wall, wall, theirs,
                                      path))
    return BuildEstimate(figures, profile, lanes, threads, gflops)


def _probe_here() -> float | None:
    try:
        return matmul_gflops()
    except ImportError:  # torch is missing: the times stay unscaled
        return None


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s" if seconds < 10 else f"{seconds:.0f} s"
    if seconds < 3600:
        minutes, rest = divmod(round(seconds), 60)
        return f"{minutes} min {rest:02d} s"
    hours, minutes = divmod(round(seconds / 60), 60)
    return f"{hours} h {minutes:02d} min"


def _clock(seconds: float) -> str:
    hours, rest = divmod(int(seconds), 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


# --- the local executor ---------------------------------------------------------------------------------------

@contextmanager
def _first_ctrl_c_sets(event: threading.Event):
    """In the main thread, the first Ctrl-C sets ``event`` (the build stops its kernels and collects the lanes)
    instead of raising at whatever line the main thread is on; a second one raises KeyboardInterrupt."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        if event.is_set():
            raise KeyboardInterrupt
        event.set()

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous if previous is not None else signal.default_int_handler)


def _run_figure(entry: FigureEntry, params: dict, out: Path, target: Path, stop: threading.Event,
                attempts: int = 3) -> tuple[bool, str, int, bool]:
    """One figure, in a lane's thread: ``(ok, message, attempts, interrupted)``. A kernel that failed before
    its first cell ran (two kernels started at once can collide, nteract/papermill#511) is started again."""
    for attempt in range(1, attempts + 1):
        try:
            _execute_notebook(entry.notebook, target, {**params, "out_dir": str(out), "progress": False})
            return True, _claims_line(out / f"{entry.name}.json"), attempt, False
        except KeyboardInterrupt:
            return False, "interrupted", attempt, True
        except Exception as err:  # noqa: BLE001 - any failure is reported and the other figures run
            if getattr(err, "ename", None) == "KeyboardInterrupt":  # Ctrl-C reached the kernel
                return False, "interrupted", attempt, True
            message = _failure_message(err)
            if stop.is_set() or getattr(err, "cell_index", None) is not None or _started_a_cell(target):
                break
    return False, message, attempt, False


def _build_in_lanes(plans, order: list[int], lanes: int, out: Path, executed: Path, quiet: bool, stream: TextIO,
                    results: dict[int, BuildResult], elapsed) -> None:
    """The figures of ``plans`` in the order ``order``, at most ``lanes`` at once, each in its own kernel started
    from a thread of this process; the main thread starts them, collects them into ``results`` and prints.
    Ctrl-C (or a kernel that reports KeyboardInterrupt) starts no further figure, kills the running kernels and
    raises KeyboardInterrupt once every lane has ended (a second Ctrl-C stops waiting)."""
    done: queue.Queue = queue.Queue()
    stop, ctrl_c = threading.Event(), threading.Event()
    pending, free, running = list(order), list(range(1, lanes + 1)), {}

    def lane(i: int, number: int) -> None:
        entry, params = plans[i]
        start = time.perf_counter()
        outcome = (False, "the lane ended without a result", 1, False)
        try:
            outcome = _run_figure(entry, params, out, executed / entry.notebook.name, stop)
        finally:
            done.put((i, number, time.perf_counter() - start, outcome))

    def stop_all() -> None:
        if not stop.is_set():
            stop.set()
            _stop_kernels()

    def say(text: str) -> None:
        print(f"[{_clock(elapsed())}] {text}", file=stream, flush=True)

    with _first_ctrl_c_sets(ctrl_c):
        try:
            while running or (pending and not stop.is_set()):
                if ctrl_c.is_set():
                    stop_all()
                while pending and free and not stop.is_set():
                    i, number = pending.pop(0), free.pop(0)
                    running[i] = number
                    if not quiet:
                        entry, params = plans[i]
                        say(f"start {entry.name} ({params['profile']}) in lane {number} of {lanes}")
                    threading.Thread(target=lane, args=(i, number), name=f"madlib-build-lane-{number}",
                                     daemon=True).start()
                try:
                    i, number, seconds, (ok, message, attempts, interrupted) = done.get(timeout=0.2)
                except queue.Empty:
                    continue
                free.append(running.pop(i))
                entry, params = plans[i]
                if interrupted or (stop.is_set() and not ok):  # stopped by Ctrl-C: nothing of it is kept
                    if not quiet:
                        say(f"{entry.name} ({params['profile']}) stopped after {seconds:.1f} s")
                    stop_all()
                    continue
                results[i] = BuildResult(entry.name, ok, seconds, message, executed / entry.notebook.name)
                if not quiet or not ok:
                    retried = f" (kernel started {attempts} times)" if attempts > 1 else ""
                    say(f"[{len(results)}/{len(plans)}] {entry.name} ({params['profile']}) "
                        f"{'ok' if ok else 'FAILED'} in {seconds:.1f} s{retried}: {message}")
        except KeyboardInterrupt:  # the second Ctrl-C: stop waiting for the lanes
            stop_all()
            raise
    with _KERNELS_LOCK:  # every lane has ended: kernels started later (by another build) are not this one's to stop
        _STOPPING.clear()
    if stop.is_set() or ctrl_c.is_set():
        raise KeyboardInterrupt


def _interrupted(results: dict[int, BuildResult], plans, out: Path) -> str:
    kept = [r.name for r in results.values() if r.ok]
    rest = [entry.name for entry, _ in plans if entry.name not in kept]
    return (f"interrupted: kept {len(kept)} of {len(plans)} figures in {out}" + (f" ({', '.join(kept)})" if kept else "")
            + (f"; not written: {', '.join(rest)}" if rest else "") + "; CLAIMS.md and the site were not refreshed")


def build(names: Iterable[str] = (), *, profile: str = "default", out_dir: str | Path | None = None,
          executed_dir: str | Path | None = None, overrides: dict[str, Any] | None = None,
          manifest: str | Path | None = None, quiet: bool = False, stream: TextIO = sys.stdout,
          executor: str = "local", executor_options: dict | None = None, jobs: int | None = None) -> list[BuildResult]:
    """Run the selected figures (all if none named) at a profile; write CLAIMS.md into out_dir and refresh
    the gallery (:func:`madlib.figures.gallery.write_gallery_after_build`).

    Parameters of every selected figure, ``jobs``, the executor's options and both folders (created if missing,
    writable) are checked before any notebook runs (ParameterError).
    A failing notebook is reported with its cell and the others still run.
    ``executor`` "local" runs the notebooks here as ``jobs`` lanes (default: the usable cores), each figure in its
    own kernel with the lane's share of the cores as its threads (:func:`lane_environment`): by default one
    thread per lane, so a multi-thread kernel never runs beside another; ``jobs=1`` runs one figure at a time
    on all cores. With lanes, the figures with the longest recorded times start first.
    "submitit" or "ray" runs each figure as its own job (:func:`run_figure_job`, options as in
    :data:`madlib.sweep.OPTIONS`), checked before any job is submitted, and adds the executor and the job's
    device to each figure's JSON (key "job").
    Unless ``quiet``, prints an estimate of the run first (:func:`estimate_build`: each figure's recorded wall
    time in ``out_dir``, else in figures/ or figures/paper/, scaled by the matmul probes), then a line with the
    elapsed time as each figure starts and ends.
    Ctrl-C raises :class:`BuildInterrupted`, which names the figures that finished.
    """
    import papermill  # noqa: F401 - the notebooks extra: imported here so madlib.figures loads without it

    entries = select(load_manifest(manifest), names)
    plans = [(e, resolve_figure(e, profile, overrides)) for e in entries]
    check_executor_options(executor, executor_options or {})
    cores = usable_cores()
    if executor != "local":
        from madlib.sweep import SweepError, check_executor

        if jobs is not None:
            raise ParameterError(f"--jobs sets the lanes of --executor local; {executor} runs each figure as its own "
                                 "job (set its workers with -o, e.g. local_workers=2)")
        try:
            executor_options = check_executor(executor, executor_options)
        except (SweepError, ImportError) as err:
            raise ParameterError(str(err)) from None
        if executor == "submitit" and executor_options["folder"] is None:  # keep the jobs' logs after the build
            executor_options["folder"] = str(repo_root() / "build" / "jobs" / profile)
    else:
        jobs = check_jobs(cores if jobs is None else jobs, cores)
        _check_threads_parameter(plans, jobs, cores)
        _share_cores_with_lanes(plans, jobs, cores)
    out = _writable_folder(Path(out_dir).resolve() if out_dir is not None else default_out_dir(), "--out")
    executed = _writable_folder(Path(executed_dir) if executed_dir is not None
                                else repo_root() / "build" / "executed" / profile, "--executed")
    lanes = min(jobs, len(plans)) if executor == "local" else None
    folders = list(dict.fromkeys([out, default_out_dir(), default_out_dir() / "paper"]))
    estimate = estimate_build(plans, folders, profile=plans[0][1]["profile"] if plans else profile, lanes=lanes,
                              threads=int(lane_environment(jobs, lanes, cores)["OMP_NUM_THREADS"]) if lanes else None,
                              gflops=None if quiet else _probe_here)
    if not quiet and plans:
        print("\n".join(estimate.lines()), file=stream, flush=True)

    results: dict[int, BuildResult] = {}
    start = time.perf_counter()
    try:
        if executor != "local":
            # The jobs inherit this where they run here: numpy's batched small-matrix work (the Gaussian loops)
            # runs 5-8x slower with threaded OpenBLAS on a busy 2-core machine. A user's own setting wins.
            os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
            _build_on(executor, executor_options, plans, out, executed.resolve(), quiet, stream, results)
        else:
            # with lanes, the longest known figures first (as the estimate assumes), then those of unknown time
            times = [f.seconds for f in estimate.figures]
            order = (sorted(range(len(plans)), key=lambda i: (times[i] is None, -(times[i] or 0.0), i)) if lanes > 1
                     else list(range(len(plans))))
            with _KERNELS_LOCK:
                _STOPPING.clear()
            with environment(lane_environment(jobs, lanes, cores)):
                _build_in_lanes(plans, order, lanes, out, executed, quiet, stream, results,
                                lambda: time.perf_counter() - start)
    except KeyboardInterrupt:
        raise BuildInterrupted(_interrupted(results, plans, out)) from None
    if not quiet:
        failed = sum(not r.ok for r in results.values())
        wall = estimate.wall if executor == "local" else None
        guess = (f"; estimated ~{_duration(wall)}" + (" plus figures of unknown time" if estimate.unknown else "")
                 if wall is not None else "")
        on = f"in {lanes} lane{'s' if lanes > 1 else ''}" if lanes else f"on {executor}"
        print(f"[{_clock(time.perf_counter() - start)}] built {len(results)} figure(s), {failed} failed, {on}{guess}",
              file=stream, flush=True)
    write_claims_summary(out)
    write_gallery_after_build(out, manifest)
    return [results[i] for i in range(len(plans))]
