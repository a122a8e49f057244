"""MAD-5 at the smoke profile: sampling the last K models raises n_e / n_r."""

import numpy as np


def test_mad_5_last_k(smoke_build):
    record, _ = smoke_build("mad_5_last_k")
    assert record["experiments"] == ["MAD-5"]
    data = record["data"]
    ratio, se = np.array(data["ratio"]), np.array(data["ratio_se"])
    assert data["K"] == sorted(data["K"]) and data["K"][0] == 1
    # K = 1 is the plain fresh loop at lambda = 1: n_e / n_r about 1 + a (a = n_s / (n_r + n_s)), >= 1
    assert ratio[0] > 1
    assert ratio[-1] > ratio[0] + 3 * np.hypot(se[-1], se[0])
    # a longer memory mixes more slowly: the window moves out with K
    tau = np.array(data["mixing_time"])
    assert np.all(np.diff(tau) > 0)
    assert all(w[0] > record["params"]["burn_mixing"] * t for w, t in zip(data["window"], tau))
