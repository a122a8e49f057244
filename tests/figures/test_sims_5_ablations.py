"""SIMS-5 at the smoke profile: one FID per (seed, synthetic-set size), decoder-only and interval variants, NFE of
the interval variants counted step by step, speeds measured; the levels: the two cost ablations are read only where
full SIMS beats the base (else not testable), as shares of full SIMS's excess over the floor against stated margins,
and the size claim agrees with the t intervals recomputed from the JSON's FIDs."""

import numpy as np

from tests.figures.levels import level, t_interval


def test_sims_5_ablations(smoke_build):
    record, _ = smoke_build("sims_5_ablations")
    assert record["experiments"] == ["SIMS-5"]
    claims = {c["id"]: c for c in record["claims"]}
    assert set(claims) == {"SIMS-5.larger-synthetic-set-helps", "SIMS-5.decoder-only-costs-little", "SIMS-5.decoder-only-is-cheaper",
                           "SIMS-5.interval-costs-little"}
    params, data = record["params"], record["data"]
    assert record["scale"]["paper"] and record["scale"]["differences"]
    n = params["n_seeds"]
    assert np.shape(data["fid_size"]) == (n, len(params["sizes"])) and np.shape(data["fid_interval"]) == (n, len(params["guide_from"]))
    steps = params["sample_steps"]
    assert data["nfe"]["base"] == 2 * steps - 1 and data["nfe"]["guide_from=0"] == 2 * (2 * steps - 1)
    assert data["nfe"]["guide_from=2"] == (2 * steps - 1) + 2 * (steps - 3) + 1
    k_full = params["sizes"].index(params["n_synthetic"])
    np.testing.assert_allclose(np.array(data["fid_interval"])[:, 0], np.array(data["fid_size"])[:, k_full])  # the same model and latents
    assert all(v > 0 for k, v in data["speed"].items() if k != "cost_vs_base")

    fid_size, base, floor = np.array(data["fid_size"]), np.array(data["fid_base"]), data["floor"]["fid"]
    full, decoder, interval = fid_size[:, k_full], np.array(data["fid_decoder_only"]), np.array(data["fid_interval"])
    bar = bool(base.mean() <= 2 * floor)
    low, _ = t_interval(base - full)
    helps = bool(low > 0 and np.all(full > floor))
    for cid in ("SIMS-5.decoder-only-costs-little", "SIMS-5.interval-costs-little"):
        assert [p["met"] for p in claims[cid]["preconditions"] if p["name"] == "full SIMS beats the base"] == [helps], cid
        if not (bar and helps):
            assert claims[cid]["level"] == "not testable", cid
        else:
            assert claims[cid]["level"] != "not testable", cid
    decoder_claim = claims["SIMS-5.decoder-only-costs-little"]
    assert decoder_claim["comparison"]["margin"] == 0.15 and decoder_claim["comparison"]["direction"] == "less"
    if bar and helps:
        low, high = t_interval((decoder - full) / (full - floor))
        assert decoder_claim["level"] == level(low, high, "less", 0.15)
        low, high = t_interval((interval[:, -1] - interval[:, 0]) / (full - floor))
        assert claims["SIMS-5.interval-costs-little"]["level"] == level(low, high, "less", 0.10)
    cost = data["speed"]["cost_vs_base"]
    assert claims["SIMS-5.decoder-only-is-cheaper"]["level"] == ("held" if cost["sims_decoder_only"] < cost["sims"] else "not held")
    # a larger set helps with diminishing returns: the less favourable of the two paired intervals decides
    sizes = params["sizes"]
    per_doubling = -np.diff(fid_size, axis=1) / np.diff(np.log2(sizes))
    parts = [t_interval(fid_size[:, 0] - fid_size[:, -1]), t_interval(per_doubling[:, 0] - per_doubling[:, -1])]
    low, high = min(p[0] for p in parts), min(p[1] for p in parts)
    larger = claims["SIMS-5.larger-synthetic-set-helps"]
    assert np.isclose(larger["comparison"]["interval"]["low"], low) and np.isclose(larger["comparison"]["interval"]["high"], high)
    assert larger["level"] == (level(low, high, "greater", 0.0) if bar else "not testable")
