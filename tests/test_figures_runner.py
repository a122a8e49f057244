"""The manifest, the notebooks and the runner: completeness, clean sources, failures reported."""

import ast
import json
from pathlib import Path

import nbformat
import pytest

from madlib.figures.__main__ import main
from madlib.figures.manifest import MANIFEST_PROFILES, RUNNER_PARAMETERS, load_manifest
from madlib.figures.params import check_value, notebook_parameters
from madlib.figures.runner import build, resolve_figure

ROOT = Path(__file__).resolve().parents[1]
MANIFEST = load_manifest()
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def test_every_notebook_is_a_manifest_figure_with_a_smoke_test():
    assert {e.notebook.resolve() for e in MANIFEST.values()} == {p.resolve() for p in NOTEBOOKS}
    for name in MANIFEST:
        assert (ROOT / "tests" / "figures" / f"test_{name}.py").exists(), f"figure {name} has no smoke test"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebooks_are_clean_and_thin(path):
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code), "commit notebooks without outputs"
    for cell in code:
        for node in ast.walk(ast.parse(cell.source)):
            assert not isinstance(node, (ast.FunctionDef, ast.ClassDef)), "algorithms live in madlib, not notebooks"
            # a lambda given a name is a def by another spelling (a key= or sort argument stays allowed)
            named = isinstance(node, (ast.Assign, ast.AnnAssign)) and isinstance(node.value, ast.Lambda)
            assert not named, f"named lambda {ast.unparse(node)[:60]!r}: algorithms live in madlib, not notebooks"
    assert nb.cells[0].cell_type == "markdown"
    entry = next(e for e in MANIFEST.values() if e.notebook.resolve() == path.resolve())
    assert all(exp in nb.cells[0].source for exp in entry.experiments), "the header names its experiment IDs"


@pytest.mark.parametrize("name", list(MANIFEST))
def test_profiles_and_defaults_pass_the_parameter_checks(name):
    entry = MANIFEST[name]
    specs = notebook_parameters(entry.notebook)
    assert set(RUNNER_PARAMETERS) <= set(specs)
    for spec in specs.values():
        assert check_value(spec, spec.default) == spec.default  # defaults are in range
    for profile in MANIFEST_PROFILES:
        params = resolve_figure(entry, profile)
        assert params["profile"] == profile
        json.dumps(params)


def test_a_relative_folder_parameter_is_relative_to_where_build_was_called(tmp_path, monkeypatch):
    # the notebooks run in notebooks/, so the runner must pass such folders as absolute paths
    monkeypatch.chdir(tmp_path)
    params = resolve_figure(MANIFEST["casd_1_effective_data"], "smoke", {"cache_dir": "build/casd"})
    assert params["cache_dir"] == str(tmp_path / "build" / "casd") and params["profile"] == "custom"
    assert resolve_figure(MANIFEST["casd_1_effective_data"], "smoke", {"cache_dir": None})["cache_dir"] is None


def test_cli_rejects_bad_parameters_before_running(capsys):
    assert main(["build", "mad_1_gaussian_collapse", "--profile", "smoke", "-p", "runs=-3"]) == 2
    assert "parameter runs: -3 is out of range" in capsys.readouterr().err
    assert main(["build", "mad_1_gaussian_collapse", "-p", "genrations=5"]) == 2
    assert "did you mean 'generations'" in capsys.readouterr().err
    assert main(["build", "no_such_figure"]) == 2
    assert main(["list"]) == 0
    assert "MAD-1" in capsys.readouterr().out


def test_dry_run_prints_resolved_parameters(capsys):
    assert main(["build", "mad_1_gaussian_collapse", "--profile", "smoke", "--dry-run", "-p", "runs=300"]) == 0
    name, params = capsys.readouterr().out.split(" ", 1)
    params = json.loads(params)
    assert name == "mad_1_gaussian_collapse" and params["runs"] == 300 and params["profile"] == "custom"


def test_a_failing_notebook_is_reported_and_the_others_run(tmp_path):
    good = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell('profile = "smoke"  # p\nout_dir = None  # o\nprogress = False  # b\nseed = 0  # s',
                                  metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("x = 1"),
    ])
    bad = nbformat.v4.new_notebook(cells=list(good.cells) + [nbformat.v4.new_code_cell("raise RuntimeError('boom')")])
    for name, nb in (("bad", bad), ("good", good)):
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nbformat.write(nb, tmp_path / f"{name}.ipynb")
    (tmp_path / "figures.yaml").write_text(
        "figures:\n" + "".join(
            f"  {n}:\n    notebook: {n}.ipynb\n    experiments: [MAD-1]\n    title: t\n"
            "    profiles: {smoke: {}, default: {}, paper: {}}\n" for n in ("bad", "good")))
    results = build(profile="smoke", out_dir=tmp_path / "out", executed_dir=tmp_path / "exec",
                    manifest=tmp_path / "figures.yaml", quiet=True, stream=open(tmp_path / "log", "w"))
    assert [r.ok for r in results] == [False, True]
    assert "starting \"raise RuntimeError('boom')\"" in results[0].message
    assert "raised RuntimeError: boom" in results[0].message
    assert "FAILED" in (tmp_path / "log").read_text()
