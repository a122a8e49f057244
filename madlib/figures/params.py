"""Notebook parameters: read the ``parameters`` cell, check overrides before anything runs.

A parameters cell holds one literal assignment per line, with an optional range at the end of
its comment, which the runner enforces (papermill alone only warns about unknown names)::

    runs = 1000  # independent loops per setting; in [2, inf)
    lam_values = [1.0, 0.9]  # sampling bias lambda; in (0, 1]
    family = "exact"  # data representation; in {"exact", "naive"}

The type comes from the default: bool, int, float, str, None (str or None) or a list of one of
these; a range applies to each element of a list, and a list whose default has elements must have one.
A seed (``seed`` or ``*_seed``) is an int in [0, 2**32 - 1] whatever its comment says: the range that
every seeding in numpy and torch accepts (others failed inside a cell).
"""

from __future__ import annotations

import ast
import difflib
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_INTERVAL = re.compile(r"\bin\s*([\[(])\s*([^,\])]+?)\s*,\s*([^\])]+?)\s*([\])])\s*$")
_CHOICES = re.compile(r"\bin\s*\{([^}]*)\}\s*$")
SEED_MAX = 2**32 - 1


class ParameterError(ValueError):
    """A notebook parameter that does not exist, has the wrong type or is out of range."""


@dataclass(frozen=True)
class ParamSpec:
    name: str
    default: Any
    help: str = ""
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple | None = None

    @property
    def kind(self) -> str:
        return _kind(self.default)

    @property
    def element_kind(self) -> str | None:
        if isinstance(self.default, list):
            return _kind(self.default[0]) if self.default else "any"
        return None

    def describe(self) -> str:
        kind = f"list of {self.element_kind}" if self.element_kind else self.kind
        if self.choices is not None:
            return f"{kind} in {{{', '.join(map(repr, self.choices))}}}"
        if self.low is not None:
            return (f"{kind} in {'(' if self.low_open else '['}{_fmt(self.low)}, "
                    f"{_fmt(self.high)}{')' if self.high_open else ']'}")
        return kind


def _fmt(x: float) -> str:
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return f"{x:.0f}" if float(x).is_integer() and abs(x) < 1e16 else f"{x:g}"  # SEED_MAX in full, not 4.29497e+09


def _kind(value) -> str:
    if value is None:
        return "str or None"
    for kind in (bool, int, float, str):
        if type(value) is kind:
            return kind.__name__
    if isinstance(value, list):
        return "list"
    raise ParameterError(f"unsupported parameter default {value!r}: use bool, int, float, str, None or a list")


def _parse_bound(text: str) -> float:
    text = text.strip()
    if text in ("inf", "+inf"):
        return math.inf
    if text == "-inf":
        return -math.inf
    return float(text)


def parse_parameters_source(source: str) -> dict[str, ParamSpec]:
    """ParamSpecs of a parameters cell's source, in order of appearance."""
    specs: dict[str, ParamSpec] = {}
    lines = source.splitlines()
    for node in ast.parse(source).body:
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)):
            raise ParameterError(f"parameters cell line {node.lineno}: only 'name = literal' assignments are allowed")
        name = node.targets[0].id
        try:
            default = ast.literal_eval(node.value)
        except ValueError as err:
            raise ParameterError(f"parameter {name}: default must be a literal ({err})") from None
        if isinstance(default, tuple):
            default = list(default)
        _kind(default)
        rest = lines[node.end_lineno - 1][node.end_col_offset:]
        comment = rest[rest.index("#") + 1:].strip() if "#" in rest else ""
        if "=" in comment:
            # papermill's own parser then misreads the line and drops the parameter
            raise ParameterError(f"parameter {name}: its comment must not contain '='")
        kwargs: dict[str, Any] = {}
        if m := _INTERVAL.search(comment):
            kwargs = dict(low=_parse_bound(m.group(2)), high=_parse_bound(m.group(3)),
                          low_open=m.group(1) == "(", high_open=m.group(4) == ")")
        elif m := _CHOICES.search(comment):
            kwargs = dict(choices=tuple(ast.literal_eval(f"[{m.group(1)}]")))
        if name == "seed" or name.endswith("_seed"):
            kwargs = dict(low=0, high=SEED_MAX)
        specs[name] = ParamSpec(name=name, default=default, help=comment, **kwargs)
    return specs


def parameters_cell(notebook: dict) -> str:
    """Source of the code cell tagged ``parameters`` of a notebook (as loaded JSON)."""
    cells = [c for c in notebook["cells"]
             if c["cell_type"] == "code" and "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(cells) != 1:
        raise ParameterError(f"a notebook needs exactly one cell tagged 'parameters'; found {len(cells)}")
    source = cells[0]["source"]
    return "".join(source) if isinstance(source, list) else source


def notebook_parameters(path: str | Path) -> dict[str, ParamSpec]:
    return parse_parameters_source(parameters_cell(json.loads(Path(path).read_text())))


def _number_from_text(value):
    """'1e3' -> 1000.0 (YAML 1.1 reads such exponents as strings); anything else unchanged."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _cast_scalar(spec: ParamSpec, kind: str, value, where: str):
    if kind == "any":
        return value
    if kind == "str or None":
        if value is None or isinstance(value, str):
            return value
    elif kind == "bool":
        if isinstance(value, bool):
            return value
    elif kind == "int":
        value = _number_from_text(value)
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, int) and not isinstance(value, bool):
            return int(value)
    elif kind == "float":
        value = _number_from_text(value)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif kind == "str":
        if isinstance(value, str):
            return value
    raise ParameterError(f"{where}: expected {spec.describe()}; got {value!r} ({type(value).__name__})")


def _check_range(spec: ParamSpec, value, where: str):
    if spec.choices is not None and value not in spec.choices:
        raise ParameterError(f"{where}: {value!r} is not accepted; expected {spec.describe()}")
    if spec.low is not None and isinstance(value, (int, float)):
        low_ok = value > spec.low if spec.low_open else value >= spec.low
        high_ok = value < spec.high if spec.high_open else value <= spec.high
        if not (low_ok and high_ok) or math.isnan(value):
            raise ParameterError(f"{where}: {value!r} is out of range; expected {spec.describe()}")


def check_value(spec: ParamSpec, value, figure: str = "") -> Any:
    """Cast ``value`` to the parameter's plain JSON type and check its range."""
    where = f"{figure}: parameter {spec.name}" if figure else f"parameter {spec.name}"
    if spec.element_kind is not None:
        if not isinstance(value, (list, tuple)):
            raise ParameterError(f"{where}: expected {spec.describe()}; got {value!r}")
        if spec.default and not value:  # an empty sweep failed inside a cell (max of nothing, an empty plot)
            raise ParameterError(f"{where}: expected at least one element, {spec.describe()}; got []")
        out = [_cast_scalar(spec, spec.element_kind, v, f"{where}[{i}]") for i, v in enumerate(value)]
        for i, v in enumerate(out):
            _check_range(spec, v, f"{where}[{i}]")
        return out
    out = _cast_scalar(spec, spec.kind, value, where)
    _check_range(spec, out, where)
    return out


def resolve_parameters(specs: dict[str, ParamSpec], overrides: dict[str, Any], figure: str = "") -> dict[str, Any]:
    """Checked overrides; an unknown name raises ParameterError listing the accepted ones."""
    resolved = {}
    for name, value in overrides.items():
        if name not in specs:
            hint = difflib.get_close_matches(name, specs, n=1)
            maybe = f" (did you mean {hint[0]!r}?)" if hint else ""
            raise ParameterError(f"{figure + ': ' if figure else ''}unknown parameter {name!r}{maybe}; "
                                 f"accepted: {', '.join(specs)}")
        resolved[name] = check_value(specs[name], value, figure)
    return resolved
