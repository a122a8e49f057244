"""CASD-0/1 at the smoke profile: the Table 1 grid and the Fig. 2 sweep hold every (method, source, n, m, seed), DM
has one cell per n (it never depends on the source), the sources are measured, and the archive holds the samples."""

import numpy as np

from madlib.data import load_sample_archive


def test_casd_1_effective_data(smoke_build):
    record, _ = smoke_build("casd_1_effective_data")
    assert record["experiments"] == ["CASD-0", "CASD-1"]
    assert {c["id"] for c in record["claims"]} == {
        "CASD-1.sources", "CASD-1.casd-beats-dm", "CASD-1.biased-source-hurts-sda-not-casd",
        "CASD-1.small-n-matches-larger-dm", "CASD-1.casd-improves-with-m", "CASD-1.casd-beats-sda-over-m"}
    params, data = record["params"], record["data"]
    seeds, n_values, m = params["seeds"], params["n_values"], params["m"]
    assert len(seeds) == params["n_seeds"] >= 2
    fid = data["fid"]
    assert sorted(k for k in fid if k.startswith("dm/")) == sorted(f"dm/none/n={n}/m=0" for n in n_values)
    extra = [mm for mm in params["m_values"] if mm not in (0, m)]
    assert len(fid) == len(n_values) * 5 + 4 * len(extra)
    for key, values in fid.items():
        assert np.shape(values) == (len(seeds),) and np.all(np.isfinite(values))
        # real training images are closer to the held-out split than any model's samples at this budget
        assert min(values) > data["floor"]["fid"], key
    for name in ("good", "biased"):
        assert np.shape(data["sources"][name]["fid"]) == (len(seeds),)
    assert data["sources"]["biased"]["spec"]["dataset"] == params["biased_dataset"] != params["dataset"]
    # every cell of a seed was measured on eval_samples images against the whole held-out split
    cell = data["cells"][f"casd/good/n={n_values[0]}/m={m}"][0]["metrics"]
    assert cell["n_fake"] == params["eval_samples"] and abs(sum(cell["class_shares"]) - 1) < 1e-9
    archive = load_sample_archive(data["samples_archive"])
    assert len(archive) == len(fid) * len(seeds) + 2 * len(seeds)
    shown = archive[f"casd/biased/n={n_values[-1]}/m={m}/seed={seeds[-1]}"]
    assert shown.images.shape == (params["archive_per_set"], 1, params["image_size"], params["image_size"])
    assert shown.images.dtype == np.uint8
