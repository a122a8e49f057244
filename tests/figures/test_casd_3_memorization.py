"""CASD-3 at the smoke profile: recall, coverage, nearest-image SSIM, near-copy share and the LeNet-feature
distance for DM, SDA and CASD per seed, within their ranges, with the real held-out floors and the archive."""

import numpy as np

from madlib.data import load_sample_archive


def test_casd_3_memorization(smoke_build):
    record, _ = smoke_build("casd_3_memorization")
    assert record["experiments"] == ["CASD-3"]
    assert {c["id"] for c in record["claims"]} == {
        "CASD-3.dm-replicates", "CASD-3.casd-reduces-replication", "CASD-3.casd-farther-from-training-images",
        "CASD-3.casd-raises-recall-and-coverage", "CASD-3.sda-takes-the-synthetic-style"}
    params, data = record["params"], record["data"]
    seeds = params["seeds"]
    for method in ("dm", "sda", "casd"):
        v = data["values"][method]
        for q in ("recall", "coverage", "mean_nearest_ssim", "near_copy_share"):
            assert np.shape(v[q]) == (len(seeds),)
            assert all(-1.0 <= x <= 1.0 for x in v[q]), (method, q)
        assert all(x >= 0 for x in v["mean_nearest_feature_distance"])
        ssim = np.asarray(data["nearest_ssim_first_seed"][method])
        assert ssim.shape == (params["eval_samples"],)
        # the mean of the per-sample nearest SSIM is the recorded mean, and the near-copy share its tail
        np.testing.assert_allclose(ssim.mean(), v["mean_nearest_ssim"][0])
        np.testing.assert_allclose((ssim >= params["near_copy_ssim"]).mean(), v["near_copy_share"][0])
    floor = data["floor"]
    assert 0 < floor["mean_nearest_ssim"] < 1 and 0 < floor["coverage"] <= 1
    archive = load_sample_archive(data["samples_archive"])
    assert set(archive) == {f"{m}/seed={s}" for m in ("dm", "sda", "casd") for s in seeds}
