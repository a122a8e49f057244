"""SIMS-2 at the smoke profile: the (B, w) grid is paired (w = 0 is one chain for every B), the chosen cell was
selected on latents disjoint from those that report it, the Fig. 1 triple is read off the report grid, and the levels:
the base-model bar gates every claim that SIMS improves the base, and each level agrees with the t interval over seeds
recomputed from the JSON's numbers against the claim's margin."""

import numpy as np

from madlib.data import load_sample_archive

from tests.figures.levels import level, t_interval


def test_sims_2_self_improvement(smoke_build):
    record, _ = smoke_build("sims_2_self_improvement")
    assert record["experiments"] == ["SIMS-0", "SIMS-2"]
    claims = {c["id"]: c for c in record["claims"]}
    assert set(claims) == {
        "SIMS-2.base-bar", "SIMS-2.bowl-in-w", "SIMS-2.interior-B", "SIMS-2.small-w-small-B",
        "SIMS-2.fig1-finetune-on-own-samples-is-worse", "SIMS-2.fig1-sims-is-better", "SIMS-2.relative-gain"}
    params, data = record["params"], record["data"]
    assert record["scale"]["paper"] and record["scale"]["differences"] and "cache_dir" not in params
    seeds, budgets, ws = params["seeds"], params["budgets"], params["ws"]
    assert not set(params["select_seeds"]) & set(params["report_seeds"])
    for split in ("select", "report"):
        fid = np.array(data["grid"][split]["fid"])
        assert fid.shape == (len(seeds), len(budgets), len(ws)) and np.isfinite(fid).all()
        j0 = ws.index(0.0)
        assert (fid[:, :, j0] == fid[:, :1, j0]).all()  # the base model: one chain shared by every B
    select, report = (np.array(data["grid"][s]["fid"]) for s in ("select", "report"))
    assert not np.array_equal(select, report)  # other latents, other numbers
    chosen = data["chosen"]
    b, j = budgets.index(chosen["B"]), ws.index(chosen["w"])
    assert chosen["w"] > 0
    assert np.isclose(chosen["fid_reported"], report[:, b, j].mean())
    assert np.isclose(chosen["fid_selected"], select[:, b, j].mean())
    np.testing.assert_allclose(data["triple"]["sims"], report[:, b, j])
    np.testing.assert_allclose(data["triple"]["auxiliary"], report[:, b, ws.index(-1.0)])
    assert data["throughput"]["nfe"]["sims"] == 2 * data["throughput"]["nfe"]["base"]
    archive = load_sample_archive(data["samples_archive"])
    assert {f"base/seed={s}" for s in seeds} <= set(archive)

    # levels: the bar gates every claim that SIMS improves the base; Fig. 1's "worse" does not need it
    floor = data["floor"]["fid"]
    base, aux, sims = np.array(data["triple"]["base"]), np.array(data["triple"]["auxiliary"]), np.array(data["triple"]["sims"])
    bar = bool(base.mean() <= 2 * floor)
    assert claims["SIMS-2.base-bar"]["level"] == ("held" if bar else "not held")
    for cid in ("SIMS-2.fig1-sims-is-better", "SIMS-2.relative-gain", "SIMS-2.bowl-in-w", "SIMS-2.small-w-small-B", "SIMS-2.interior-B"):
        assert any(p["name"] == "base-model bar" for p in claims[cid]["preconditions"]), cid
        if not bar:
            assert claims[cid]["level"] == "not testable", cid
    worse = claims["SIMS-2.fig1-finetune-on-own-samples-is-worse"]
    assert worse["preconditions"] == []
    low, high = t_interval(aux - base)
    assert np.isclose(worse["comparison"]["interval"]["low"], low) and worse["level"] == level(low, high, "greater", 0.0)
    better = claims["SIMS-2.fig1-sims-is-better"]
    low, high = t_interval(base - sims)
    assert np.isclose(better["comparison"]["interval"]["low"], low)
    assert better["level"] == (level(low, high, "greater", 0.0) if bar else "not testable")
    # relative gain: a claim about size, the share of the base's excess over the floor, against half the paper's 28.4%
    gain = claims["SIMS-2.relative-gain"]
    excess = (base - sims) / (base - floor)
    np.testing.assert_allclose(data["gain"]["excess_over_floor"], excess)
    assert np.isclose(gain["comparison"]["margin"], 0.142) and gain["comparison"]["direction"] == "greater"
    headroom = bool(np.all(base > floor))
    low, high = t_interval(np.where(base > floor, excess, 0.0))
    assert np.isclose(gain["comparison"]["interval"]["low"], low)
    assert gain["level"] == (level(low, high, "greater", 0.142) if bar and headroom else "not testable")
    # the interior optimum in B is read only where SIMS beats the base, so the two cannot contradict each other
    interior = claims["SIMS-2.interior-B"]
    beats = [p["met"] for p in interior["preconditions"] if p["name"] == "SIMS beats the base"]
    assert beats == [better["level"] == "held"]
    if better["level"] != "held":
        assert interior["level"] == "not testable"
    # a fixed cell, no selection: the smallest B and smallest w > 0 against the base
    small = claims["SIMS-2.small-w-small-B"]
    w_small = min(w for w in ws if w > 0)
    low, high = t_interval(report[:, 0, j0] - report[:, 0, ws.index(w_small)])
    assert np.isclose(small["comparison"]["interval"]["low"], low)
    assert small["level"] == (level(low, high, "greater", 0.0) if bar else "not testable")
