"""SIMS-5 at the smoke profile: one FID per (seed, synthetic-set size), decoder-only and interval variants, NFE of
the interval variants counted step by step, speeds measured."""

import numpy as np


def test_sims_5_ablations(smoke_build):
    record, _ = smoke_build("sims_5_ablations")
    assert record["experiments"] == ["SIMS-5"]
    assert {c["id"] for c in record["claims"]} == {"SIMS-5.larger-synthetic-set-helps", "SIMS-5.decoder-only-costs-little",
                                                   "SIMS-5.interval-costs-little"}
    params, data = record["params"], record["data"]
    n = params["n_seeds"]
    assert np.shape(data["fid_size"]) == (n, len(params["sizes"])) and np.shape(data["fid_interval"]) == (n, len(params["guide_from"]))
    steps = params["sample_steps"]
    assert data["nfe"]["base"] == 2 * steps - 1 and data["nfe"]["guide_from=0"] == 2 * (2 * steps - 1)
    assert data["nfe"]["guide_from=2"] == (2 * steps - 1) + 2 * (steps - 3) + 1
    k_full = params["sizes"].index(params["n_synthetic"])
    np.testing.assert_allclose(np.array(data["fid_interval"])[:, 0], np.array(data["fid_size"])[:, k_full])  # the same model and latents
    assert all(v > 0 for k, v in data["speed"].items() if k != "cost_vs_base")
