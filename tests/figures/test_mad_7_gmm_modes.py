"""MAD-7 at the smoke profile: the GMM loop's numbers, not only that it ran."""

import numpy as np


def test_mad_7_gmm_modes(smoke_build):
    record, _ = smoke_build("mad_7_gmm_modes")
    assert record["experiments"] == ["MAD-7"]
    claims = {c["id"]: c for c in record["claims"]}
    assert set(claims) == {"MAD-7.modes-lost", "MAD-7.recall-tracks-better", "MAD-7.mode-variance-tracks-better"}
    data = record["data"]
    t = np.array(data["generation"])
    assert t[0] == 0 and t[-1] == record["params"]["generations"]
    covered = np.array(data["measures"]["covered"]["mean"])
    recall = np.array(data["measures"]["recall"]["median"])
    # G^0 = P_r: every mode covered, recall of P_r against a fresh P_r sample close to 1.
    assert covered[0] == 25 and recall[0] > 0.9
    # The loop loses modes and recall with them, even at the smoke scale (n_s = 500, 60 generations).
    assert covered[-1] < 25 and recall[-1] < recall[0] - 0.2
    assert claims["MAD-7.modes-lost"]["held"], claims["MAD-7.modes-lost"]
    rho = claims["MAD-7.recall-tracks-better"]["measured"]["median_rho"]
    assert rho["recall"] > 0.5  # recall rises and falls with the covered modes
    live = np.array(data["live_components"]["mean"])
    assert live[0] == 25 and np.all(np.diff(live) <= 0)  # a dead component never revives under the warm start
