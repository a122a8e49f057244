"""madlib.sweep on the real engines (no mocks): in process, submitit (cluster "local", and Slurm when srun
exists), Ray (one local session for the module); the figure-level build through them; bad input refused
before any job is submitted."""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path

import nbformat
import numpy as np
import pytest

from madlib._io import StorageWarning, load_plain
from madlib.figures.params import ParameterError
from madlib.figures.runner import _started_a_cell, build
from madlib.methods.mad_fresh import fresh_limits
from madlib.sweep import SweepError, cell_key, probe, sweep

pytest.importorskip("submitit")
ray = pytest.importorskip("ray")

# Four small (n_r, n_s) cells of MAD-3/4 (each a batched fresh-data loop over two lambdas).
GRID = [dict(n_r=n_r, n_s=n_s, lam=[1.0, 0.8], dim=2, runs=4, seed=10 * n_r + n_s, burn_mixing=2.0,
             window_mixing=2.0, min_window=4) for n_r in (10, 40) for n_s in (10, 40)]


def same_limits(a, b) -> bool:
    """FreshLimit lists equal field by field (mean_path is an array)."""
    return len(a) == len(b) and all(
        all(np.array_equal(getattr(x, f), getattr(y, f)) for f in x.__dataclass_fields__) for x, y in zip(a, b))


@pytest.fixture(scope="module")
def in_process():
    return [fresh_limits(**cell) for cell in GRID]


@pytest.fixture(scope="module")
def ray_session():
    """One local Ray instance for the module (it takes ~10 s to start): 2 CPUs and 2 declared GPU slots."""
    from madlib.sweep import local_ray

    with local_ray(num_cpus=2, num_gpus=2) as session:
        yield session


# --- in process ------------------------------------------------------------------------------------------

def test_local_equals_a_plain_loop_and_a_rerun_skips_every_cell(tmp_path, in_process):
    first = sweep(fresh_limits, GRID, result_dir=tmp_path, progress=False)
    assert all(same_limits(a, b) for a, b in zip(first.values, in_process))
    assert (first.executor, first.jobs, first.skipped) == ("local", 4, 0)
    assert sorted(p.name for p in tmp_path.glob("*.npz")) == sorted(f"{k}.npz" for k in first.keys)
    again = sweep(fresh_limits, GRID, result_dir=tmp_path, progress=False)
    assert (again.jobs, again.skipped) == (0, 4)
    assert all(same_limits(a, b) for a, b in zip(again.values, in_process))
    assert all(d["stored"] for d in again.devices)


def test_key_names_function_arguments_and_version():
    key = cell_key(fresh_limits, GRID[0])
    assert key.startswith("fresh_limits-")
    assert key == cell_key(fresh_limits, dict(reversed(list(GRID[0].items()))))  # argument order does not matter
    assert key != cell_key(fresh_limits, {**GRID[0], "runs": 5})
    assert key != cell_key(probe, GRID[0])
    with pytest.raises(SweepError, match=r"cell\['x'\] must be plain data"):
        cell_key(probe, {"x": object()})


def test_source_digest_sees_an_edit_of_any_madlib_source(tmp_path, monkeypatch):
    import madlib.sweep as sweep_module

    package = tmp_path / "madlib"
    (package / "sub").mkdir(parents=True)
    (package / "sweep.py").write_text("x = 1\n")
    (package / "sub" / "core.py").write_text("y = 2\n")
    monkeypatch.setattr(sweep_module, "__file__", str(package / "sweep.py"))
    before = sweep_module.source_digest()
    assert before == sweep_module.source_digest() and len(before) == 16  # deterministic
    (package / "sub" / "core.py").write_text("y = 3\n")
    edited = sweep_module.source_digest()
    (package / "sub" / "notes.txt").write_text("not code")
    assert edited != before and sweep_module.source_digest() == edited  # .py sources only
    assert cell_key(probe, {"index": 0, "code": before}) != cell_key(probe, {"index": 0, "code": edited})


def test_a_partly_written_result_is_recomputed(tmp_path, in_process):
    first = sweep(fresh_limits, GRID[:2], result_dir=tmp_path, progress=False)
    path = tmp_path / f"{first.keys[1]}.npz"
    path.write_bytes(path.read_bytes()[:50])  # a torn file, as a crash outside the atomic write would leave
    with pytest.warns(StorageWarning, match=f"sweep result not used: {path} cannot be read"):
        again = sweep(fresh_limits, GRID[:2], result_dir=tmp_path, progress=False)
    assert (again.jobs, again.skipped) == (1, 1)
    assert same_limits(again.values[1], in_process[1])
    assert same_limits(load_plain(path)["value"], in_process[1])  # whole again
    assert not list(tmp_path.glob(".*.tmp"))  # no temporary file left behind


def test_failed_cells_are_named_kept_apart_and_rerun_alone(tmp_path):
    cells = [dict(index=0), dict(index=1, fail_marker=str(tmp_path / "marker"))]
    with pytest.raises(SweepError, match=r"(?s)1 of 2 cells of madlib\.sweep\.probe failed.*cell 1.*failing once"):
        sweep(probe, cells, result_dir=tmp_path / "results", retries=0, progress=False)
    assert len(list((tmp_path / "results").glob("*.npz"))) == 1  # the finished cell is kept
    again = sweep(probe, cells, result_dir=tmp_path / "results", retries=0, progress=False)
    assert (again.jobs, again.skipped) == (1, 1) and again.values[1]["square"] == 1


def threads_seen(index: int) -> dict:
    """A cell that reports the thread settings of the process it runs in (module-level: a lane imports it by name)."""
    import torch

    return {"torch": torch.get_num_threads(), **{k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS")}}


def test_local_lanes_equal_a_plain_loop_in_one_thread_processes(tmp_path, in_process, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "2")  # a two-thread parent (a kernel given both cores) starts one-thread lanes
    monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)
    seen = sweep(threads_seen, [dict(index=i) for i in range(2)], options={"lanes": 2}, progress=False).values
    assert seen == [{"torch": 1, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}] * 2
    assert os.environ["OMP_NUM_THREADS"] == "2" and "OPENBLAS_NUM_THREADS" not in os.environ  # the parent's, restored
    lanes = sweep(fresh_limits, GRID, options={"lanes": 2}, result_dir=tmp_path, progress=False)
    assert all(same_limits(a, b) for a, b in zip(lanes.values, in_process))
    assert (lanes.executor, lanes.jobs, lanes.skipped) == ("local", 4, 0)
    where = sweep(probe, [dict(index=i, sleep=0.3) for i in range(4)], options={"lanes": 2}, progress=False)
    pids = {d["pid"] for d in where.devices}
    assert len(pids) == 2 and os.getpid() not in pids  # two worker processes, not this one
    cells = [dict(index=0), dict(index=1, fail_marker=str(tmp_path / "marker"))]
    retried = sweep(probe, cells, options={"lanes": 2}, retries=1, progress=False)
    assert retried.values[1]["square"] == 1 and retried.devices[1]["attempts"] == 2
    for bad in (0, 1.5, True):
        with pytest.raises(SweepError, match=f"local option lanes must be an integer >= 1; got {bad!r}"):
            sweep(probe, cells, options={"lanes": bad}, progress=False)


# --- Ray ---------------------------------------------------------------------------------------------------

def test_ray_each_task_has_its_own_gpu_and_equals_in_process(ray_session, tmp_path, in_process):
    seen = sweep(probe, [dict(index=i, sleep=0.5) for i in range(2)], executor="ray",
                 options={"num_gpus": 1}, progress=False)
    assert sorted(v["cuda_visible_devices"] for v in seen.values) == ["0", "1"]
    assert all(v["ray_gpu_ids"] == [v["cuda_visible_devices"]] for v in seen.values)
    assert all(d["pid"] != __import__("os").getpid() for d in seen.devices)  # run in Ray workers, not here

    first = sweep(fresh_limits, GRID, executor="ray", result_dir=tmp_path, progress=False)
    assert all(same_limits(a, b) for a, b in zip(first.values, in_process))
    again = sweep(fresh_limits, GRID, executor="ray", result_dir=tmp_path, progress=False)
    assert (first.jobs, again.jobs, again.skipped) == (4, 0, 4)


def test_ray_retries_a_task_that_fails_once(ray_session, tmp_path):
    marker = tmp_path / "marker"
    out = sweep(probe, [dict(index=3, fail_marker=str(marker))], executor="ray", retries=1, progress=False)
    assert marker.exists() and out.values[0]["square"] == 9
    with pytest.raises(SweepError, match="failing once"):
        sweep(probe, [dict(index=3, fail_marker=str(tmp_path / "other"))], executor="ray", retries=0, progress=False)


def test_build_through_ray_collects_figures_and_names_failures(ray_session, tmp_path):
    manifest = _tiny_figures(tmp_path)
    log = tmp_path / "log"
    with open(log, "w") as stream:
        results = build(profile="smoke", out_dir=tmp_path / "out", executed_dir=tmp_path / "exec", manifest=manifest,
                        stream=stream, executor="ray")
    assert [(r.name, r.ok) for r in results] == [("bad", False), ("good", True)]
    assert "raised RuntimeError: boom" in results[0].message and "claims 1/1 held" in results[1].message
    record = json.loads((tmp_path / "out" / "good.json").read_text())
    assert record["job"]["executor"] == "ray" and record["job"]["attempts"] == 1
    assert "good" in (tmp_path / "out" / "CLAIMS.md").read_text()
    assert _started_a_cell(tmp_path / "exec" / "good.ipynb") and not _started_a_cell(tmp_path / "none.ipynb")


# --- submitit ----------------------------------------------------------------------------------------------

def test_submitit_local_pins_devices_equals_in_process_and_skips(tmp_path, in_process):
    options = {"cluster": "local", "local_workers": 2, "gpus_per_task": 1, "folder": str(tmp_path / "jobs")}
    first = sweep(fresh_limits, GRID, executor="submitit", options=options, result_dir=tmp_path / "r", progress=False)
    assert first.executor == "submitit/local" and first.jobs == 4
    assert all(same_limits(a, b) for a, b in zip(first.values, in_process))
    assert {d["cuda_visible_devices"] for d in first.devices} == {"0", "1"}  # two slots, one GPU each
    assert len({d["submitit_local_job_id"] for d in first.devices}) == 4
    assert len(list((tmp_path / "jobs").glob("*_result.pkl"))) == 4 and list((tmp_path / "jobs").glob("*.out"))
    again = sweep(fresh_limits, GRID, executor="submitit", options=options, result_dir=tmp_path / "r", progress=False)
    assert (again.jobs, again.skipped) == (0, 4)


def test_submitit_local_retries_a_job_that_fails_once(tmp_path):
    marker = tmp_path / "marker"
    out = sweep(probe, [dict(index=2, fail_marker=str(marker))], executor="submitit", retries=1, progress=False,
                options={"cluster": "local", "folder": str(tmp_path / "jobs")})
    assert marker.exists() and out.values[0]["square"] == 4 and out.jobs == 2
    assert out.devices[0]["attempts"] == 2


@pytest.mark.skipif(shutil.which("srun") is None, reason="no Slurm here (scripts/slurm-localhost.sh starts one)")
def test_slurm_job_array_through_submitit(tmp_path, in_process):
    import subprocess

    try:
        answered = subprocess.run(["scontrol", "ping"], capture_output=True, timeout=15).returncode == 0
    except subprocess.TimeoutExpired:
        answered = False
    if not answered:
        pytest.skip("srun exists but no Slurm controller answers")
    first = sweep(fresh_limits, GRID, executor="submitit", result_dir=tmp_path / "r", progress=False,
                  options={"cluster": "slurm", "folder": str(tmp_path / "jobs"), "timeout_min": 5, "array_parallelism": 2})
    assert first.executor == "submitit/slurm"
    assert all(same_limits(a, b) for a, b in zip(first.values, in_process))
    assert sorted(d["slurm_array_task_id"] for d in first.devices) == ["0", "1", "2", "3"]
    assert len({d["slurm_array_job_id"] for d in first.devices}) == 1  # one array
    again = sweep(fresh_limits, GRID, executor="submitit", result_dir=tmp_path / "r", progress=False,
                  options={"cluster": "slurm", "folder": str(tmp_path / "jobs")})
    assert (again.jobs, again.skipped) == (0, 4)


# --- bad input: a clear error before any job is submitted ------------------------------------------------

def test_unknown_executor_and_option(tmp_path):
    with pytest.raises(SweepError, match=r"executor must be one of \['local', 'submitit', 'ray'\]; got 'dask'"):
        sweep(probe, [dict(index=0)], executor="dask", result_dir=tmp_path / "r")
    with pytest.raises(SweepError, match=r"unknown option\(s\) \['gpus'\] for executor 'ray'; accepted: .*num_gpus"):
        sweep(probe, [dict(index=0)], executor="ray", options={"gpus": 1}, result_dir=tmp_path / "r")
    with pytest.raises(ParameterError, match="executor must be one of"):
        build(["good"], profile="smoke", out_dir=tmp_path / "o", manifest=_tiny_figures(tmp_path), executor="dask")
    assert not (tmp_path / "r").exists() and not (tmp_path / "o").exists()


def test_missing_extra_names_it(monkeypatch, tmp_path):
    for module in ("ray", "submitit"):
        monkeypatch.setitem(sys.modules, module, None)  # as if the package were not installed: import fails
        with pytest.raises(ImportError, match=rf"executor '{module}' needs the {module} package.*madlib\[scale\]"):
            sweep(probe, [dict(index=0)], executor=module, result_dir=tmp_path / "r")
    assert not (tmp_path / "r").exists()


def test_unreachable_ray_address_fails_fast(tmp_path):
    start = time.perf_counter()
    with pytest.raises(SweepError, match=r"ray address '127\.0\.0\.1:9' is not reachable"):
        sweep(probe, [dict(index=0)], executor="ray", options={"address": "127.0.0.1:9"}, result_dir=tmp_path / "r")
    assert time.perf_counter() - start < 5 and not (tmp_path / "r").exists()


def test_unpicklable_cell_function_or_cell(tmp_path):
    local_fn = lambda index: index  # noqa: E731 - exactly what a worker cannot import
    with pytest.raises(SweepError, match=r"cell_fn .*<lambda> does not pickle.*module-level function"):
        sweep(local_fn, [dict(index=0)], executor="submitit", options={"cluster": "local",
                                                                        "folder": str(tmp_path / "jobs")})
    with pytest.raises(SweepError, match=r"cell\['index'\] must be plain data"):
        sweep(probe, [dict(index=np.zeros(2))], executor="submitit", options={"cluster": "local",
                                                                               "folder": str(tmp_path / "jobs")})
    assert not (tmp_path / "jobs").exists()  # nothing was submitted


def _tiny_figures(root: Path) -> Path:
    """A manifest of two one-claim notebooks, one of which fails in its last cell."""
    params = 'profile = "smoke"  # p\nout_dir = None  # o\nprogress = False  # b\nseed = 0  # s'
    body = ("import matplotlib\nmatplotlib.use('Agg')\nimport matplotlib.pyplot as plt\n"
            "from madlib.figures import FigureRecord\n"
            "record = FigureRecord(name=NAME, experiments=['MAD-1'], profile=profile, params={}, seed=seed, scale={})\n"
            "record.claim('t.one', 'one is one', source='-', condition='1 == 1', measured={'x': 1}, held=True)\n"
            "record.save(plt.figure(figsize=(1, 1)), out_dir)")
    for name in ("bad", "good"):
        cells = [nbformat.v4.new_code_cell(params, metadata={"tags": ["parameters"]}),
                 nbformat.v4.new_code_cell(body.replace("NAME", repr(name)))]
        if name == "bad":
            cells.insert(1, nbformat.v4.new_code_cell("raise RuntimeError('boom')"))
        nb = nbformat.v4.new_notebook(cells=cells)
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nbformat.write(nb, root / f"{name}.ipynb")
    (root / "figures.yaml").write_text("figures:\n" + "".join(
        f"  {n}:\n    notebook: {n}.ipynb\n    experiments: [MAD-1]\n    title: t\n"
        "    profiles: {smoke: {}, default: {}, paper: {}}\n" for n in ("bad", "good")))
    return root / "figures.yaml"


def test_options_come_from_a_config_file_below_explicit_ones(monkeypatch, tmp_path):
    config = tmp_path / "sweep.yaml"
    config.write_text("submitit: {cluster: debug, timeout_min: 5}\nray: {num_gpus: 1}\n")
    monkeypatch.setenv("MADLIB_SWEEP_CONFIG", str(config))
    out = sweep(probe, [dict(index=1)], executor="submitit", options={"folder": str(tmp_path / "jobs")}, progress=False)
    assert out.executor == "submitit/debug" and out.values[0]["square"] == 1
    from madlib.sweep import check_executor

    assert check_executor("submitit", {"timeout_min": 9})["timeout_min"] == 9
    assert check_executor("ray")["num_gpus"] == 1
    config.write_text("slurm: {partition: gpu}\n")
    with pytest.raises(SweepError, match=r"must map executor names \['local', 'submitit', 'ray'\]"):
        check_executor("submitit")
