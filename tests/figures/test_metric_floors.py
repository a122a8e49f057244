"""Metric floors at the smoke profile: the real-vs-real numbers, not only that it ran."""

import numpy as np


def test_metric_floors(smoke_build):
    record, _ = smoke_build("metric_floors")
    assert record["experiments"] == ["MAD-9", "MAD-12", "CASD-3"]
    params, data = record["params"], record["data"]
    claims = {c["id"]: c for c in record["claims"]}
    assert set(claims) == {"floors.extractor-accuracy", "floors.fid-decreases-with-n", "floors.precision-recall-near-1",
                           "floors.density-coverage", "floors.torch-fidelity-agrees", "floors.style-shift-above-floor"}
    # exact statements about the suite: they hold at any scale and with any extractor
    assert claims["floors.torch-fidelity-agrees"]["held"], claims["floors.torch-fidelity-agrees"]
    assert claims["floors.style-shift-above-floor"]["held"]
    # the smoke profile uses the tiny extractor: its verdict is recorded, not assumed
    acc = claims["floors.extractor-accuracy"]["measured"]["heldout_accuracy"]
    assert params["extractor"] == "tiny" and acc == data["heldout_accuracy"] and 0.1 < acc < 1.0
    assert claims["floors.extractor-accuracy"]["held"] == (acc >= params["accuracy_target"])

    n = params["sample_sizes"]
    assert data["sample_sizes"] == n
    for name in ("fid", "kid", "precision", "recall", "density", "coverage"):
        values = np.array(data["values"][name])
        assert values.shape == (len(n), params["repeats"])
        assert np.allclose(values.mean(1), data["mean"][name])
    fid = np.array(data["mean"]["fid"])
    assert np.all(fid > 0) and fid[0] > fid[-1]
    for name in ("precision", "recall", "coverage"):
        assert np.all((np.array(data["values"][name]) >= 0) & (np.array(data["values"][name]) <= 1))
    # E[coverage] of one distribution, Naeem et al. 2020: 1 - prod_j (n - j) / (2n - j)
    k = params["k"]
    expected = [1 - np.prod([(m - j) / (2 * m - j) for j in range(1, k + 1)]) for m in n]
    assert np.allclose(data["coverage_expected"], expected)
    tf = data["torch_fidelity_at_n_max"]
    assert tf["n_real"] == tf["n_fake"] == n[-1] and tf["k"] == k
