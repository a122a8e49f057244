"""CASD-2 at the smoke profile: one DM and an SDA and a CASD per support case, class histograms that are
distributions over the ten digits, the real histogram equal to the real set's labels, and the archive."""

import numpy as np

from madlib.data import load_sample_archive


def test_casd_2_mismatched_support(smoke_build):
    record, _ = smoke_build("casd_2_mismatched_support")
    assert record["experiments"] == ["CASD-2"]
    assert {c["id"] for c in record["claims"]} == {
        "CASD-2.sources", "CASD-2.casd-beats-dm-and-sda", "CASD-2.sda-needs-the-real-support",
        "CASD-2.casd-follows-real-classes", "CASD-2.sda-pulled-toward-source"}
    params, data = record["params"], record["data"]
    seeds = params["seeds"]
    cases = ("contains", "intersects", "inside")
    assert set(data["fid"]) == {"dm/none"} | {f"{m}/{c}" for m in ("sda", "casd") for c in cases}
    for key, fid in data["fid"].items():
        assert np.shape(fid) == (len(seeds),) and min(fid) > data["floor"]["fid"], key
        shares = np.asarray(data["class_shares"][key])
        assert shares.shape == (len(seeds), 10)
        np.testing.assert_allclose(shares.sum(1), 1.0)
    # P_r: the real set is the first n_real images of digits 0-7, equal per class
    p_real = np.asarray(data["p_real"])
    expected = np.zeros(10)
    expected[params["real_classes"]] = 1 / len(params["real_classes"])
    np.testing.assert_allclose(p_real, expected)
    # the case-1 source trains on the whole split (the same cache entry as CASD-1's good source); the others on subsets
    assert data["sources"]["contains"]["classes"] is None
    assert data["sources"]["intersects"]["classes"] == params["intersects_classes"]
    assert data["sources"]["inside"]["classes"] == params["inside_classes"]
    archive = load_sample_archive(data["samples_archive"])
    assert len(archive) == (1 + 2 * len(cases)) * len(seeds) + len(cases) * len(seeds)
    shown = archive[f"casd/intersects/seed={seeds[0]}"]
    assert shown.images.shape == (params["archive_per_set"], 1, params["image_size"], params["image_size"])
    assert set(np.unique(shown.labels)) <= set(range(10))
