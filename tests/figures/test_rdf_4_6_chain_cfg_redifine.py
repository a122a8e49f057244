"""RDF-4..6 at the smoke profile: every chain fine-tunes from the one M0, FID_k and the collapse rate (Eq. 3)
agree, the archive holds D0 and every chain's iterations, the trait fit has a pair per CFG, and every claim's level
follows from the recorded numbers: its preconditions (M0 bar, iteration-1 bar, blank cap, no setting compared with
itself) and the t interval over seeds against its margin."""

import numpy as np
import pytest
from scipy import stats

from madlib.data import load_sample_archive


def t_level(values, direction, margin):
    """The level a comparison of per-seed ``values`` reads, and its 95% t interval (one seed: unbounded)."""
    values = np.asarray(values, float)
    if values.size < 2:
        return "inconclusive", -np.inf, np.inf
    low, high = stats.t.interval(0.95, values.size - 1, loc=values.mean(), scale=stats.sem(values))
    if direction == "greater":
        return ("held" if low > margin else "not held" if high <= margin else "inconclusive"), low, high
    return ("held" if high < margin else "not held" if low >= margin else "inconclusive"), low, high


def check_comparison(claim, values):
    """The claim's level and interval agree with the t interval recomputed from ``values``; a failed precondition reads
    "not testable" whatever the numbers."""
    comparison = claim["comparison"]
    level, low, high = t_level(values, comparison["direction"], comparison["margin"])
    failed = [p["name"] for p in claim["preconditions"] if not p["met"]]
    assert claim["level"] == ("not testable" if failed else level), (claim["id"], failed, level)
    interval = comparison["interval"]
    assert interval["estimate"] == pytest.approx(float(np.mean(values)))
    if np.isfinite(low):
        assert (interval["low"], interval["high"]) == pytest.approx((low, high))
    else:
        assert interval["low"] is None and interval["high"] is None  # one seed: unbounded, stored as null


def met(claim, name):
    return next(p for p in claim["preconditions"] if p["name"] == name)["met"]


def test_rdf_4_6_chain_cfg_redifine(smoke_build):
    record, _ = smoke_build("rdf_4_6_chain_cfg_redifine")
    assert record["experiments"] == ["RDF-4", "RDF-5", "RDF-6", "RDF-2"]
    assert record["scale"]["paper"] and record["scale"]["differences"]  # the static scale text comes from the manifest
    claims = {c["id"]: c for c in record["claims"]}
    assert set(claims) == {
        "RDF-4.m0-bar", "RDF-4.collapse-at-cfg-7.5", "RDF-4.u-shape", "RDF-4.cfg-most-influential", "RDF-4.low-cfg-blurs",
        "RDF-4.low-cfg-degrades-first", "RDF-4.high-cfg-saturates", "RDF-4.high-cfg-high-frequency", "RDF-4.best-cfg",
        "RDF-5.redifine-below-baseline", "RDF-5.redifine-close-to-best", "RDF-6.diff-norm", "RDF-6.spectrum-close",
        "RDF-6.pixel-histograms", "RDF-2.trait-fit-directions"}  # visible-from-third needs K >= 4; smoke runs K = 2
    params, data = record["params"], record["data"]
    K, grid = params["iterations"], data["cfg_grid"]
    # the CFG axis calibrated to M0: the baseline's CFG follows the rule on the recorded FID_1 sweep, the grid holds it
    cal = data["calibration"]
    fid1 = np.array(cal["iteration_1"]["fid"])
    assert cal["grid"] == params["calibration_grid"] and len(cal["m0"]["fid"]) == len(cal["grid"]) == len(fid1)
    if params["baseline"] == "calibrated":
        factor = params["calibration_factor"]
        within = [c for c, f in zip(cal["grid"], fid1) if f <= factor * fid1.min()]
        assert data["baseline_cfg"] == max(within)
    else:
        assert data["baseline_cfg"] == params["baseline_cfg"]
    assert grid == sorted(set(params["cfg_grid"]) | {data["baseline_cfg"]})
    # the style / prompt split of eps_c - eps_u before and after the first fine-tune: an exact decomposition
    for g in data["guidance"].values():
        np.testing.assert_allclose(np.array(g["style_sq"]) + np.array(g["prompt_sq"]), g["total_sq"], rtol=1e-9)
        assert np.all((np.array(g["style_share"]) >= 0) & (np.array(g["style_share"]) <= 1))
    chains = list(data["selection"].values()) + [r for runs in data["report"].values() for r in runs]
    assert len(data["selection"]) == len(grid) and all(len(r) == params["n_seeds"] for r in data["report"].values())
    assert params["report_seeds"] == [params["seed"] + 1 + j for j in range(params["n_seeds"])]
    m0_digest = chains[0]["start_digest"][0]
    for chain in chains:
        assert len(chain["fid"]) == K and np.all(np.array(chain["fid"]) > 0)
        assert chain["collapse_rate"] == pytest.approx((chain["fid"][-1] - chain["fid"][0]) / (K - 1))
        fid = np.array(chain["fid"])
        assert chain["fid_auc"] == pytest.approx(float(np.sum(fid[1:] + fid[:-1]) / 2))  # area under FID_k
        assert chain["start_digest"] == [m0_digest] * K  # Eq. 1: every fine-tune starts from the same M0
        assert np.shape(chain["diff_norm"]) == (K, params["steps"])
    best, low, baseline = data["best_cfg"], grid[0], data["baseline_cfg"]
    assert best in grid
    # ReDiFine's decay starts at the calibrated baseline's CFG (the paper's s0 = 7.5 only with redifine_axis "paper")
    redifine = data["report"]["redifine"][0]["settings"]
    assert params["redifine_axis"] == "calibrated" and redifine["s0"] == baseline and redifine["cond_dropout"] == params["redifine_p"]
    assert redifine["alpha"] == pytest.approx(params["decay_alpha"] * np.log(baseline) / np.log(params["s0"]))
    assert best == grid[int(np.argmin([data["selection"][f"cfg={c:g}"]["fid"][-1] for c in grid]))]
    for key in [f"cfg={c:g}" for c in grid] + ["redifine"]:
        fit = data["trait_fit"][key]
        assert 0 <= fit["r1"] < 1 and 0 <= fit["r2"] < 1 and fit["r1"] + fit["r2"] < 1
        assert len(fit["fitted"]) == K + 1 and fit["fitted"][0] == 0.0
    for trajectory in data["phenotype"]["grid"].values():
        assert trajectory[0] == pytest.approx(0.0, abs=1e-9)  # standardised by D0 itself
    assert data["floors"]["fresh"]["fid"] > 0 and data["floors"]["halves"]["fid"] > 0

    # the blank cap: an all-white set is far from D0; a set is at the cap by its FID (within 2%), half its images blank or
    # half its pixels white
    cap, floor = data["blank_cap"], data["floors"]["fresh"]["fid"]
    assert cap > 2 * floor
    fids = {f"cfg={c:g}": np.array([data["selection"][f"cfg={c:g}"]["fid"]]) for c in grid}
    fids |= {n: np.array([r["fid"] for r in runs]) for n, runs in data["report"].items()}
    readouts = data["readouts"]
    for name, fid in fids.items():
        blank = np.array(readouts[name]["blank_share"])
        assert blank.shape == (fid.shape[0], K + 1) and np.all(blank[:, 0] == 0)  # D0 has no blank image
        white = np.array(readouts[name]["white_share"])
        assert np.array_equal(readouts[name]["saturated"], (blank[:, 1:] >= 0.5) | (white[:, 1:] >= 0.5))
        assert np.array_equal(readouts[name]["at_cap"], (fid >= 0.98 * cap) | (blank[:, 1:] >= 0.5) | (white[:, 1:] >= 0.5))
    below_cap = {name: not np.any(readouts[name]["at_cap"]) for name in fids}

    # the project bars, recomputed: M0 on its held-out split, and a chain's first fine-tune against the D0 floor
    m0 = data["m0"]
    m0_ok = m0["metrics"]["accuracy"] >= 0.85 and m0["metrics"]["fid"] <= 2 * m0["floor"]["fid"]
    assert claims["RDF-4.m0-bar"]["level"] == ("held" if m0_ok else "not held")
    assert all(met(c, "M0 bar") == m0_ok for cid, c in claims.items() if cid != "RDF-4.m0-bar")
    b, bf, red = fids["baseline"], fids["best"], fids["redifine"]
    collapse = claims["RDF-4.collapse-at-cfg-7.5"]
    assert met(collapse, "iteration-1 bar (baseline)") == (b[:, 0].mean() <= 3 * floor)
    assert met(collapse, "room for a doubling") == (b[:, 0].mean() <= cap / 2)
    # every collapse claim needs FID_1 at the calibrated baseline CFG within 3 x the floor
    cal_name = f"baseline CFG {baseline:g} calibrated"
    cal_fid = fid1[cal["grid"].index(baseline)] if baseline in cal["grid"] else b[:, 0].mean()
    for cid in ("RDF-4.collapse-at-cfg-7.5", "RDF-4.u-shape", "RDF-4.cfg-most-influential", "RDF-5.redifine-below-baseline",
                "RDF-4.high-cfg-saturates", "RDF-4.high-cfg-high-frequency"):
        assert met(claims[cid], f"iteration-1 bar ({cal_name})") == (cal_fid <= 3 * floor)
    check_comparison(collapse, b[:, -1] / b[:, 0])

    # a setting is never compared with itself, and a grid of two has no interior: both read "not testable"
    u_shape = claims["RDF-4.u-shape"]
    assert met(u_shape, "an interior CFG") == (len(grid) >= 3)
    if len(grid) < 3:
        assert u_shape["level"] == "not testable"
    for cid in ("RDF-4.cfg-most-influential", "RDF-4.best-cfg"):
        assert met(claims[cid], "best differs from the baseline") == (best != baseline)
        assert best != baseline or claims[cid]["level"] == "not testable"
    degrades = claims["RDF-4.low-cfg-degrades-first"]
    assert met(degrades, "best differs from the low CFG") == (best != low)
    assert best != low or degrades["level"] == "not testable"
    sel = data["selection"]
    check_comparison(degrades, [sel[f"cfg={low:g}"]["fid"][0] - sel[f"cfg={best:g}"]["fid"][0]])

    rate = {n: np.array([r["collapse_rate"] for r in runs]) for n, runs in data["report"].items()}
    check_comparison(claims["RDF-4.cfg-most-influential"], rate["baseline"] - rate["best"])
    assert claims["RDF-4.cfg-most-influential"]["comparison"]["margin"] == pytest.approx(floor / (K - 1))
    best_cfg_claim = claims["RDF-4.best-cfg"]
    assert met(best_cfg_claim, "below the blank cap (best)") == below_cap["best"]
    check_comparison(best_cfg_claim, b[:, -1] - bf[:, -1])
    below = claims["RDF-5.redifine-below-baseline"]
    assert met(below, "below the blank cap (baseline)") == below_cap["baseline"]
    assert met(below, "baseline collapses") == bool(np.all(rate["baseline"] > 0))
    check_comparison(below, rate["redifine"] / np.maximum(rate["baseline"], 1e-9))
    close = claims["RDF-5.redifine-close-to-best"]
    assert met(close, "iteration-1 bar (best)") == (bf[:, 0].mean() <= 3 * floor)
    check_comparison(close, red[:, -1] / bf[:, -1])

    # blur and saturation on absolute power above r = 0.25 and the extreme-pixel share, from the recorded readouts
    low_names = [f"cfg={low:g}"] + (["best"] if best == low else [])
    hf_low = np.vstack([readouts[n]["power_above_0.25"] for n in low_names])
    sd_low = np.vstack([readouts[n]["pixel_sd"] for n in low_names])
    check_comparison(claims["RDF-4.low-cfg-blurs"], hf_low[:, -1] / hf_low[:, 0])
    check_comparison(claims["RDF-6.pixel-histograms"], sd_low[:, -1] / sd_low[:, 0])
    ext, hf = np.array(readouts["baseline"]["extreme_share"]), np.array(readouts["baseline"]["power_above_0.25"])
    check_comparison(claims["RDF-4.high-cfg-saturates"], ext[:, 1] - ext[:, 0])
    check_comparison(claims["RDF-4.high-cfg-high-frequency"], hf[:, 1] / hf[:, 0])
    gap = claims["RDF-6.spectrum-close"]["measured"]["log_gap_K"]
    check_comparison(claims["RDF-6.spectrum-close"], np.array(gap["best"]["per_seed"]) - np.array(gap["redifine"]["per_seed"]))

    # readouts that cannot say what the claim needs: M0's frozen unconditional branch; the phenotype is the absolute
    # power above r = 0.25, which resolves frequency at any size with a non-zero frequency below the cut
    diff = claims["RDF-6.diff-norm"]
    assert met(diff, "unconditional branch fine-tuned") == (params["untrained_uncond"] == "shared")
    if params["untrained_uncond"] == "m0":
        assert diff["level"] == "not testable"
    trait = claims["RDF-2.trait-fit-directions"]
    assert met(trait, "phenotype resolves frequency") == (1 / params["image_size"] < 0.25)
    assert params["untrained_uncond"] == "shared" and met(diff, "unconditional branch fine-tuned")  # the default

    archive = load_sample_archive(data["samples_archive"])
    n_chains = len(grid) + sum(len(r) for r in data["report"].values())
    assert len(archive) == 1 + n_chains * K
    shown = archive[f"cfg={grid[-1]:g}/seed={params['seed']}/iter={K}"]
    assert shown.images.shape[0] == min(params["archive_per_set"], params["n_d0"])
    assert set(shown.labels) == set(range(10))
