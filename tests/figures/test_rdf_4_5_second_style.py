"""RDF-4/5 on the second style at the smoke profile: D0 is drawn from the held-out split M0 never saw, the best
fixed CFG is the grid's lowest FID_K, and every reported chain starts each fine-tune from M0."""

import numpy as np

from madlib.data import load_sample_archive


def test_rdf_4_5_second_style(smoke_build):
    record, _ = smoke_build("rdf_4_5_second_style")
    assert record["experiments"] == ["RDF-4", "RDF-5"]
    assert {c["id"] for c in record["claims"]} == {
        "RDF-4.best-cfg-differs-between-styles", "RDF-4.best-cfg-does-not-transfer", "RDF-5.redifine-below-baseline-second-style",
        "RDF-5.redifine-close-to-best-second-style", "RDF-5.each-half-weaker-second-style"}
    params, data = record["params"], record["data"]
    assert params["d0_split"] == "test" and params["m0_settings"]["dataset"] == params["d0_dataset"]  # M0 saw only the train split
    grid = params["cfg_grid"]
    assert data["best_cfg"] == grid[int(np.argmin([data["selection"][f"cfg={c:g}"]["fid"][-1] for c in grid]))]
    digests = {d for chain in list(data["selection"].values()) + list(data["report"].values()) for d in chain["start_digest"]}
    assert len(digests) == 1  # one M0 behind every fine-tune
    assert data["report"]["digits-best"]["settings"]["cfg_scale"] == params["digits_best_cfg"]
    archive = load_sample_archive(data["samples_archive"])
    assert len(archive) == 1 + (len(grid) + len(data["report"])) * params["iterations"]
