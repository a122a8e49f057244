"""SIMS-3 at the smoke profile: G1 and a G2 per pollution share, standard training read as each base and SIMS at the one
cell chosen for G1 on sims_2's selection latents; the levels: G1's bar gates every claim, the slopes recomputed from the
JSON give each level, insensitivity is read only where standard training degrades, and the threshold claim only at a
smallest share below the paper's thresholds."""

import numpy as np

from tests.figures.levels import check_level, sims_base_bar


def test_sims_3_pollution(smoke_build):
    record, _ = smoke_build("sims_3_pollution")
    assert record["experiments"] == ["SIMS-3"]
    claims = {c["id"]: c for c in record["claims"]}
    assert set(claims) == {"SIMS-3.g1-bar", "SIMS-3.standard-degrades", "SIMS-3.sims-insensitive", "SIMS-3.below-threshold-beats-g1"}
    params, data = record["params"], record["data"]
    n, shares = params["n_seeds"], params["shares"]
    standard, sims = np.array(data["fid_standard"]), np.array(data["fid_sims"])
    assert standard.shape == sims.shape == (n, 1 + len(shares)) and np.isfinite(sims).all()
    assert data["chosen"]["w"] > 0 and data["chosen"]["B"] in params["budgets"]
    for k, p in enumerate([0.0] + shares):
        np.testing.assert_allclose(standard[:, k], [r["fid"] for r in data["report"][f"share={p:g}"]["standard"]])
    assert len({tuple(row) for row in standard.T}) == 1 + len(shares)  # G1 and every G2 are different models

    np.testing.assert_allclose(data["plateau"]["fid_g1"], standard[:, 0])  # sims_2's base on the same latents: G1
    bar = sims_base_bar(standard[:, 0], data["floor"]["fid"], data["plateau"]["fid_continued"])
    assert claims["SIMS-3.g1-bar"]["level"] == ("held" if bar else "not held")
    x = [0.0] + shares
    slope = np.array([np.polyfit(x, row, 1)[0] for row in standard])  # per seed, independently of the notebook's vectorised fit
    slope_sims = np.array([np.polyfit(x, row, 1)[0] for row in sims])
    check_level(claims["SIMS-3.standard-degrades"], slope, "greater", 0.0, [bar])
    degrades = claims["SIMS-3.standard-degrades"]["level"] == "held"
    check_level(claims["SIMS-3.sims-insensitive"], slope_sims - slope / 2, "less", 0.0, [bar, degrades])
    check_level(claims["SIMS-3.below-threshold-beats-g1"], standard[:, 0] - sims[:, 1], "greater", 0.0, [bar, shares[0] <= 15 / 70])
