"""Execute figure notebooks headless with papermill, profile by profile."""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, TextIO

from madlib.figures.gallery import write_gallery_after_build
from madlib.figures.manifest import RUNNER_OWNED, RUNNER_PARAMETERS, FigureEntry, load_manifest
from madlib.figures.params import ParameterError, notebook_parameters, resolve_parameters
from madlib.figures.record import atomic_write_text, default_out_dir, repo_root, write_claims_summary


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
    return f"{sum(c['held'] for c in claims)}/{len(claims)} claims held"


def _started_a_cell(executed: Path) -> bool:
    """Whether papermill began any cell of the executed notebook (False when it never wrote one)."""
    try:
        cells = json.loads(executed.read_text()).get("cells", [])
    except (OSError, ValueError):
        return False
    return any(c.get("execution_count") is not None or c.get("outputs")
               or (c.get("metadata", {}).get("papermill", {}) or {}).get("start_time") for c in cells
               if c.get("cell_type") == "code")


def _execute_notebook(notebook: str | Path, executed: str | Path, parameters: dict) -> None:
    """papermill runs ``notebook`` headless in its own folder; the one place a figure's notebook is executed."""
    import papermill

    papermill.execute_notebook(
        str(notebook), str(executed), parameters=parameters, kernel_name="python3", cwd=str(Path(notebook).parent),
        progress_bar=False, log_output=False,
        # the kernel's own start-up warnings (e.g. about TCP transport) would clutter batch logs
        extra_arguments=["--IPKernelApp.log_level=ERROR"])


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


def _build_here(plans, out: Path, executed: Path, quiet: bool, stream: TextIO, results: dict[int, BuildResult]) -> None:
    """The figures one after another in this process's kernels, collected into ``results``."""
    for i, (entry, params) in enumerate(plans):
        target = executed / entry.notebook.name
        start = time.perf_counter()
        try:
            _execute_notebook(entry.notebook, target, {**params, "out_dir": str(out), "progress": False})
            ok, message = True, _claims_line(out / f"{entry.name}.json")
        except Exception as err:  # noqa: BLE001 - any failure is reported and the next figure runs
            if getattr(err, "ename", None) == "KeyboardInterrupt":  # Ctrl-C reached the kernel before us
                raise KeyboardInterrupt from None
            ok, message = False, _failure_message(err)
        seconds = time.perf_counter() - start
        results[i] = BuildResult(entry.name, ok, seconds, message, target)
        if not quiet or not ok:
            status = "ok" if ok else "FAILED"
            print(f"[{i + 1}/{len(plans)}] {entry.name} ({params['profile']}) {status} in {seconds:.1f} s: {message}",
                  file=stream, flush=True)


def _interrupted(results: dict[int, BuildResult], plans, out: Path) -> str:
    kept = [r.name for r in results.values() if r.ok]
    rest = [entry.name for entry, _ in plans if entry.name not in kept]
    return (f"interrupted: kept {len(kept)} of {len(plans)} figures in {out}" + (f" ({', '.join(kept)})" if kept else "")
            + (f"; not written: {', '.join(rest)}" if rest else "") + "; CLAIMS.md and the site were not refreshed")


def build(names: Iterable[str] = (), *, profile: str = "default", out_dir: str | Path | None = None,
          executed_dir: str | Path | None = None, overrides: dict[str, Any] | None = None,
          manifest: str | Path | None = None, quiet: bool = False, stream: TextIO = sys.stdout,
          executor: str = "local", executor_options: dict | None = None) -> list[BuildResult]:
    """Run the selected figures (all if none named) at a profile; write CLAIMS.md into out_dir and refresh
    the gallery (:func:`madlib.figures.gallery.write_gallery_after_build`).

    Parameters of every selected figure, the executor's options and both folders (created if missing,
    writable) are checked before any notebook runs (ParameterError).
    A failing notebook is reported with its cell and the others still run.
    ``executor`` "local" runs the notebooks here one after another; "submitit" or "ray" runs each figure as
    its own job (:func:`run_figure_job`, options as in :data:`madlib.sweep.OPTIONS`), checked before any job
    is submitted, and adds the executor and the job's device to each figure's JSON (key "job").
    Ctrl-C raises :class:`BuildInterrupted`, which names the figures that finished.
    """
    import papermill  # noqa: F401 - the notebooks extra: imported here so madlib.figures loads without it

    entries = select(load_manifest(manifest), names)
    plans = [(e, resolve_figure(e, profile, overrides)) for e in entries]
    check_executor_options(executor, executor_options or {})
    if executor != "local":
        from madlib.sweep import SweepError, check_executor

        try:
            executor_options = check_executor(executor, executor_options)
        except (SweepError, ImportError) as err:
            raise ParameterError(str(err)) from None
        if executor == "submitit" and executor_options["folder"] is None:  # keep the jobs' logs after the build
            executor_options["folder"] = str(repo_root() / "build" / "jobs" / profile)
    out = _writable_folder(Path(out_dir).resolve() if out_dir is not None else default_out_dir(), "--out")
    executed = _writable_folder(Path(executed_dir) if executed_dir is not None
                                else repo_root() / "build" / "executed" / profile, "--executed")
    # The kernels inherit this: numpy's batched small-matrix work (the Gaussian loops) runs 5-8x slower
    # with threaded OpenBLAS on a busy 2-core machine. A user's own setting wins.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

    results: dict[int, BuildResult] = {}
    try:
        if executor != "local":
            _build_on(executor, executor_options, plans, out, executed.resolve(), quiet, stream, results)
        else:
            _build_here(plans, out, executed, quiet, stream, results)
    except KeyboardInterrupt:
        raise BuildInterrupted(_interrupted(results, plans, out)) from None
    write_claims_summary(out)
    write_gallery_after_build(out, manifest)
    return [results[i] for i in range(len(plans))]
