"""Execute figure notebooks headless with papermill, profile by profile."""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, TextIO

from madlib.figures.gallery import write_gallery_after_build
from madlib.figures.manifest import RUNNER_PARAMETERS, FigureEntry, load_manifest
from madlib.figures.params import ParameterError, notebook_parameters, resolve_parameters
from madlib.figures.record import atomic_write_text, default_out_dir, repo_root, write_claims_summary


@dataclass
class BuildResult:
    name: str
    ok: bool
    seconds: float
    message: str
    executed: Path


def resolve_figure(entry: FigureEntry, profile: str, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The checked parameters a build passes to the notebook (manifest profile, then overrides)."""
    specs = notebook_parameters(entry.notebook)
    missing = [p for p in RUNNER_PARAMETERS if p not in specs]
    if missing:
        raise ParameterError(f"{entry.name}: the parameters cell must declare {missing}")
    if profile not in entry.profiles:
        raise ParameterError(f"profile must be one of {list(entry.profiles)}; got {profile!r}")
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


def run_figure_job(notebook: str, executed: str, parameters: dict, json_path: str, attempts: int = 3) -> dict:
    """One figure as one job (``build --executor submitit|ray``): papermill runs the notebook headless.

    A kernel that fails before its first cell ran (two kernels started at the same moment can collide on
    a ZMQ port, nteract/papermill#511) is started again, up to ``attempts`` times; a failure inside a cell
    is reported at once. Returns ``{"ok", "message", "seconds", "attempts"}``."""
    import papermill

    # The kernels inherit this (as in the local build): a user's own setting wins.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    start = time.perf_counter()
    for attempt in range(1, attempts + 1):
        try:
            papermill.execute_notebook(
                notebook, executed, parameters=parameters, kernel_name="python3", cwd=str(Path(notebook).parent),
                progress_bar=False, log_output=False, extra_arguments=["--IPKernelApp.log_level=ERROR"])
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
              stream: TextIO) -> list[BuildResult]:
    """Every figure as its own job on ``executor`` (:func:`madlib.sweep.sweep`), collected as the local
    build collects them; a job that the engine lost is a failed figure, the others still count."""
    from madlib.sweep import sweep

    cells = [dict(notebook=str(entry.notebook), executed=str(executed / entry.notebook.name),
                  parameters={**params, "out_dir": str(out), "progress": False},
                  json_path=str(out / f"{entry.name}.json")) for entry, params in plans]
    results: dict[int, BuildResult] = {}

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
    return [results[i] for i in range(len(plans))]


def build(names: Iterable[str] = (), *, profile: str = "default", out_dir: str | Path | None = None,
          executed_dir: str | Path | None = None, overrides: dict[str, Any] | None = None,
          manifest: str | Path | None = None, quiet: bool = False, stream: TextIO = sys.stdout,
          executor: str = "local", executor_options: dict | None = None) -> list[BuildResult]:
    """Run the selected figures (all if none named) at a profile; write CLAIMS.md into out_dir and refresh
    the gallery (:func:`madlib.figures.gallery.write_gallery_after_build`).

    Parameters of every selected figure are checked before any notebook runs (ParameterError).
    A failing notebook is reported with its cell and the others still run.
    ``executor`` "local" runs the notebooks here one after another; "submitit" or "ray" runs each figure as
    its own job (:func:`run_figure_job`, options as in :data:`madlib.sweep.OPTIONS`), checked before any job
    is submitted, and adds the executor and the job's device to each figure's JSON (key "job").
    """
    import papermill  # the notebooks extra; imported here so madlib.figures loads without it

    entries = select(load_manifest(manifest), names)
    plans = [(e, resolve_figure(e, profile, overrides)) for e in entries]
    if executor != "local":
        from madlib.sweep import SweepError, check_executor

        try:
            executor_options = check_executor(executor, executor_options)
        except (SweepError, ImportError) as err:
            raise ParameterError(str(err)) from None
        if executor == "submitit" and executor_options["folder"] is None:  # keep the jobs' logs after the build
            executor_options["folder"] = str(repo_root() / "build" / "jobs" / profile)
    out = Path(out_dir).resolve() if out_dir is not None else default_out_dir()
    executed = Path(executed_dir) if executed_dir is not None else repo_root() / "build" / "executed" / profile
    executed.mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    # The kernels inherit this: numpy's batched small-matrix work (the Gaussian loops) runs 5-8x slower
    # with threaded OpenBLAS on a busy 2-core machine. A user's own setting wins.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

    if executor != "local":
        results = _build_on(executor, executor_options, plans, out, executed.resolve(), quiet, stream)
        write_claims_summary(out)
        write_gallery_after_build(out, manifest)
        return results
    results = []
    for i, (entry, params) in enumerate(plans, 1):
        target = executed / entry.notebook.name
        start = time.perf_counter()
        try:
            papermill.execute_notebook(
                str(entry.notebook), str(target), parameters={**params, "out_dir": str(out), "progress": False},
                kernel_name="python3", cwd=str(entry.notebook.parent), progress_bar=False, log_output=False,
                # the kernel's own start-up warnings (e.g. about TCP transport) would clutter batch logs
                extra_arguments=["--IPKernelApp.log_level=ERROR"])
            ok, message = True, _claims_line(out / f"{entry.name}.json")
        except Exception as err:  # noqa: BLE001 - any failure is reported and the next figure runs
            ok, message = False, _failure_message(err)
        seconds = time.perf_counter() - start
        results.append(BuildResult(entry.name, ok, seconds, message, target))
        if not quiet or not ok:
            status = "ok" if ok else "FAILED"
            print(f"[{i}/{len(plans)}] {entry.name} ({params['profile']}) {status} in {seconds:.1f} s: {message}",
                  file=stream, flush=True)
    write_claims_summary(out)
    write_gallery_after_build(out, manifest)
    return results
