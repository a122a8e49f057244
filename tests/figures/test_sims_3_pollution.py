"""SIMS-3 at the smoke profile: G1 and a G2 per pollution share, standard training read at w = 0 and SIMS
SIMS read at a cell chosen on disjoint selection latents."""

import numpy as np


def test_sims_3_pollution(smoke_build):
    record, _ = smoke_build("sims_3_pollution")
    assert record["experiments"] == ["SIMS-3"]
    assert {c["id"] for c in record["claims"]} == {"SIMS-3.g1-bar", "SIMS-3.standard-degrades", "SIMS-3.sims-insensitive",
                                                   "SIMS-3.below-threshold-beats-g1"}
    params, data = record["params"], record["data"]
    n, shares = params["n_seeds"], params["shares"]
    assert not set(params["select_seeds"]) & set(params["report_seeds"])
    standard, sims = np.array(data["fid_standard"]), np.array(data["fid_sims"])
    assert standard.shape == sims.shape == (n, 1 + len(shares)) and np.isfinite(sims).all()
    for k, name in enumerate(["G1"] + [f"G2/share={p:g}" for p in shares]):
        report = np.array(data["grid"][name]["report"])
        assert report.shape == (n, len(params["budgets"]), 1 + len(params["ws"]))
        np.testing.assert_allclose(standard[:, k], report[:, 0, 0])  # standard training = the w = 0 column
        chosen = data["chosen"][name]
        b, j = params["budgets"].index(chosen["B"]), data["ws"].index(chosen["w"])
        np.testing.assert_allclose(sims[:, k], report[:, b, j])
        assert chosen["w"] > 0
