"""SIMS-1 at the smoke profile: the loop's bookkeeping, a bound its two distances must respect, and the
guidance decomposition's identities."""

import numpy as np


def test_sims_1_gaussian_loop(smoke_build):
    record, _ = smoke_build("sims_1_gaussian_loop")
    assert record["experiments"] == ["SIMS-0", "SIMS-1"]
    claims = {c["id"]: c for c in record["claims"]}
    assert set(claims) == {"SIMS-1.madness-standard", "SIMS-1.prevention", "SIMS-1.mitigation", "SIMS-1.self-improvement",
                           "SIMS-0.self-improvement-some-budget", "SIMS-0.budget-interior-optimum", "SIMS-0.aux-along-base-error"}
    params, data = record["params"], record["data"]
    assert params["recipe"] == data["recipe"] == "toy-diffusion" and "toy-diffusion" in record["scale"]["ours"]
    ws, ds_values = np.array(data["w"]), data["ds"]
    assert ds_values == params["ds_values"] and list(ws) == sorted(params["w_values"])
    for ds in map(str, ds_values):
        curve = np.array(data["ratio_curve"][ds])  # [G, W]
        assert curve.shape == (params["generations"], len(ws))
        np.testing.assert_allclose(curve[0], 1.0)  # each w is normalised by its own generation 1
        lo, hi = np.array(data["ratio_conv_q05_q95"][ds])
        conv = np.array(data["ratio_conv"][ds])
        assert np.all(lo <= conv + 1e-12) and np.all(conv <= hi + 1e-12)
        # Gelbrich: W2 between two laws >= W2 between the Gaussians of their moments; the empirical W2
        # (50 points, exact OT) estimates the former, the figure's distance the latter (200 points)
        gaussian, empirical = np.array(data["e_dist"][ds]), np.array(data["e_dist_empirical"][ds])
        assert np.all(empirical > 0.8 * gaussian), (empirical, gaussian)
    assert data["g1"]["replicates"] == params["runs"] * len(ds_values)
    # the decomposition: w = 0 is the base alone at every budget; the gain is a squared cosine
    dec = data["decomposition"]
    w2 = np.array(dec["w2"])  # [L, B, W, R, K]
    assert w2.shape == (len(params["decomp_lrs"]), len(params["decomp_epochs"]), len(params["decomp_w"]),
                        params["decomp_runs"], params["decomp_seeds"])
    assert np.all(w2[:, :, 0] == w2[0, 0, 0])
    gain, cos = np.array(dec["gain"]), np.array(dec["cos_sys"])
    assert np.all((gain >= 0) & (gain <= 1 + 1e-9)) and np.all(np.abs(cos) <= 1 + 1e-9)
    assert np.all(np.array(dec["noise2"]) > 0)
    assert len(dec["steps"]) == params["steps"] - 1  # the toy sampler never evaluates t = 0
