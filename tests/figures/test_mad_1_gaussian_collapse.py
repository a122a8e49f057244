"""MAD-1 at the smoke profile: the Gaussian loop's numbers, not only that it ran."""

import numpy as np


def test_mad_1_gaussian_collapse(smoke_build):
    record, _ = smoke_build("mad_1_gaussian_collapse")
    assert record["experiments"] == ["MAD-1"]
    claims = {c["id"]: c for c in record["claims"]}
    # The closed-form checks are exact statements about the simulator: they must hold at any scale.
    for cid in ("MAD-1.supermartingale", "MAD-1.martingale", "MAD-1.random-walk"):
        assert claims[cid]["held"], claims[cid]
    t = np.array(record["data"]["generation"])
    for series in record["data"]["series"]:
        median = np.array(series["trace_ratio_median"])
        assert median[0] == 1.0  # G^0 = P_r
        # At t = 1 the mean trace ratio over runs is lambda up to Monte Carlo error.
        assert abs(series["trace_ratio_mean"][1] - series["lam"]) < 0.25 * series["lam"]
        assert median[-1] < median[0]  # collapse under way for every setting
        assert t[-1] == record["params"]["generations"]
