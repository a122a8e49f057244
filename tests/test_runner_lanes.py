"""``build --jobs N``: figures in one-thread lanes, the estimate printed before a build, progress lines, Ctrl-C.

The notebooks are fakes (``madlib.figures.runner._execute_notebook`` replaced), except in the last test, which
starts two real kernels and stops them. Overlap is shown with threading barriers and events, never with timings.
"""

import _thread
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import nbformat
import pytest
from papermill.exceptions import PapermillExecutionError

from madlib.figures import runner
from madlib.figures.__main__ import main
from madlib.figures.manifest import load_manifest
from madlib.figures.params import ParameterError
from madlib.figures.runner import BuildInterrupted, build, estimate_build, greedy_lanes, lane_environment
from madlib.machine import LANES_ENV, machine_info

PARAMETERS = ('profile = "smoke"  # p\nout_dir = None  # o\nprogress = False  # b\nseed = 0  # s\n'
              "threads = 1  # torch threads; in [1, 256]")
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def _figures(tmp_path, names=("first", "second", "third"), cells=("x = 1",)):
    """A manifest of tiny notebooks (executed only where a test leaves ``_execute_notebook`` alone)."""
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(PARAMETERS, metadata={"tags": ["parameters"]}),
                                         *(nbformat.v4.new_code_cell(c) for c in cells)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    for name in names:
        nbformat.write(nb, tmp_path / f"{name}.ipynb")
    manifest = tmp_path / "figures.yaml"
    manifest.write_text("figures:\n" + "".join(
        f"  {n}:\n    notebook: {n}.ipynb\n    experiments: [MAD-1]\n    title: t\n"
        "    profiles: {smoke: {}, default: {}, paper: {}}\n" for n in names))
    return str(manifest)


def _write_json(path: Path, profile="smoke"):
    path.write_text(json.dumps({"profile": profile}))  # no claims: CLAIMS.md passes it by


def _build(tmp_path, jobs, quiet=True, stream=None, **kwargs):
    return build(profile="smoke", out_dir=tmp_path / "out", executed_dir=tmp_path / "exec",
                 manifest=kwargs.pop("manifest", None) or _figures(tmp_path), quiet=quiet, jobs=jobs,
                 stream=stream or io.StringIO(), **kwargs)


@pytest.fixture
def cores(monkeypatch):
    """The build sees 2 usable cores, whatever this machine has."""
    monkeypatch.setattr(runner, "usable_cores", lambda: 2)
    return 2


class _Overlap:
    """A fake notebook run that counts how many run at once."""

    def __init__(self, barrier=None):
        self.lock, self.active, self.most, self.ran, self.barrier = threading.Lock(), 0, 0, [], barrier

    def __call__(self, notebook, target, parameters):
        with self.lock:
            self.active += 1
            self.most = max(self.most, self.active)
            self.ran.append(Path(notebook).stem)
        try:
            if self.barrier is not None and len(self.ran) <= self.barrier.parties:
                self.barrier.wait(timeout=30)  # returns only once the other lane's figure has started too
            _write_json(Path(parameters["out_dir"]) / f"{Path(notebook).stem}.json")
        finally:
            with self.lock:
                self.active -= 1


def test_two_lanes_run_two_figures_at_once(tmp_path, monkeypatch, cores):
    fake = _Overlap(barrier=threading.Barrier(2))
    monkeypatch.setattr(runner, "_execute_notebook", fake)
    results = _build(tmp_path, jobs=2)
    assert [r.ok for r in results] == [True, True, True], [r.message for r in results]
    assert fake.most == 2 and sorted(fake.ran) == ["first", "second", "third"]
    assert (tmp_path / "out" / "CLAIMS.md").exists()


def test_one_lane_runs_one_figure_at_a_time_in_manifest_order(tmp_path, monkeypatch, cores):
    fake = _Overlap()
    monkeypatch.setattr(runner, "_execute_notebook", fake)
    assert all(r.ok for r in _build(tmp_path, jobs=1))
    assert fake.most == 1 and fake.ran == ["first", "second", "third"]


def test_a_failure_in_one_lane_leaves_the_others_running(tmp_path, monkeypatch, cores):
    def execute(notebook, target, parameters):
        if Path(notebook).stem == "second":
            raise PapermillExecutionError(2, 2, "boom()", "RuntimeError", "boom", [])
        _write_json(Path(parameters["out_dir"]) / f"{Path(notebook).stem}.json")

    monkeypatch.setattr(runner, "_execute_notebook", execute)
    stream = io.StringIO()
    results = _build(tmp_path, jobs=2, stream=stream)
    assert [(r.name, r.ok) for r in results] == [("first", True), ("second", False), ("third", True)]
    assert "raised RuntimeError: boom" in results[1].message
    assert "second (smoke) FAILED" in stream.getvalue()  # failures are printed even with -q
    assert (tmp_path / "out" / "CLAIMS.md").exists()


@pytest.mark.parametrize("jobs, user, threads", [
    (2, None, "1"),   # the default on 2 cores: one thread per lane
    (1, None, "2"),   # one lane may use both cores
    (1, "1", "1"),    # ... unless the user says one (MKL follows OMP, as MKL does)
    (2, "8", "1"),    # a user's higher setting is cut to the lane's share
])
def test_each_kernel_gets_its_lanes_share_of_the_cores(jobs, user, threads, tmp_path, monkeypatch, cores):
    for name in (*THREAD_VARIABLES, LANES_ENV):
        monkeypatch.delenv(name, raising=False)
    if user is not None:
        monkeypatch.setenv("OMP_NUM_THREADS", user)
    seen = []

    def execute(notebook, target, parameters):  # what a kernel started now would inherit
        seen.append({name: os.environ.get(name) for name in (*THREAD_VARIABLES, LANES_ENV)}
                    | {"lanes": machine_info(probe=False)["lanes"]})

    monkeypatch.setattr(runner, "_execute_notebook", execute)
    _build(tmp_path, jobs=jobs)
    assert len(seen) == 3
    for env in seen:
        assert env["OMP_NUM_THREADS"] == env["MKL_NUM_THREADS"] == threads
        assert env["OPENBLAS_NUM_THREADS"] == "1"
        assert env[LANES_ENV] == str(jobs) and env["lanes"] == jobs
    # the build's own environment is as it was
    assert os.environ.get("OMP_NUM_THREADS") == user and LANES_ENV not in os.environ
    assert machine_info(probe=False)["lanes"] is None


def test_a_lane_kernel_starts_torch_with_one_thread():
    env = {**os.environ, **lane_environment(jobs=2, lanes=2, cores=2)}
    out = subprocess.run([sys.executable, "-c", "import torch; print(torch.get_num_threads())"], env=env,
                         capture_output=True, text=True, check=True).stdout
    assert out.strip() == "1"


def test_lanes_never_exceed_the_figures():
    env = lane_environment(jobs=4, lanes=3, cores=4, environ={})
    assert env == {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", LANES_ENV: "3"}
    one_lane = lane_environment(jobs=1, lanes=1, cores=4, environ={"OPENBLAS_NUM_THREADS": "4"})
    assert one_lane["OMP_NUM_THREADS"] == one_lane["MKL_NUM_THREADS"] == one_lane["OPENBLAS_NUM_THREADS"] == "4"
    assert lane_environment(jobs=8, lanes=2, cores=2, environ={})["OMP_NUM_THREADS"] == "1"  # more lanes than cores


@pytest.mark.parametrize("jobs", ["0", "-1", "two", "1.5"])
def test_jobs_below_one_or_not_a_whole_number_is_refused(jobs, tmp_path, monkeypatch, capsys, cores):
    monkeypatch.setattr(runner, "_execute_notebook", lambda *a: pytest.fail("nothing may run"))
    for dry in ([], ["--dry-run"]):
        assert main(["--manifest", _figures(tmp_path), "build", "--profile", "smoke", "--out", str(tmp_path / "out"),
                     "--jobs", jobs, *dry]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Traceback" not in err
        assert err.startswith("error: --jobs takes a whole number of lanes, 1 or more") and "default 2" in err
        assert "1: one figure at a time on all 2 cores" in err and err.strip().endswith(f"got {jobs}")
    assert not (tmp_path / "out").exists()
    with pytest.raises(ParameterError, match="--jobs takes a whole number"):
        _build(tmp_path, jobs=0)


def test_jobs_with_another_executor_is_refused(tmp_path, capsys):
    assert main(["--manifest", _figures(tmp_path), "build", "--executor", "ray", "--jobs", "2",
                 "--out", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err.startswith("error: --jobs sets the lanes of --executor local; ray runs each figure")


def test_more_threads_than_a_lanes_share_is_refused_beside_another_lane(tmp_path, monkeypatch, cores):
    calls = []
    monkeypatch.setattr(runner, "_execute_notebook", lambda notebook, target, parameters: calls.append(1))
    with pytest.raises(ParameterError, match=r"parameter threads: first \(threads=2\), second \(threads=2\), third "
                                             r"\(threads=2\) would run more than 1 thread\(s\) beside another lane"):
        _build(tmp_path, jobs=2, overrides={"threads": 2})
    assert calls == []
    _build(tmp_path, jobs=1, overrides={"threads": 2})  # one figure at a time: its own choice
    _build(tmp_path, jobs=2, overrides={"threads": 2}, manifest=_figures(tmp_path, names=("first",)))  # one lane
    assert len(calls) == 4


def test_a_figure_with_a_lanes_parameter_gets_its_build_lanes_cores(tmp_path, monkeypatch, cores):
    seen = {}
    monkeypatch.setattr(runner, "_execute_notebook",
                        lambda notebook, target, parameters: seen.__setitem__(Path(notebook).stem, parameters.get("lanes")))
    monkeypatch.setattr(sys.modules[__name__], "PARAMETERS", PARAMETERS + "\nlanes = 2  # fits at once; in [1, 64]")
    manifest = _figures(tmp_path, names=("first", "second"))
    _build(tmp_path, jobs=2, manifest=manifest)
    assert seen == {"first": 1, "second": 1}  # two figures side by side: one core each
    _build(tmp_path, jobs=2, manifest=manifest, names=["first"])
    assert seen["first"] == 2  # built alone: both cores, as one-thread worker processes
    _build(tmp_path, jobs=2, manifest=manifest, names=["first"], overrides={"lanes": 1})
    assert seen["first"] == 1  # the user's -p lanes wins


# --- the estimate -------------------------------------------------------------------------------------------

def _recorded(folder: Path, name: str, wall: float, gflops=None, profile="smoke", params=None):
    folder.mkdir(parents=True, exist_ok=True)
    record = {"profile": profile, "wall_time_s": wall, "params": params or {}}
    if gflops is not None:
        record["machine"] = {"cpu": "x", "cores": 2, "matmul_gflops_1thread": gflops}
    (folder / f"{name}.json").write_text(json.dumps(record))


NAMES = ("a", "b", "c", "d", "e", "f")


def _estimate_case(tmp_path):
    """Recorded: a 100 s at 20 GFLOP/s, b 60 s without a probe, c 30 s at 40, d 40 s at 10 (in the fallback
    folder), e nothing, f only at another profile."""
    manifest = _figures(tmp_path, names=NAMES)
    out, fallback = tmp_path / "out", tmp_path / "committed"
    _recorded(out, "a", 100.0, 20.0)
    _recorded(out, "b", 60.0)
    _recorded(out, "c", 30.0, 40.0)
    _recorded(fallback, "c", 999.0, 40.0)  # the first folder wins
    _recorded(fallback, "d", 40.0, 10.0)
    _recorded(out, "f", 5.0, 40.0, profile="default")
    entries = load_manifest(manifest)
    plans = [(entries[n], runner.resolve_figure(entries[n], "smoke")) for n in NAMES]
    return manifest, plans, [out, fallback]


def test_greedy_lanes_longest_first_to_the_least_loaded_lane():
    assert greedy_lanes([10, 60, 30, 50], 2) == [70.0, 80.0]  # 60 | 50, 30 -> lane 2 (80), 10 -> lane 1 (70)
    assert greedy_lanes([10, 60, 30, 50], 3) == [60.0, 50.0, 40.0]
    assert greedy_lanes([10, 60, 30, 50], 1) == [150.0]
    assert greedy_lanes([], 2) == [0.0, 0.0]


def test_the_estimate_scales_each_recorded_time_by_the_probe_ratio(tmp_path):
    _, plans, folders = _estimate_case(tmp_path)
    estimate = estimate_build(plans, folders, profile="smoke", lanes=2, threads=1, gflops=40.0)
    # this machine probes 40 GFLOP/s: a ran on a machine half as fast, d on one four times slower
    assert [f.seconds for f in estimate.figures] == [50.0, 60.0, 30.0, 10.0, None, None]
    assert [f.recorded_gflops for f in estimate.figures] == [20.0, None, 40.0, 10.0, None, None]
    assert estimate.work == 150.0 and estimate.wall == 80.0 and estimate.unknown == ["e", "f"]
    assert estimate_build(plans, folders, profile="smoke", lanes=3, gflops=40.0).wall == 60.0
    unprobed = estimate_build(plans, folders, profile="smoke", lanes=1, gflops=None)
    assert [f.seconds for f in unprobed.figures] == [100.0, 60.0, 30.0, 40.0, None, None] and unprobed.wall == 230.0


def test_the_probe_runs_only_when_a_record_has_one_to_compare(tmp_path):
    _, plans, folders = _estimate_case(tmp_path)
    probes = []
    estimate_build(plans[1:2] + plans[4:], folders, profile="smoke", lanes=2, gflops=lambda: probes.append(1) or 40.0)
    assert probes == []  # b has no probe, e and f no time
    assert estimate_build(plans, folders, profile="smoke", lanes=2, gflops=lambda: 80.0).figures[0].seconds == 25.0


def test_a_custom_build_uses_only_a_record_with_the_same_parameters(tmp_path):
    manifest = _figures(tmp_path, names=("a",))
    entry = load_manifest(manifest)["a"]
    plan = [(entry, runner.resolve_figure(entry, "smoke", {"seed": 3}))]
    _recorded(tmp_path / "out", "a", 12.0, profile="custom", params={"seed": 4, "threads": 1})
    assert estimate_build(plan, [tmp_path / "out"], profile="custom", lanes=1).figures[0].seconds is None
    _recorded(tmp_path / "out", "a", 12.0, profile="custom", params={"seed": 3, "threads": 1})
    assert estimate_build(plan, [tmp_path / "out"], profile="custom", lanes=1).figures[0].seconds == 12.0


def test_build_prints_the_estimate_and_a_line_as_each_figure_starts_and_ends(tmp_path, monkeypatch, cores):
    manifest, _, _ = _estimate_case(tmp_path)
    monkeypatch.setattr(runner, "default_out_dir", lambda: tmp_path / "committed")
    monkeypatch.setattr(runner, "_probe_here", lambda: 40.0)
    monkeypatch.setattr(runner, "_execute_notebook", lambda notebook, target, parameters: None)
    stream = io.StringIO()
    _build(tmp_path, jobs=2, quiet=False, stream=stream, manifest=manifest)
    lines = stream.getvalue().splitlines()
    assert lines[0] == ("estimate for 6 figure(s) at profile smoke on 2 lanes of 1 thread; "
                        "this CPU: 40.0 GFLOP/s one-thread 1024 matmul:")
    assert lines[1:8] == [
        "  a  ~50 s        (1 min 40 s recorded at 20.0 GFLOP/s)",
        "  b  ~1 min 00 s  (1 min 00 s recorded, unscaled: that JSON has no matmul probe)",
        "  c  ~30 s        (30 s recorded at 40.0 GFLOP/s)",
        "  d  ~10 s        (40 s recorded at 10.0 GFLOP/s)",
        "  e  unknown      (no recorded time at profile smoke)",
        "  f  unknown      (no recorded time at profile smoke)",
        "  total: ~2 min 30 s of work, ~1 min 20 s over 2 lanes, plus 2 figure(s) of unknown time",
    ]
    starts = [line.split("] start ")[1] for line in lines if "] start " in line]
    # the longest first, as the estimate assumes, then those of unknown time in manifest order
    assert [s.split()[0] for s in starts] == ["b", "a", "c", "d", "e", "f"]
    assert all(s.endswith(("in lane 1 of 2", "in lane 2 of 2")) for s in starts)
    ends = [line for line in lines if " ok in " in line]
    assert len(ends) == 6 and all(line.startswith("[0:0") for line in ends)  # elapsed m:ss
    assert lines[-1].endswith("built 6 figure(s), 0 failed, in 2 lanes; estimated ~1 min 20 s plus figures of "
                              "unknown time")


def test_quiet_prints_nothing_and_does_not_probe(tmp_path, monkeypatch, cores):
    manifest, _, _ = _estimate_case(tmp_path)
    monkeypatch.setattr(runner, "_probe_here", lambda: pytest.fail("-q needs no probe"))
    monkeypatch.setattr(runner, "_execute_notebook", lambda notebook, target, parameters: None)
    stream = io.StringIO()
    _build(tmp_path, jobs=2, stream=stream, manifest=manifest)
    assert stream.getvalue() == ""


# --- Ctrl-C -------------------------------------------------------------------------------------------------

def test_ctrl_c_stops_the_running_lanes_and_starts_no_other(tmp_path, monkeypatch, cores):
    stopped, ran = threading.Event(), []
    monkeypatch.setattr(runner, "_stop_kernels", stopped.set)  # as if it killed the kernels

    def execute(notebook, target, parameters):
        ran.append(Path(notebook).stem)
        if ran[-1] == "second":
            _thread.interrupt_main()  # the terminal's Ctrl-C reaches the build's main thread only
        assert stopped.wait(timeout=30)
        raise RuntimeError("Kernel died")  # what papermill says of a killed kernel

    monkeypatch.setattr(runner, "_execute_notebook", execute)
    handler = signal.getsignal(signal.SIGINT)
    with pytest.raises(BuildInterrupted) as caught:
        _build(tmp_path, jobs=2)
    assert str(caught.value) == (f"interrupted: kept 0 of 3 figures in {tmp_path / 'out'}; not written: first, "
                                 "second, third; CLAIMS.md and the site were not refreshed")
    assert sorted(ran) == ["first", "second"]
    assert signal.getsignal(signal.SIGINT) is handler  # the build's own handler is gone


def test_a_kernel_interrupted_stops_the_build_and_a_finished_lane_is_kept(tmp_path, monkeypatch, cores):
    second_stopped, ran = threading.Event(), []

    class Stream(io.StringIO):
        def write(self, text):
            if "second (smoke) stopped" in text:
                second_stopped.set()
            return super().write(text)

    def execute(notebook, target, parameters):
        ran.append(Path(notebook).stem)
        if ran[-1] == "second":
            raise PapermillExecutionError(1, 1, "loop()", "KeyboardInterrupt", "", [])
        assert second_stopped.wait(timeout=30)  # "first" ends after the build saw "second" stop
        _write_json(Path(parameters["out_dir"]) / f"{ran[-1]}.json")

    monkeypatch.setattr(runner, "_execute_notebook", execute)
    stream = Stream()
    with pytest.raises(BuildInterrupted, match=r"kept 1 of 3 figures in .* \(first\); not written: second, third"):
        _build(tmp_path, jobs=2, quiet=False, stream=stream)
    assert sorted(ran) == ["first", "second"] and "[1/3] first (smoke) ok" in stream.getvalue()


def test_ctrl_c_kills_real_kernels_of_both_lanes(tmp_path, cores):
    manifest = _figures(tmp_path, names=("first", "second"), cells=("import time\ntime.sleep(120)",))
    started = []

    def press_ctrl_c_when_both_kernels_run():
        for _ in range(600):
            with runner._KERNELS_LOCK:
                pids = [pid for _, pid in runner._KERNELS.values()]
            if len(pids) == 2:
                started.extend(pids)
                time.sleep(0.5)  # let the cells start
                _thread.interrupt_main()
                return
            time.sleep(0.1)

    threading.Thread(target=press_ctrl_c_when_both_kernels_run, daemon=True).start()
    with pytest.raises(BuildInterrupted, match="kept 0 of 2 figures"):
        _build(tmp_path, jobs=2, manifest=manifest)
    assert len(started) == 2
    for pid in started:
        with pytest.raises(ProcessLookupError):
            for _ in range(50):  # killed: gone once papermill has reaped it
                os.kill(pid, 0)
                time.sleep(0.1)
    assert runner._KERNELS == {}


def test_the_estimate_line_says_the_threads_the_kernels_get(monkeypatch):
    # a user's OMP_NUM_THREADS=1 wins over a lane's share of 2: the line must say 1, as the kernels get
    from madlib.figures.runner import lane_environment

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert lane_environment(1, 1, 2)["OMP_NUM_THREADS"] == "1"
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert lane_environment(1, 1, 2)["OMP_NUM_THREADS"] == "2"
