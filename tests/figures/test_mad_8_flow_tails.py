"""MAD-8 at the smoke profile: the flow loop's records, not only that it ran."""

import numpy as np


def test_mad_8_flow_tails(smoke_build):
    record, _ = smoke_build("mad_8_flow_tails")
    assert record["experiments"] == ["MAD-8"]
    params = record["params"]
    claims = {c["id"]: c for c in record["claims"]}
    assert {f"MAD-8.tails-lost-lambda-{lam}" for lam in params["lam_values"]} <= set(claims)
    assert "MAD-8.faster-with-bias" in claims
    data = record["data"]
    assert data["generation"] == list(range(1, params["generations"] + 1))
    # The exact tail regions hold P_r-mass alpha: the test-set estimate of the ratio is 1 up to sampling error.
    for alpha, ratio in data["p_r_tail_ratio_on_test_set"].items():
        n_test = params["n_test"]
        assert abs(ratio - 1) < 4 * np.sqrt((1 - float(alpha)) / (float(alpha) * n_test)) + 1e-9
    assert abs(data["entropy_of_p_r"] - 2.491) < 0.1  # 0.5 log(2 pi e) + 0.5 log(pi e)
    for series in data["series"]:
        assert len(series["tail_ratio_mean"]) == params["generations"]
        assert np.all(np.array(series["tail_ratio_min"]) >= 0)
    # Generation 1 trains on the same real data for every lambda (same seed): identical records.
    first = {s["lam"]: s["tail_ratio_mean"][0] for s in data["series"] if s["alpha"] == params["tail_levels"][0]}
    assert len(set(first.values())) == 1
    for v in data["validation"]:
        assert np.all(np.isfinite(v["val_nll_median"]))
