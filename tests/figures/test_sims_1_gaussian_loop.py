"""SIMS-1 at the smoke profile: the loop's bookkeeping, a bound its two distances must respect, the guidance
decomposition's identities, and the levels: the SIMS premise gates every guidance claim of the loop, "some w" is
chosen on the selection runs and read on the report runs, and the intervals recomputed from the JSON's numbers agree."""

import numpy as np
from scipy import stats

from tests.figures.levels import level


def t_interval(x):
    x = np.asarray(x, float)
    if x.size < 2:
        return x.mean(), -np.inf, np.inf
    return (x.mean(), *stats.t.interval(0.95, x.size - 1, loc=x.mean(), scale=stats.sem(x)))


def bound(value):  # the JSON writes an unbounded side as null
    return np.nan if value is None else value


def test_sims_1_gaussian_loop(smoke_build):
    record, _ = smoke_build("sims_1_gaussian_loop")
    assert record["experiments"] == ["SIMS-0", "SIMS-1"]
    claims = {c["id"]: c for c in record["claims"]}
    assert set(claims) == {"SIMS-0.aux-along-base-error", "SIMS-1.madness-standard", "SIMS-1.madness-grows-with-ds", "SIMS-1.prevention",
                           "SIMS-1.mitigation", "SIMS-1.self-improvement", "SIMS-0.self-improvement-some-budget", "SIMS-0.budget-interior-optimum"}
    assert record["claims"][0]["id"] == "SIMS-0.aux-along-base-error"  # the premise comes first
    params, data = record["params"], record["data"]
    assert params["recipe"] == data["recipe"] == "toy-diffusion" and "toy-diffusion" in record["scale"]["ours"]
    assert record["scale"]["paper"] and record["scale"]["differences"]  # the static scale text comes from the manifest
    assert "checkpoint_dir" not in params and "sweep_dir" not in params
    ws, ds_values = np.array(data["w"]), data["ds"]
    assert ds_values == params["ds_values"] and list(ws) == sorted(params["w_values"])
    for ds in map(str, ds_values):
        curve = np.array(data["ratio_curve"][ds])  # [G, W]
        assert curve.shape == (params["generations"], len(ws))
        np.testing.assert_allclose(curve[0], 1.0)  # each w is normalised by its own generation 1
        lo, hi = np.array(data["ratio_conv_q05_q95"][ds])
        conv = np.array(data["ratio_conv"][ds])
        assert np.all(lo <= conv + 1e-12) and np.all(conv <= hi + 1e-12)
        # Gelbrich: W2 between two laws >= W2 between the Gaussians of their moments; the empirical W2
        # (50 points, exact OT) estimates the former, the figure's distance the latter (200 points)
        gaussian, empirical = np.array(data["e_dist"][ds]), np.array(data["e_dist_empirical"][ds])
        assert np.all(empirical > 0.8 * gaussian), (empirical, gaussian)
    assert data["g1"]["replicates"] == params["runs"] * len(ds_values)
    # the decomposition: w = 0 is the base alone at every budget; the gain is a squared cosine
    dec = data["decomposition"]
    w2 = np.array(dec["w2"])  # [L, B, W, R, K]
    assert w2.shape == (len(params["decomp_lrs"]), len(params["decomp_epochs"]), len(params["decomp_w"]),
                        params["decomp_runs"], params["decomp_seeds"])
    assert np.all(w2[:, :, 0] == w2[0, 0, 0])
    gain, cos = np.array(dec["gain"]), np.array(dec["cos_sys"])
    assert np.all((gain >= 0) & (gain <= 1 + 1e-9)) and np.all(np.abs(cos) <= 1 + 1e-9)
    assert np.all(np.array(dec["noise2"]) > 0)
    assert len(dec["steps"]) == params["steps"] - 1  # the toy sampler never evaluates t = 0

    # the premise, recomputed: some budget (base rate) with mean cos(S, e) > 0 and mean w* > 0 over the bases
    premise = bool(np.any((cos[0].mean(-1) > 0) & (np.array(dec["w_star"])[0].mean((-1, -2)) > 0)))
    assert data["premise"]["met"] == premise
    for cid in ("SIMS-1.prevention", "SIMS-1.mitigation", "SIMS-1.self-improvement"):
        assert [p["met"] for p in claims[cid]["preconditions"] if p["name"] == "SIMS premise"] == [premise], cid
        if not premise:
            assert claims[cid]["level"] == "not testable", cid
    premise_claim = claims["SIMS-0.aux-along-base-error"]["comparison"]
    assert premise_claim["interval"]["confidence"] == 1 - 0.05 / len(params["decomp_epochs"])  # Bonferroni over the budgets

    # selection and report runs are disjoint halves; with 2 runs, one report run gives an unbounded interval
    runs = {ds: np.array(data["w2_runs"][str(ds)]) for ds in ds_values}  # [G, W, R]
    sel, rep = data["selection_runs"], data["report_runs"]
    assert not set(sel) & set(rep) and sorted(sel + rep) == list(range(params["runs"]))
    k0, c = int(np.flatnonzero(ws == 0)[0]), params["conv_from"] - 1
    mit = claims["SIMS-1.mitigation"]
    w_mit = {ds: int(np.flatnonzero(ws == mit["measured"]["w_chosen"][str(ds)])[0]) for ds in ds_values}
    cells = [t_interval(runs[ds][c:, w_mit[ds]][:, rep].mean(0) - runs[ds][c:, k0][:, rep].mean(0)) for ds in ds_values]
    high = max(h for _, _, h in cells)
    assert np.isclose(bound(mit["comparison"]["interval"]["high"]), high, equal_nan=True) or (high == np.inf and mit["comparison"]["interval"]["high"] is None)
    if premise:
        assert mit["level"] == level(max(lo for _, lo, _ in cells), high, "less", 0.0)

    # self-improvement: per-run paired G_1 differences pooled over the loops, the m-th lowest of the w > 0 decides
    g1 = np.concatenate([runs[ds][0] for ds in ds_values], axis=-1)  # [W, R x |D_s|]
    per_w = [t_interval(g1[k] - g1[k0]) for k in np.flatnonzero(ws > 0)]
    m = (len(per_w) + 1) // 2
    low, high = sorted(lo for _, lo, _ in per_w)[m - 1], sorted(h for _, _, h in per_w)[m - 1]
    si = claims["SIMS-1.self-improvement"]
    assert np.isclose(si["comparison"]["interval"]["low"], low) and np.isclose(si["comparison"]["interval"]["high"], high)
    assert si["level"] == (level(low, high, "less", 0.0) if premise else "not testable")

    # MADness at w = 0: the least favourable |D_s| reads the ratio of the means over runs; its level follows its interval
    mad = claims["SIMS-1.madness-standard"]
    ratio0 = [runs[ds][c:, k0].mean() / runs[ds][0, k0].mean() for ds in ds_values]
    assert np.isclose(mad["comparison"]["interval"]["estimate"], min(ratio0))
    iv = mad["comparison"]["interval"]
    assert mad["level"] == level(iv["low"], iv["high"], "greater", 1.0)
    grows = claims["SIMS-1.madness-grows-with-ds"]
    g1_w0 = [runs[ds][0, k0].mean() for ds in ds_values]
    comparable = len(ds_values) > 1 and max(g1_w0) <= 1.5 * min(g1_w0)
    assert (grows["level"] == "not testable") == (not comparable)

    # the generation-1 sweep: cell chosen on the first half of the auxiliary seeds, read on the rest
    half = params["decomp_seeds"] // 2
    d_sel, d_rep = w2[..., :half].mean(-1), w2[..., half:].mean(-1)  # [L, B, W, R]
    cells_sel = d_sel[:, :, 1:].mean(-1)
    i, j, k = np.unravel_index(np.argmin(cells_sel), cells_sel.shape)
    _, low, high = t_interval(d_rep[i, j, k + 1] - d_rep[i, j, 0])
    some = claims["SIMS-0.self-improvement-some-budget"]
    assert np.isclose(some["comparison"]["interval"]["low"], low) and some["level"] == level(low, high, "less", 0.0)
    interior = claims["SIMS-0.budget-interior-optimum"]
    helps = [p for p in interior["preconditions"] if p["name"] == "some budget helps"]
    assert helps[0]["met"] == (some["level"] == "held")
    if some["level"] != "held":  # an optimum in B is never read where no budget helps
        assert interior["level"] == "not testable"
