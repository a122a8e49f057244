"""The parameters-cell grammar and the checks the runner applies before any notebook runs."""

import math

import pytest

from madlib.figures.params import ParameterError, parse_parameters_source, resolve_parameters

SOURCE = '''profile = "default"  # which profile; in {"smoke", "default", "paper", "custom"}
out_dir = None  # output folder
progress = True  # show bars
seed = 0  # seed; in [0, inf)
runs = 100  # runs per setting; in [2, inf)
lam = 0.5  # bias; in (0, 1]
lam_values = [1.0, 0.9]  # biases; in (0, 1]
sizes = [10, 100]  # sizes; in [2, inf)
label = "x#y"  # a string holding a hash
'''


def test_parse_types_ranges_and_choices():
    specs = parse_parameters_source(SOURCE)
    assert list(specs) == ["profile", "out_dir", "progress", "seed", "runs", "lam", "lam_values", "sizes", "label"]
    assert specs["profile"].choices == ("smoke", "default", "paper", "custom")
    assert (specs["lam"].low, specs["lam"].high, specs["lam"].low_open, specs["lam"].high_open) == (0, 1, True, False)
    assert specs["runs"].high == math.inf and specs["runs"].kind == "int"
    assert specs["lam_values"].element_kind == "float"
    assert specs["label"].default == "x#y" and specs["label"].help == "a string holding a hash"


def test_casts_to_plain_json_types():
    specs = parse_parameters_source(SOURCE)
    got = resolve_parameters(specs, {"runs": 1000.0, "lam": 1, "lam_values": (1, "0.5"), "sizes": ["1e3"],
                                     "out_dir": "/tmp/x", "profile": "paper"})
    assert got == {"runs": 1000, "lam": 1.0, "lam_values": [1.0, 0.5], "sizes": [1000], "out_dir": "/tmp/x",
                   "profile": "paper"}
    assert type(got["runs"]) is int and type(got["lam"]) is float


@pytest.mark.parametrize("overrides, match", [
    ({"rusn": 5}, r"unknown parameter 'rusn' \(did you mean 'runs'\?\); accepted: profile, out_dir"),
    ({"runs": 1}, r"fig: parameter runs: 1 is out of range; expected int in \[2, inf\)"),
    ({"runs": 2.5}, r"parameter runs: expected int"),
    ({"runs": True}, r"parameter runs: expected int"),
    ({"lam": 0.0}, r"parameter lam: 0.0 is out of range; expected float in \(0, 1\]"),
    ({"lam_values": [1.0, 1.5]}, r"parameter lam_values\[1\]: 1.5 is out of range"),
    ({"lam_values": 0.5}, r"parameter lam_values: expected list of float"),
    ({"progress": "yes"}, r"parameter progress: expected bool"),
    ({"profile": "fast"}, r"parameter profile: 'fast' is not accepted"),
    ({"lam_values": []}, r"parameter lam_values: expected at least one element, list of float in \(0, 1\]; got \[\]"),
    ({"seed": 1e30}, r"parameter seed: 10+19884624838656 is out of range; expected int in \[0, 4294967295\]"),
    ({"seed": 2**32}, r"parameter seed: 4294967296 is out of range; expected int in \[0, 4294967295\]"),
    ({"seed": -1}, r"parameter seed: -1 is out of range"),
    ({"seed": "7.5"}, r"parameter seed: expected int in \[0, 4294967295\]"),
])
def test_bad_values_are_named(overrides, match):
    with pytest.raises(ParameterError, match=match):
        resolve_parameters(parse_parameters_source(SOURCE), overrides, "fig")


def test_cell_grammar_errors():
    with pytest.raises(ParameterError, match="only 'name = literal' assignments"):
        parse_parameters_source("import numpy\n")
    with pytest.raises(ParameterError, match="must be a literal"):
        parse_parameters_source("x = 2 * 3\n")
    with pytest.raises(ParameterError, match="must not contain '='"):
        parse_parameters_source("x = 2  # x = two\n")


def test_seeds_take_32_bits_and_lists_may_stay_empty_only_when_their_default_is():
    specs = parse_parameters_source(SOURCE + "report_seed = 1  # another stream; in [0, inf)\nextra = []  # anything\n")
    assert resolve_parameters(specs, {"seed": 2**32 - 1, "report_seed": 0, "extra": []}) == {
        "seed": 2**32 - 1, "report_seed": 0, "extra": []}
    with pytest.raises(ParameterError, match=r"parameter report_seed: 4294967296 is out of range"):
        resolve_parameters(specs, {"report_seed": 2**32})
