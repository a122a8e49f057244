"""pyproject.toml is the source of truth for dependencies; environment.yml must agree with it."""

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _split(requirement: str) -> tuple[str, str]:
    name, spec = re.match(r"^\s*([A-Za-z0-9_.\-]+)\s*(.*)$", requirement).groups()
    return name.lower().replace("_", "-"), spec.replace(" ", "")


def _pyproject_requirements() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"])
    for extra, items in project["optional-dependencies"].items():
        reqs += [r for r in items if not r.startswith("madlib")]
    return dict(_split(r) for r in reqs)


def _environment_requirements() -> tuple[dict[str, str], list[str]]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda = [d for d in env["dependencies"] if isinstance(d, str)]
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    reqs = {}
    for item in conda + [p for p in pip if not p.startswith("-e")]:
        name, spec = _split(item)
        reqs[name] = "==" + spec[1:] if spec.startswith("=") and not spec.startswith("==") else spec
    return reqs, pip


def test_environment_matches_pyproject():
    expected = _pyproject_requirements()
    got, pip = _environment_requirements()
    assert got.pop("python") == "==3.11"
    got.pop("pip")
    assert got == expected
    assert "-e .[all]" in pip


def test_torch_pins():
    expected = _pyproject_requirements()
    assert expected["torch"] == "==2.14.1" and expected["torchvision"] == "==0.29.1"


def test_ci_calls_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in readme and "make test" in ci


def test_theory_imports_only_numpy_and_scipy():
    # docs/architecture.md promises it: nothing in madlib.theory pulls in torch or the loop engine
    import subprocess
    import sys

    code = ("import sys, madlib.theory.gaussian, madlib.theory.traits; "
            "print(sorted(m for m in ('torch', 'madlib.loops', 'matplotlib') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"
