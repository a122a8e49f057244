"""RDF-1..RDF-3 at the smoke profile: the trait model's numbers, not only that it ran."""

import numpy as np
import pytest
from scipy.stats import norm, truncnorm


def test_rdf_1_3_trait_truncation(smoke_build):
    record, _ = smoke_build("rdf_1_3_trait_truncation")
    assert record["experiments"] == ["RDF-1", "RDF-2", "RDF-3"]
    params, data = record["params"], record["data"]
    sigma_E = params["sigma_E"]
    claims = {c["id"]: c for c in record["claims"]}
    assert set(claims) >= {"RDF-1.variance-limit", "RDF-1.mean-shift", "RDF-1.direction", "RDF-2.directions",
                           "RDF-2.optimal-cfg", "RDF-2.cfg2.5-rate", "RDF-2.cfg1.0-negative", "RDF-3.diversity"}
    assert {f"RDF-3.near-start[d in {u}]" for u in params["distance_units"]} <= set(claims)
    # Theorem 1 and the deterministic Fig. 4b consequences hold at any scale.
    for cid, claim in claims.items():
        if cid.startswith(("RDF-1", "RDF-2")):
            assert claim["held"], claim

    # (a) c1, c2 against scipy's truncated normal, the limits against the closed forms.
    for th in data["theorem"]:
        alpha, beta = norm.ppf(th["r1"]), norm.ppf(1 - th["r2"])
        mean, var = truncnorm.stats(alpha, beta, moments="mv")
        assert th["c1"] == pytest.approx(abs(float(mean)), abs=1e-9)
        assert th["c2"] == pytest.approx(float(var), rel=1e-9)
        assert th["var_limit"] == pytest.approx(sigma_E**2 / (1 - th["c2"]))
        shift = np.sign(th["r1"] - th["r2"]) * th["c1"] * th["c2"] * sigma_E / np.sqrt(1 - th["c2"])
        assert th["shift_limit"] == pytest.approx(shift, abs=1e-12)
        assert th["rec_var_P"][-1] == pytest.approx(th["var_limit"], rel=1e-3)
        assert th["sim_late_var_P"] == pytest.approx(th["var_limit"], rel=0.05)
        assert abs(th["sim_late_shift"] - shift) < 0.1 * abs(shift) + 0.01

    # (b) Fig. 4b: the Sec. 4.2 mapping (not App. D.2.2's reversed list), drift directions, the sign problem.
    fig4b = {s["preset"]: s for s in data["fig4b"]}
    assert (fig4b["cfg7.5"]["r1"], fig4b["cfg7.5"]["r2"]) == (0.95, 0.0002)
    assert (fig4b["cfg1.0"]["r1"], fig4b["cfg1.0"]["r2"]) == (0.025, 0.675)
    assert np.all(np.diff(fig4b["cfg7.5"]["rec_mean"]) > 0) and np.all(np.diff(fig4b["cfg1.0"]["rec_mean"]) < 0)
    assert fig4b["cfg1.0"]["rec_mean"][0] == params["mu0"] and fig4b["cfg1.0"]["rec_mean"][2] < 0
    for s in fig4b.values():
        np.testing.assert_allclose(s["sim_mean"], s["rec_mean"], atol=0.06)
    assert claims["RDF-2.cfg2.5-rate"]["measured"]["ratio_closed_form"] == pytest.approx(0.304, abs=0.002)

    # (c) Fig. 25: mutation alone slows the drift a little; soft selection keeps diversity; d in the
    # phenotype's unit (sd < 1 here) is softer than d in standard deviations, so it drifts less.
    fig25 = {s["label"]: s for s in data["fig25"]}
    hard, mutation = fig25["hard truncation"], fig25["mutation only (recursion)"]
    assert params["mu0"] < mutation["mean"][-1] < hard["rec_mean"][-1]
    soft = {s["distance_unit"]: s for s in data["fig25"] if s["alpha"] is not None}
    assert set(soft) == set(params["distance_units"])
    for s in soft.values():
        assert s["var_P"][-1] > hard["var_P"][-1] and min(s["kept"]) > 0.5
    if {"sd", "phenotype"} <= set(soft):
        assert soft["phenotype"]["mean"][-1] < soft["sd"]["mean"][-1] < hard["mean"][-1]
