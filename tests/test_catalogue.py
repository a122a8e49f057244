"""The claims catalogue (madlib.figures.catalogue): what a claim states comes from notebooks/claims.yaml, stated once,
before the numbers; the committed figures read the margins and directions it registers."""

import json

import numpy as np
import pytest

from madlib.figures import FigureRecord
from madlib.figures.catalogue import CatalogueError, catalogue_entry, load_catalogue
from madlib.figures.manifest import load_manifest
from madlib.figures.paths import repo_root
from madlib.figures.params import notebook_parameters


def _write(tmp_path, text):
    path = tmp_path / "claims.yaml"
    path.write_text(text)
    return path


CATALOGUE = """
mad_1_gaussian_collapse:
  MAD-1.exact:
    text: "The variance falls over {generations} generations (braces kept: {{x}})"
    source: MAD Eq. 2
    quantity: "sigma_T / sigma_0 at n = {n_values[0]}"
    direction: less
    margin: 1.0
    paper_value: 0.5
  MAD-1.loop.{name}:
    text: "loop {name}"
    source: MAD Sec. 3
    condition: the loop ran
  MAD-1.loop.special.{name}:
    text: "special loop {name}"
    source: MAD Sec. 3
    condition: the special loop ran
"""


def _record(tmp_path, text=CATALOGUE, **namespace):
    entry = load_manifest()["mad_1_gaussian_collapse"]
    ns = {k: 0 for k in notebook_parameters(entry.notebook)} | {"profile": "smoke", "seed": 0} | namespace
    return FigureRecord.from_notebook("mad_1_gaussian_collapse", ns, ours="", catalogue=_write(tmp_path, text)), ns


def test_a_claim_reads_its_statement_margin_and_direction_from_the_catalogue(tmp_path):
    record, ns = _record(tmp_path, generations=7, n_values=[100, 1000])
    claim = record.compare("MAD-1.exact", values=[0.4, 0.5, 0.6])
    assert claim.text == "The variance falls over 7 generations (braces kept: {x})"
    assert claim.source == "MAD Eq. 2" and claim.paper_value == 0.5
    assert claim.comparison["quantity"] == "sigma_T / sigma_0 at n = 100"
    assert (claim.comparison["direction"], claim.comparison["margin"]) == ("less", 1.0)
    assert claim.level == "held"  # interval of [0.4, 0.5, 0.6] lies below 1
    ns["name"] = "a"  # a loop's variable, read when the claim is recorded
    assert record.claim("MAD-1.loop.a", measured={}, held=True).text == "loop a"
    ns["name"] = "b"
    special = record.claim("MAD-1.loop.special.b", measured={}, held=False)
    assert special.text == "special loop b" and special.condition == "the special loop ran"  # the more specific key


def test_a_statement_lives_in_one_place(tmp_path):
    record, _ = _record(tmp_path, generations=7, n_values=[100])
    with pytest.raises(CatalogueError, match="margin.*both in the notebook and in the claims catalogue"):
        record.compare("MAD-1.exact", values=[0.4, 0.5], margin=2.0)  # a margin moved after the numbers: refused
    with pytest.raises(CatalogueError, match="stated neither"):
        record.compare("MAD-1.unlisted", values=[0.4, 0.5])
    with pytest.raises(CatalogueError, match="slot 'generations'"):
        _missing_slot(tmp_path)
    plain = _record(tmp_path)[0]
    claim = plain.compare("MAD-2.unlisted", "stated here", source="s", quantity="q", direction="greater", margin=0.0,
                          values=[1.0, 2.0])
    assert claim.text == "stated here"  # a claim the catalogue does not list states everything itself


def _missing_slot(tmp_path):
    record, ns = _record(tmp_path, n_values=[1])
    del ns["generations"]
    record.compare("MAD-1.exact", values=[0.4, 0.5])


@pytest.mark.parametrize("entry, match", [
    ("{text: t, margin: big}", "margin must be a number"),
    ("{text: t, direction: up}", "direction must be"),
    ("{text: t, colour: red}", "unknown fields"),
    ("{text: 'x {a + 1}'}", "nothing is evaluated"),
    ("{text: 'x {a!r}'}", "nothing is evaluated"),
    ("{text: 'x {a.__class__}'}", "nothing is evaluated"),
])
def test_a_malformed_catalogue_is_refused_before_any_claim(tmp_path, entry, match):
    with pytest.raises(CatalogueError, match=match):
        load_catalogue(_write(tmp_path, f"fig:\n  X-1.a: {entry}\n"))


def test_two_equally_specific_keys_are_an_error():
    catalogue = {"f": {"X-1.{a}.b": {}, "X-1.a.{b}": {}}}
    with pytest.raises(CatalogueError, match="several catalogue keys"):
        catalogue_entry(catalogue, "f", "X-1.a.b")
    assert catalogue_entry(catalogue, "f", "X-1.z.b") == {} and catalogue_entry(catalogue, "g", "X-1.a.b") == {}


def test_every_committed_claim_reads_the_registered_margin_direction_and_source():
    catalogue = load_catalogue()
    figures = load_manifest()
    assert set(catalogue) <= set(figures)
    checked = 0
    for name in figures:
        path = repo_root() / "figures" / f"{name}.json"
        if not path.exists():
            continue
        for claim in json.loads(path.read_text())["claims"]:
            entry = catalogue_entry(catalogue, name, claim["id"])
            assert entry, f"{name}: claim {claim['id']} is not in notebooks/claims.yaml"
            comparison = claim.get("comparison")
            if comparison and "direction" in entry:
                assert comparison["direction"] == entry["direction"], claim["id"]
            if comparison and "margin" in entry:
                assert np.isclose(comparison["margin"], entry["margin"]), claim["id"]
            if "{" not in entry.get("source", "{"):
                assert claim["source"] == entry["source"].replace("{{", "{").replace("}}", "}"), claim["id"]
            checked += 1
    assert checked > 100
