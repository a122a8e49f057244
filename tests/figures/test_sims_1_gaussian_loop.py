"""SIMS-1 at the smoke profile: the loop's bookkeeping and a bound its two distances must respect."""

import numpy as np


def test_sims_1_gaussian_loop(smoke_build):
    record, _ = smoke_build("sims_1_gaussian_loop")
    assert record["experiments"] == ["SIMS-0", "SIMS-1"]
    claims = {c["id"]: c for c in record["claims"]}
    assert set(claims) == {"SIMS-1.madness-standard", "SIMS-1.prevention", "SIMS-1.mitigation", "SIMS-1.self-improvement"}
    params, data = record["params"], record["data"]
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
