"""SIMS-4 at the smoke profile: the auxiliary set has the complement of the target share (by the classifier), the share
and per-group FID and KID are recorded for every (seed, w) on a fixed count per group, the archive labels mark the
group; the levels agree with the t intervals recomputed from the JSON's shares: fractions of the way against a margin of
0.5, and w = 0's share against the real set's within an equivalence margin of 0.05 (both one-sided bounds)."""

import numpy as np

from madlib.data import load_sample_archive

from tests.figures.levels import level, t_interval


def test_sims_4_distribution_shift(smoke_build):
    record, _ = smoke_build("sims_4_distribution_shift")
    assert record["experiments"] == ["SIMS-4"]
    claims = {c["id"]: c for c in record["claims"]}
    assert set(claims) == {
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
        for w in ws:
            assert set(np.unique(archive[f"w={w:g}/seed={s}"].labels)) <= {0, 1}
    # a group is read only on exactly per_group samples: a cell with fewer reads NaN, never a smaller set
    kid = {p: np.array(v, float) for p, v in data["group_kid"].items()}  # [2, S, W]
    for split, k in (("select", params["select_per_group"]), ("report", params["per_group"])):
        h = 0 if split == "select" else 1
        for p in ("group", "rest"):
            counts = np.array([c[p] for c in data["counts"][split]])  # [S, W]
            assert (np.isfinite(kid[p][h]) == (counts >= k)).all()

    j0, jm, j_max = ws.index(0.0), ws.index(-1.0), int(np.argmax(ws))
    base = claims["SIMS-4.base-has-the-base-share"]
    low, high = t_interval(share[:, j0] - np.array(data["real_share"]))
    iv = base["comparison"]["interval"]
    assert np.isclose(iv["high"], max(high, -low)) and np.isclose(iv["low"], max(0.0, low, -high))
    assert base["level"] == ("held" if -0.05 < low and high < 0.05 else "not held" if low >= 0.05 or high <= -0.05 else "inconclusive")
    aux = claims["SIMS-4.auxiliary-alone-has-the-auxiliary-share"]
    gap = share[:, j0] - np.array(data["auxiliary_set_share"])
    if np.all(np.abs(gap) >= 0.1):
        low, high = t_interval((share[:, j0] - share[:, jm]) / gap)
        assert np.isclose(aux["comparison"]["interval"]["low"], low) and aux["level"] == level(low, high, "greater", 0.5)
    else:
        assert aux["level"] == "not testable"
    target = claims["SIMS-4.share-moves-to-the-target"]
    gap = params["target_share"] - share[:, j0]
    if np.all(gap >= 0.1):
        low, high = t_interval((share[:, j_max] - share[:, j0]) / gap)
        assert np.isclose(target["comparison"]["interval"]["low"], low) and target["level"] == level(low, high, "greater", 0.5)
    else:
        assert target["level"] == "not testable"
    bowl = claims["SIMS-4.group-fid-bowl"]
    inner = [j for j, w in enumerate(ws) if 0 < w < ws[j_max]]
    near = np.mean(data["base_fid"]) <= 3 * data["floor"]["fid"]
    if inner and near and all(np.isfinite(k).all() for k in kid.values()):
        arms = []
        for k in kid.values():
            best = inner[int(np.argmin(k[0][:, inner].mean(0)))]
            arms += [t_interval(k[1][:, e] - k[1][:, best]) for e in (j0, j_max)]
        low, high = min(a[0] for a in arms), min(a[1] for a in arms)
        assert np.isclose(bowl["comparison"]["interval"]["low"], low) and bowl["level"] == level(low, high, "greater", 0.0)
    else:
        assert bowl["level"] == "not testable"
