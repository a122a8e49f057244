"""MAD-2 at the smoke profile: every n_ini reaches one limit, and the window follows the mixing time."""

import numpy as np


def test_mad_2_fresh_convergence(smoke_build):
    record, _ = smoke_build("mad_2_fresh_convergence")
    assert record["experiments"] == ["MAD-2"]
    params, limit = record["params"], record["data"]["limit"]
    # n_r = 100, n_s = 900: a = 0.9, mixing time max(1 / (1 - a^2), 1 / (1 - a)) = 10 at lambda = 1
    assert abs(params["mixing_time"] - 10.0) < 1e-9
    assert limit["window"][0] > params["burn_mixing"] * params["mixing_time"]
    per_n_ini, se = np.array(limit["per_n_ini"]), np.array(limit["per_n_ini_se"])  # [N_ini, L]
    pooled = np.array(limit["pooled"])
    # the limit does not depend on n_ini (a generous bound: 5 s.e. of the pair)
    assert np.all(np.abs(per_n_ini - pooled) < 5 * np.sqrt(2) * se)
    # lambda < 1 moves the limit away from P_r
    lam = limit["lam"]
    assert lam[0] == 1.0 and pooled[1] > pooled[0]
    # trajectories start apart (n_ini = 10 vs 1000) and end together
    first = {s["n_ini"]: s["w2_mean"][0] for s in record["data"]["series"] if s["lam"] == 1.0}
    assert first[10] > 2 * first[1000]
    claims = {c["id"]: c for c in record["claims"]}
    assert claims["MAD-2.limit-independent-of-n-ini"]["held"]
