"""Bad input to ``python -m madlib.figures build`` ends in one line and an exit code, before any notebook runs.

No notebook is executed here: ``madlib.figures.runner._execute_notebook`` is replaced by a recorder.
"""

import errno
import json
import sys
import types
from pathlib import Path

import nbformat
import pytest

import madlib.sweep
from madlib.figures import runner
from madlib.figures.__main__ import main
from madlib.figures.manifest import ManifestError, load_manifest
from madlib.sweep import SweepError

PARAMETERS = ('profile = "smoke"  # p\nout_dir = None  # o\nprogress = False  # b\nseed = 0  # s\n'
              "lam_values = [1.0]  # biases; in (0, 1]")


def _figures(tmp_path, names=("first", "second", "third"), smoke="{}"):
    """A manifest of tiny notebooks (never executed here)."""
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(PARAMETERS, metadata={"tags": ["parameters"]})])
    for name in names:
        nbformat.write(nb, tmp_path / f"{name}.ipynb")
    manifest = tmp_path / "figures.yaml"
    manifest.write_text("figures:\n" + "".join(
        f"  {n}:\n    notebook: {n}.ipynb\n    experiments: [MAD-1]\n    title: t\n"
        f"    profiles: {{smoke: {smoke}, default: {{}}, paper: {{}}}}\n" for n in names))
    return str(manifest)


@pytest.fixture
def executed(monkeypatch):
    """Names of the notebooks the runner executed (none, unless a test says what an execution does)."""
    calls = []
    monkeypatch.setattr(runner, "_execute_notebook", lambda notebook, target, parameters: calls.append(Path(notebook).stem))
    return calls


def _error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err.strip()


@pytest.mark.parametrize("name, flag", [("out_dir", "--out DIR"), ("profile", "--profile"), ("progress", "-q")])
def test_parameters_the_runner_sets_are_refused_as_p_with_their_flag(name, flag, tmp_path, executed, capsys):
    # before: -p out_dir=... passed the check and was replaced by the default, so the committed figures were overwritten
    for dry in ([], ["--dry-run"]):
        assert main(["--manifest", _figures(tmp_path), "build", "--out", str(tmp_path / "out"),
                     "-p", f"{name}=x", *dry]) == 2
        assert _error_line(capsys).startswith(f"error: parameter {name} is set by the runner: use {flag}")
    assert executed == [] and not (tmp_path / "out").exists()


def test_the_manifest_refuses_parameters_the_runner_sets(tmp_path):
    with pytest.raises(ManifestError, match=r"profile smoke: \['progress'\] are set by the runner"):
        load_manifest(_figures(tmp_path, smoke="{progress: true}"))


@pytest.mark.parametrize("flag", ["--out", "--executed"])
def test_a_folder_flag_naming_a_file_is_refused_before_any_notebook(flag, tmp_path, executed, capsys):
    # before: FileExistsError traceback
    (tmp_path / "taken").write_text("")
    assert main(["--manifest", _figures(tmp_path), "build", "--profile", "smoke", "--out", str(tmp_path / "out"),
                 "--executed", str(tmp_path / "exec"), flag, str(tmp_path / "taken")]) == 2
    assert _error_line(capsys) == f"error: {flag} {tmp_path / 'taken'} is a file; give a folder (it is created if missing)"
    assert executed == []


def test_a_read_only_out_is_refused_before_the_first_cell(tmp_path, executed, monkeypatch, capsys):
    # before: found after the whole notebook ran, as a traceback from CLAIMS.md
    read_only = tmp_path / "read-only"
    read_only.mkdir(mode=0o555)
    real = runner.tempfile.TemporaryFile

    def refused_there(*args, dir=None, **kwargs):  # root writes through 0o555, so say what a user would meet
        if Path(dir) == read_only:
            raise PermissionError(errno.EACCES, "Permission denied")
        return real(*args, dir=dir, **kwargs)

    monkeypatch.setattr(runner.tempfile, "TemporaryFile", refused_there)
    assert main(["--manifest", _figures(tmp_path), "build", "--profile", "smoke", "--out", str(read_only),
                 "--executed", str(tmp_path / "exec")]) == 2
    assert _error_line(capsys) == (f"error: --out {read_only} is not a writable folder (Permission denied); "
                                   "give a folder this user can write")
    assert executed == []


@pytest.mark.parametrize("args, message", [
    (["-p", "lam_values=[1.0, 0.5"],
     "error: -p lam_values=[1.0, 0.5: the value is not valid YAML (expected ',' or ']', but got '<stream end>' "
     "at character 10)"),
    (["--executor", "submitit", "-o", "setup=['module load"],
     "error: -o setup=['module load: the value is not valid YAML (found unexpected end of stream at character 14)"),
    (["-p", "runs"], "error: -p takes NAME=VALUE; got 'runs'"),
])
def test_a_value_that_is_not_yaml_is_one_line(args, message, tmp_path, executed, capsys):
    # before: a YAMLError traceback from inside argparse
    assert main(["--manifest", _figures(tmp_path), "build", *args]) == 2
    assert _error_line(capsys) == message and executed == []


@pytest.mark.parametrize("executor, option, message", [
    ("submitit", "timeout_min=abc", "executor option timeout_min: expected an int (or null for the default); "
                                    "got 'abc' (str)"),
    ("submitit", "setup=module load cuda", "executor option setup: expected a list (or null for the default); "
                                           "got 'module load cuda' (str)"),
    ("submitit", "local_workers=true", "executor option local_workers: expected an int"),
    ("ray", "connect_timeout_s=soon", "executor option connect_timeout_s: expected a number"),
    ("ray", "address=6379", "executor option address: expected a string"),
])
def test_executor_options_of_the_wrong_type_are_named(executor, option, message, tmp_path, executed, capsys):
    # before: passed on unchecked (setup="..." became a list of characters; connect_timeout_s=soon a ValueError)
    assert main(["--manifest", _figures(tmp_path), "build", "--executor", executor, "-o", option,
                 "--out", str(tmp_path / "out")]) == 2
    assert _error_line(capsys).startswith(f"error: {message}")
    assert executed == [] and not (tmp_path / "out").exists()


def test_executor_options_of_the_right_type_pass():
    runner.check_executor_options("ray", {"num_gpus": 0.5, "num_cpus": 2, "address": None, "cluster_gpus": 1})
    runner.check_executor_options("submitit", {"setup": ["module load cuda"], "mem_gb": 8, "config": "s.yaml",
                                               "slurm_additional_parameters": {"constraint": "a100"}})


def test_o_with_the_local_executor_is_refused(tmp_path, executed, capsys):
    # before: silently ignored
    for dry in ([], ["--dry-run"]):
        assert main(["--manifest", _figures(tmp_path), "build", "-o", "cluster=local", *dry]) == 2
        assert _error_line(capsys) == ("error: executor options ['cluster'] would be ignored by --executor local, "
                                       "which takes none; use --executor submitit or ray, or drop -o")
    assert executed == []


def test_an_unreachable_ray_address_is_one_line(tmp_path, executed, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", types.ModuleType("ray"))  # installed or not: only the address is tried
    assert main(["--manifest", _figures(tmp_path), "build", "--executor", "ray", "-o", "address=127.0.0.1:9",
                 "-o", "connect_timeout_s=1", "--out", str(tmp_path / "out")]) == 2
    assert _error_line(capsys).startswith("error: ray address '127.0.0.1:9' is not reachable")
    assert executed == [] and not (tmp_path / "out").exists()


def test_a_sweep_error_reaching_the_top_is_one_line(tmp_path, monkeypatch, capsys):
    # before: a SweepError traceback (ray.init failing at an address that answered the first check)
    monkeypatch.setitem(sys.modules, "ray", types.ModuleType("ray"))

    def init_fails(*args, **kwargs):
        raise SweepError("ray.init(address='auto') failed: ConnectionError: no cluster\n  at auto")

    monkeypatch.setattr(madlib.sweep, "sweep", init_fails)
    assert main(["--manifest", _figures(tmp_path), "build", "--executor", "ray", "-o", "address=auto",
                 "--out", str(tmp_path / "out"), "--executed", str(tmp_path / "exec")]) == 2
    assert _error_line(capsys) == "error: ray.init(address='auto') failed: ConnectionError: no cluster at auto"


@pytest.mark.parametrize("where", ["here", "kernel"])
def test_ctrl_c_says_what_was_kept(where, tmp_path, monkeypatch, capsys):
    # before: a raw KeyboardInterrupt (plus the kernel's traceback); files were already written atomically
    from papermill.exceptions import PapermillExecutionError

    ran = []

    def execute(notebook, target, parameters):
        ran.append(Path(notebook).stem)
        if ran[-1] == "second":  # Ctrl-C reaches this process, or the kernel first (then papermill reports it)
            raise KeyboardInterrupt if where == "here" else PapermillExecutionError(
                1, 1, "loop()", "KeyboardInterrupt", "", [])
        (Path(parameters["out_dir"]) / f"{ran[-1]}.json").write_text(json.dumps({"claims": []}))

    monkeypatch.setattr(runner, "_execute_notebook", execute)
    out = tmp_path / "out"
    # one lane, so that "third" cannot start before "second" is stopped (lanes: tests/test_runner_lanes.py)
    assert main(["--manifest", _figures(tmp_path), "build", "--profile", "smoke", "--out", str(out),
                 "--executed", str(tmp_path / "exec"), "-q", "--jobs", "1"]) == 130
    assert _error_line(capsys) == (f"interrupted: kept 1 of 3 figures in {out} (first); not written: second, third; "
                                   "CLAIMS.md and the site were not refreshed")
    assert ran == ["first", "second"] and sorted(p.name for p in out.iterdir()) == ["first.json"]


@pytest.mark.parametrize("param, message", [
    ("lam_values=[]", "parameter lam_values: expected at least one element, list of float in (0, 1]; got []"),
    ("seed=1e30", "parameter seed: 1000000000000000019884624838656 is out of range; expected int in [0, 4294967295]"),
    ("seed=4294967296", "parameter seed: 4294967296 is out of range; expected int in [0, 4294967295]"),
    ("seed=-1", "parameter seed: -1 is out of range; expected int in [0, 4294967295]"),
    ("seed=0.5", "parameter seed: expected int in [0, 4294967295]; got 0.5 (float)"),
])
def test_empty_lists_and_seeds_out_of_range_are_refused(param, message, tmp_path, executed, capsys):
    # before: passed the check and failed inside a cell
    assert main(["--manifest", _figures(tmp_path), "build", "first", "-p", param, "--dry-run"]) == 2
    assert _error_line(capsys) == f"error: first: {message}"
    assert executed == []


def test_ctrl_c_on_an_executor_keeps_the_jobs_that_reported(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", types.ModuleType("ray"))

    def first_job_then_ctrl_c(fn, cells, callback, **kwargs):
        Path(cells[0]["json_path"]).write_text(json.dumps({"claims": []}))
        callback(0, {"ok": True, "message": "0/0 claims held", "seconds": 1.0, "attempts": 1}, {"host": "h"})
        raise KeyboardInterrupt

    monkeypatch.setattr(madlib.sweep, "sweep", first_job_then_ctrl_c)
    out = tmp_path / "out"
    assert main(["--manifest", _figures(tmp_path), "build", "--executor", "ray", "-o", "address=auto", "-q",
                 "--out", str(out), "--executed", str(tmp_path / "exec")]) == 130
    assert _error_line(capsys).startswith(f"interrupted: kept 1 of 3 figures in {out} (first); not written: second, third")
    assert json.loads((out / "first.json").read_text())["job"]["executor"] == "ray"
