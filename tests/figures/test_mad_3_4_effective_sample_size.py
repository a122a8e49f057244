"""MAD-3/MAD-4 at the smoke profile: n_e / n_r on a small grid, the admissible threshold per lambda."""

import numpy as np


def test_mad_3_4_effective_sample_size(smoke_build):
    record, _ = smoke_build("mad_3_4_effective_sample_size")
    assert record["experiments"] == ["MAD-3", "MAD-4"]
    data = record["data"]
    ratio, ratio_se = np.array(data["ratio"], float), np.array(data["ratio_se"], float)  # [L, Nr, Ns]
    assert ratio.shape == (len(data["lam"]), len(data["n_r"]), len(data["n_s"]))
    assert data["lam"][0] == 1.0
    # lambda = 1: n_e >= n_r everywhere (within error), and about 1 + a at small a
    assert np.all(ratio[0] > 1 - 4 * ratio_se[0])
    # strong bias with n_s = 100 n_r: n_e < n_r
    assert np.all(ratio[-1][np.array(data["n_s"])[None, :] >= 100 * np.array(data["n_r"])[:, None]] < 1)
    # each limit averages a window after the burn-in of several mixing times
    first, tau = np.array(data["window_first"]), np.array(data["mixing_time"])
    assert np.all(first > record["params"]["burn_mixing"] * tau[:1] - 1)
    threshold = np.array([[np.inf if x is None else x for x in row] for row in data["threshold"]])  # [L, Nr]
    assert np.all(np.isinf(threshold[0])) and np.all(np.isfinite(threshold[-1]))
    claims = {c["id"]: c for c in record["claims"]}
    assert claims["MAD-4.unbiased-always-admissible"]["held"]
