"""SIMS-2 at the smoke profile: the selection grid is paired (w = 0 is one chain for every B), the chosen cell comes from
the selection latents and every claim reads cells of disjoint report latents, the Fig. 1 triple is read there, the
premise is measured at every B, and the levels: the base-model bar (1.5x the floor, or a base at its plateau) gates
every claim that SIMS improves the base, and each level agrees with the t interval over seeds recomputed from the JSON's numbers."""

import numpy as np

from madlib.data import load_sample_archive

from tests.figures.levels import check_level, sims_base_bar, t_interval


def test_sims_2_self_improvement(smoke_build):
    record, _ = smoke_build("sims_2_self_improvement")
    assert record["experiments"] == ["SIMS-0", "SIMS-2"]
    claims = {c["id"]: c for c in record["claims"]}
    assert set(claims) == {
        "SIMS-2.base-bar", "SIMS-0.premise-images", "SIMS-2.bowl-in-w", "SIMS-2.interior-B", "SIMS-2.small-w-small-B",
        "SIMS-2.fig1-finetune-on-own-samples-is-worse", "SIMS-2.fig1-sims-is-better", "SIMS-2.relative-gain"}
    params, data = record["params"], record["data"]
    assert record["scale"]["paper"] and record["scale"]["differences"] and "cache_dir" not in params
    seeds, budgets, ws = params["seeds"], params["budgets"], params["ws"]
    assert not set(params["select_seeds"]) & set(params["report_seeds"])
    select = np.array(data["select"]["fid"])
    assert select.shape == (len(seeds), len(budgets), len(ws)) and np.isfinite(select).all()
    j0 = ws.index(0.0)
    assert (select[:, :, j0] == select[:, :1, j0]).all()  # the base model: one chain shared by every B
    chosen = data["chosen"]
    guided = [j for j, w in enumerate(ws) if w > 0]
    mean = select.mean(0)[:, guided]
    b, j = np.unravel_index(np.argmin(mean), mean.shape)
    assert (chosen["B"], chosen["w"]) == (budgets[b], ws[guided[j]])  # the best guided cell of the selection latents
    assert np.isclose(chosen["fid_selected"], select[:, b, guided[j]].mean())
    report = data["report"]
    base, aux, sims = (np.array(data["triple"][k]) for k in ("base", "auxiliary", "sims"))
    np.testing.assert_allclose(base, report["base"]["fid"])
    np.testing.assert_allclose(sims, report["sims"]["fid"])
    assert not np.allclose(sims, select[:, b, guided[j]])  # other latents and more samples, other numbers
    assert data["floor"]["n_fake"] == params["eval_samples"] and data["floor_select"]["n_fake"] == params["select_samples"]
    premise = np.array(data["alignment"]["cosine"])
    assert premise.shape == (len(seeds), len(budgets), params["sample_steps"]) and (np.abs(premise) <= 1 + 1e-6).all()
    archive = load_sample_archive(data["samples_archive"])
    assert {f"base/seed={s}" for s in seeds} <= set(archive)

    floor = data["floor"]["fid"]
    continued = np.array(data["plateau"]["fid_continued"])
    assert continued.shape == base.shape and not np.allclose(continued, base)  # the base trained further on D: another model
    bar = sims_base_bar(base, floor, continued)
    assert claims["SIMS-2.base-bar"]["level"] == ("held" if bar else "not held")
    check_level(claims["SIMS-2.fig1-finetune-on-own-samples-is-worse"], aux - base, "greater", 0.0, [])
    check_level(claims["SIMS-2.fig1-sims-is-better"], base - sims, "greater", 0.0, [bar])
    excess = (base - sims) / (base - floor)
    headroom = bool(np.all(base > floor))
    check_level(claims["SIMS-2.relative-gain"], np.where(base > floor, excess, 0.0), "greater", 0.142, [bar, headroom])
    check_level(claims["SIMS-2.small-w-small-B"], base - np.array(report["small"]["fid"]), "greater", 0.0, [bar])
    # the bowl: the less favourable of two arms, each a t interval of a paired difference
    arms = [t_interval(base - sims), t_interval(np.array(report["w_max"]["fid"]) - sims)]
    bowl = claims["SIMS-2.bowl-in-w"]["comparison"]["interval"]
    np.testing.assert_allclose([bowl["low"], bowl["high"]], [min(a[0] for a in arms), min(a[1] for a in arms)])
    # the interior optimum in B is read only where SIMS beats the base, so the two cannot contradict each other
    better = claims["SIMS-2.fig1-sims-is-better"]
    interior = claims["SIMS-2.interior-B"]
    assert [p["met"] for p in interior["preconditions"] if p["name"] == "SIMS beats the base"] == [better["level"] == "held"]
    if better["level"] != "held":
        assert interior["level"] == "not testable"
