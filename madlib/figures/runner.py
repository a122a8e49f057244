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
from madlib.figures.record import default_out_dir, repo_root, write_claims_summary


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


def build(names: Iterable[str] = (), *, profile: str = "default", out_dir: str | Path | None = None,
          executed_dir: str | Path | None = None, overrides: dict[str, Any] | None = None,
          manifest: str | Path | None = None, quiet: bool = False, stream: TextIO = sys.stdout) -> list[BuildResult]:
    """Run the selected figures (all if none named) at a profile; write CLAIMS.md into out_dir and refresh
    the gallery (:func:`madlib.figures.gallery.write_gallery_after_build`).

    Parameters of every selected figure are checked before any notebook runs (ParameterError).
    A failing notebook is reported with its cell and the others still run.
    """
    import papermill  # the notebooks extra; imported here so madlib.figures loads without it

    entries = select(load_manifest(manifest), names)
    plans = [(e, resolve_figure(e, profile, overrides)) for e in entries]
    out = Path(out_dir).resolve() if out_dir is not None else default_out_dir()
    executed = Path(executed_dir) if executed_dir is not None else repo_root() / "build" / "executed" / profile
    executed.mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    # The kernels inherit this: numpy's batched small-matrix work (the Gaussian loops) runs 5-8x slower
    # with threaded OpenBLAS on a busy 2-core machine. A user's own setting wins.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

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
