"""SIMS-5 at the smoke profile: each synthetic-set size at its own best B (chosen on the selection latents), decoder-only
and interval variants at n_s = n_synthetic, NFE of the interval variants counted step by step, speeds measured; the
levels: both cost ablations are paired differences to full SIMS (the share of its gain kept) and read inconclusive where
full SIMS does not beat the base, and the size claim agrees with the t intervals recomputed from the JSON's FIDs."""

import numpy as np

from tests.figures.levels import check_level, sims_base_bar, t_interval


def test_sims_5_ablations(smoke_build):
    record, _ = smoke_build("sims_5_ablations")
    assert record["experiments"] == ["SIMS-5"]
    claims = {c["id"]: c for c in record["claims"]}
    assert set(claims) == {"SIMS-5.larger-synthetic-set-helps", "SIMS-5.decoder-only-costs-little", "SIMS-5.decoder-only-is-cheaper",
                           "SIMS-5.interval-costs-little"}
    params, data = record["params"], record["data"]
    n, sizes, budgets = params["n_seeds"], params["sizes"], params["budgets"]
    assert np.shape(data["fid_size"]) == (n, len(sizes)) and np.shape(data["fid_interval"]) == (n, len(params["guide_from"]))
    steps = params["sample_steps"]
    assert data["nfe"]["base"] == 2 * steps - 1 and data["nfe"]["guide_from=0"] == 2 * (2 * steps - 1)
    assert data["nfe"]["guide_from=2"] == (2 * steps - 1) + 2 * (steps - 3) + 1
    # each size at the B of lowest mean selection FID, never a report number
    select = np.array(data["fid_select_by_size"])  # [sizes, S, B]
    for k, size in enumerate(sizes):
        assert data["best_B"][str(size)] == budgets[int(np.argmin(select[k].mean(0)))]
    k_full = sizes.index(params["n_synthetic"])
    np.testing.assert_allclose(np.array(data["fid_interval"])[:, 0], np.array(data["fid_size"])[:, k_full])  # the same model and latents
    assert all(v > 0 for k, v in data["speed"].items() if k != "cost_vs_base")

    fid_size, base, floor = np.array(data["fid_size"]), np.array(data["fid_base"]), data["floor"]["fid"]
    full, decoder, interval = fid_size[:, k_full], np.array(data["fid_decoder_only"]), np.array(data["fid_interval"])
    np.testing.assert_allclose(data["plateau"]["fid_base"], base)  # the plateau control is paired with the base
    bar = sims_base_bar(base, floor, data["plateau"]["fid_continued"])
    helps = bool(t_interval(base - full)[0] > 0)
    check_level(claims["SIMS-5.decoder-only-costs-little"], (base - decoder) - 0.85 * (base - full), "greater", 0.0, [bar, helps])
    check_level(claims["SIMS-5.interval-costs-little"], (base - interval[:, -1]) - 0.9 * (base - interval[:, 0]), "greater", 0.0,
                [bar, helps, params["guide_from"][-1] > 0])
    if bar and not helps:
        assert claims["SIMS-5.decoder-only-costs-little"]["level"] == "inconclusive"
    cost = data["speed"]["cost_vs_base"]
    assert claims["SIMS-5.decoder-only-is-cheaper"]["level"] == ("held" if cost["sims_decoder_only"] < cost["sims"] else "not held")
    per_doubling = -np.diff(fid_size, axis=1) / np.diff(np.log2(sizes))
    parts = [t_interval(fid_size[:, 0] - fid_size[:, -1]), t_interval(per_doubling[:, 0] - per_doubling[:, -1])]
    low, high = min(p[0] for p in parts), min(p[1] for p in parts)
    larger = claims["SIMS-5.larger-synthetic-set-helps"]
    np.testing.assert_allclose([larger["comparison"]["interval"]["low"], larger["comparison"]["interval"]["high"]], [low, high])
