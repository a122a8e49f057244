"""SIMS-4 at the smoke profile: the auxiliary set has the complement of the target share (by the classifier), the
share and per-group FID are recorded for every (seed, w), and the archive labels mark the group."""

import numpy as np

from madlib.data import load_sample_archive


def test_sims_4_distribution_shift(smoke_build):
    record, _ = smoke_build("sims_4_distribution_shift")
    assert record["experiments"] == ["SIMS-4"]
    assert {c["id"] for c in record["claims"]} == {
        "SIMS-4.auxiliary-alone-has-the-auxiliary-share", "SIMS-4.base-has-the-base-share",
        "SIMS-4.share-moves-to-the-target", "SIMS-4.group-fid-bowl"}
    params, data = record["params"], record["data"]
    n, ws = params["n_seeds"], params["ws"]
    expected = round((1 - params["target_share"]) * params["n_synthetic"]) / params["n_synthetic"]
    np.testing.assert_allclose(data["auxiliary_set_share"], expected)  # the classifier relabels what it picked by
    share = np.array(data["share"])
    assert share.shape == (n, len(ws)) and ((0 <= share) & (share <= 1)).all()
    archive = load_sample_archive(data["samples_archive"])
    for s in params["seeds"]:
        for j, w in enumerate(ws):
            stored = archive[f"w={w:g}/seed={s}"]
            assert set(np.unique(stored.labels)) <= {0, 1}
