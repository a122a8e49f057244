"""SIMS-0 / SIMS-1 at the smoke profile: the premise per base recipe comes first and gates the loop's guidance claims;
the |D_s| loops share each run's D_r and generation 1; the window, the two readouts and the half-and-half selection;
the guidance decomposition's identities; and the levels recomputed from the JSON's numbers."""

import numpy as np
from scipy import stats

from tests.figures.levels import level, t_interval

PREMISE = "SIMS-0.aux-along-base-error."
LOOP_CLAIMS = {"SIMS-1.madness-standard", "SIMS-1.madness-grows-with-ds", "SIMS-1.prevention", "SIMS-1.mitigation", "SIMS-1.self-improvement"}
GUIDED = ("SIMS-1.prevention", "SIMS-1.mitigation", "SIMS-1.w3", "SIMS-1.self-improvement")


def bounds(low, high):  # the JSON writes an unbounded side as null
    return (-np.inf if low is None else low, np.inf if high is None else high)


def claim_bounds(claim):
    return bounds(claim["comparison"]["interval"]["low"], claim["comparison"]["interval"]["high"])


def test_sims_1_gaussian_loop(smoke_build):
    record, _ = smoke_build("sims_1_gaussian_loop")
    assert record["experiments"] == ["SIMS-0", "SIMS-1"]
    params, data = record["params"], record["data"]
    recipes = params["premise_recipes"]
    claims = {c["id"]: c for c in record["claims"]}
    ws, ds_values = np.array(data["w"]), data["ds"]
    expected = {PREMISE + name for name in recipes} | LOOP_CLAIMS | {"SIMS-0.self-improvement-some-budget", "SIMS-0.budget-interior-optimum"}
    assert set(claims) == expected | ({"SIMS-1.w3"} if 3.0 in ws else set())
    assert [c["id"] for c in record["claims"][:len(recipes)]] == [PREMISE + name for name in recipes]  # the premise first, in order
    assert params["recipe"] == "toy-diffusion" and "toy-diffusion" in record["scale"]["ours"]
    assert record["scale"]["paper"] and record["scale"]["differences"]
    assert "checkpoint_dir" not in params and "sweep_dir" not in params
    assert ds_values == params["ds_values"] and list(ws) == sorted(params["w_values"])

    # the premise per recipe: budget chosen on the selection bases, w* read on the report bases (t interval, margin 0)
    sel_b, rep_b = data["selection_bases"], data["report_bases"]
    assert not set(sel_b) & set(rep_b) and sorted(sel_b + rep_b) == list(range(params["decomp_runs"]))
    held_on_selection = {}
    for name in recipes:
        dec = data["decomposition"][name]
        w_star = np.array(dec["w_star"])[0].mean(-1)  # [B, R]
        j = int(np.argmax(w_star[:, sel_b].mean(-1)))
        held_on_selection[name] = bool(t_interval(w_star[j, sel_b])[0] > 0)
        claim = claims[PREMISE + name]
        low, high = t_interval(w_star[j, rep_b])
        np.testing.assert_allclose(claim_bounds(claim), [low, high])
        assert claim["level"] == level(low, high, "greater", 0.0) and claim["measured"]["chosen_budget"] == params["decomp_epochs"][j]
        # the decomposition's identities: w = 0 is the base alone at every budget; the gain is a squared cosine
        w2 = np.array(dec["w2"])  # [1, B, W, R, K]
        assert w2.shape == (1, len(params["decomp_epochs"]), len(params["decomp_w"]), params["decomp_runs"], params["decomp_seeds"])
        assert np.all(w2[:, :, 0] == w2[0, 0, 0])
        gain, cos = np.array(dec["gain"]), np.array(dec["cos_sys"])
        assert np.all((gain >= 0) & (gain <= 1 + 1e-9)) and np.all(np.abs(cos) <= 1 + 1e-9) and np.all(np.array(dec["noise2"]) > 0)
        assert len(dec["steps"]) == params["steps"] - 1  # the toy sampler never evaluates t = 0
    if "ema" in recipes:
        assert data["decomposition"]["ema"]["settings"]["ema_decay"] == 0.99
    # which loop ran: the first recipe whose premise held on the selection bases, else the first recipe
    first_held = next((name for name in recipes if held_on_selection[name]), None)
    loop = data["choice"]["loop"]
    assert loop == (first_held or recipes[0])
    premise_met = claims[PREMISE + loop]["level"] == "held"
    assert data["premise_precondition"]["met"] == premise_met
    for cid in GUIDED:
        if cid in claims:
            assert [p["met"] for p in claims[cid]["preconditions"] if p["name"] == "SIMS premise"] == [premise_met], cid
            if not premise_met:
                assert claims[cid]["level"] == "not testable", cid

    # one seed for every |D_s| loop: each run's D_r and generation 1 are the same arrays in every loop
    runs = {ds: np.array(data["w2_runs"][loop][str(ds)]) for ds in ds_values}  # [G, W, R]
    emp = {ds: np.array(data["w2_empirical_runs"][loop][str(ds)]) for ds in ds_values}
    for ds in ds_values:
        assert runs[ds].shape == (params["generations"], len(ws), params["runs"])
        np.testing.assert_array_equal(runs[ds][0], runs[ds_values[0]][0])
        np.testing.assert_array_equal(emp[ds][0], emp[ds_values[0]][0])
    assert data["shared_start"] is True
    assert [p["met"] for p in claims["SIMS-1.madness-grows-with-ds"]["preconditions"]] == [len(ds_values) > 1]

    # the window: chosen on the selection runs (conv_from 0), within [2, G // 2 + 1]
    conv = data["conv_from"]
    assert params["conv_from"] == 0 and 2 <= conv <= params["generations"] // 2 + 1
    sel, rep = data["selection_runs"], data["report_runs"]
    assert not set(sel) & set(rep) and sorted(sel + rep) == list(range(params["runs"]))

    # the readouts, recomputed: the moment readout is the mean over runs, the robust one the trimmed mean of the empirical W2
    k0, c = int(np.flatnonzero(ws == 0)[0]), conv - 1
    moment, robust = data["readout"][loop]["moment"], data["readout"][loop]["robust"]
    for ds in ds_values:
        key = str(ds)
        np.testing.assert_allclose(moment["e_g1"][key], runs[ds][0].mean(-1))
        np.testing.assert_allclose(moment["e_inf"][key], runs[ds][c:].mean(0).mean(-1))
        np.testing.assert_allclose(robust["e_inf"][key], stats.trim_mean(emp[ds][c:].mean(0), params["trim"], axis=-1))
        np.testing.assert_allclose(np.array(moment["ratio_curve"][key])[0], 1.0)  # each w is normalised by its own generation 1
        lo, hi = np.array(moment["ratio_conv_q05_q95"][key])
        assert np.all(lo <= np.array(moment["ratio_conv"][key]) + 1e-12) and np.all(np.array(moment["ratio_conv"][key]) <= hi + 1e-12)
        # mitigation on the moment readout: the per-run paired difference at the w chosen on the selection runs, t interval on the report runs
        k = moment["w_mit"][key]
        assert k == int(np.argmin(runs[ds][c:].mean(0)[:, sel].mean(-1)[1:]) + 1)  # ws is sorted: 0 first
        diff = runs[ds][c:, k][:, rep].mean(0) - runs[ds][c:, k0][:, rep].mean(0)
        est, low, high = moment["intervals"][f"mitigation/ds={ds}"]
        assert np.isclose(est, diff.mean()) and np.allclose(bounds(low, high), t_interval(diff))
    # a loop claim reads the least favourable of both readouts and every |D_s|
    mad = claims["SIMS-1.madness-standard"]
    ratio0 = [r["intervals"][f"ratio_w0/ds={ds}"] for r in (moment, robust) for ds in ds_values]
    assert np.isclose(mad["comparison"]["interval"]["estimate"], min(e for e, _, _ in ratio0))
    assert np.isclose(moment["intervals"][f"ratio_w0/ds={ds_values[0]}"][0], runs[ds_values[0]][c:, k0].mean() / runs[ds_values[0]][0, k0].mean())
    assert mad["level"] == level(*claim_bounds(mad), "greater", 1.0)
    mit = claims["SIMS-1.mitigation"]
    highs = [bounds(*r["intervals"][f"mitigation/ds={ds}"][1:])[1] for r in (moment, robust) for ds in ds_values]
    assert claim_bounds(mit)[1] == max(highs) or np.isclose(claim_bounds(mit)[1], max(highs))
    if premise_met:
        assert mit["level"] == level(*claim_bounds(mit), "less", 0.0)
    # the prevention guard: the chosen w's E[dist(G_inf)] over the smaller of its own and standard training's E[dist(G_1)]
    for ds in ds_values:
        k = moment["w_prev"][str(ds)]
        guarded = runs[ds][c:, k][:, rep].mean() / min(runs[ds][0, k, rep].mean(), runs[ds][0, k0, rep].mean())
        assert np.isclose(moment["intervals"][f"prevention/ds={ds}"][0], guarded)

    # the generation-1 sweep of the loop recipe: cell chosen on the first half of the auxiliary seeds, read on the rest
    w2 = np.array(data["decomposition"][loop]["w2"])[0]  # [B, W, R, K]
    half = params["decomp_seeds"] // 2
    d_sel, d_rep = w2[..., :half].mean(-1), w2[..., half:].mean(-1)  # [B, W, R]
    j, k = np.unravel_index(np.argmin(d_sel[:, 1:].mean(-1)), d_sel[:, 1:].shape[:2])
    low, high = t_interval(d_rep[j, k + 1] - d_rep[j, 0])
    some = claims["SIMS-0.self-improvement-some-budget"]
    np.testing.assert_allclose(claim_bounds(some), [low, high])
    assert some["level"] == level(low, high, "less", 0.0)
    interior = claims["SIMS-0.budget-interior-optimum"]
    helps = [p for p in interior["preconditions"] if p["name"] == "some budget helps"]
    assert helps[0]["met"] == (some["level"] == "held")
    if some["level"] != "held":  # an optimum in B is never read where no budget helps
        assert interior["level"] == "not testable"
