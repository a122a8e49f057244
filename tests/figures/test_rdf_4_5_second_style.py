"""RDF-4/5 on the second style at the smoke profile: D0 is drawn from the held-out split M0 never saw, the baseline's
CFG follows the calibration rule on this style's own FID_1 sweep (the digits' sweep recorded beside it), the best
fixed CFG is the grid's lowest FID_K, every reported chain starts each fine-tune from M0, and every claim's level
follows from the recorded numbers: its preconditions (the M0 bar, FID_1 at the calibrated baseline CFG, a style new to
M0, optima the grid resolves, no setting compared with itself, a usable collapsing baseline, the blank cap and
saturated sets) and, on one seed, an unbounded interval (inconclusive). Every reported variant runs on n_seeds seeds
(lists of chain summaries, paired by seed)."""

import numpy as np
import pytest

from madlib.data import load_sample_archive


def met(claim, name):
    return next(p for p in claim["preconditions"] if p["name"] == name)["met"]


def calibrated_cfg(cal, rule, factor, fixed):
    """The baseline CFG the calibration rule gives on the recorded FID_1 sweep: the largest CFG within ``factor`` of the best."""
    fid1 = np.array(cal["iteration_1"]["fid"])
    if rule == "fixed":
        return fixed
    return max(c for c, f in zip(cal["grid"], fid1) if f <= factor * fid1.min())


def test_rdf_4_5_second_style(smoke_build):
    record, _ = smoke_build("rdf_4_5_second_style")
    assert record["experiments"] == ["RDF-4", "RDF-5"]
    assert record["scale"]["paper"] and record["scale"]["differences"]  # the static scale text comes from the manifest
    claims = {c["id"]: c for c in record["claims"]}
    assert set(claims) == {
        "RDF-4.best-cfg-differs-between-styles", "RDF-4.best-cfg-does-not-transfer", "RDF-5.redifine-below-baseline-second-style",
        "RDF-5.redifine-close-to-best-second-style", "RDF-5.each-half-weaker-second-style"}
    params, data = record["params"], record["data"]
    assert params["d0_split"] == "test" and params["m0_settings"]["dataset"] == params["d0_dataset"]  # M0 saw only the train split
    assert params["d0_style"] in ("dilate", "blur", "pixelate", "plain")  # a second style drawn from held-out MNIST
    # the CFG axis calibrated to M0 on this style's D0, and the same rule on the digits (rdf_4_6's D0) beside it
    cal, digits_cal, factor = data["calibration"], data["digits_calibration"], params["calibration_factor"]
    for c in (cal, digits_cal):
        assert c["grid"] == params["calibration_grid"] and len(c["iteration_1"]["fid"]) == len(c["grid"]) and c["factor"] == factor
    assert len(cal["m0"]["fid"]) == len(cal["grid"]) and cal["rule"] == params["baseline"]
    baseline = data["baseline_cfg"]
    assert baseline == cal["baseline_cfg"] == params["baseline_cfg_run"]
    assert baseline == calibrated_cfg(cal, params["baseline"], factor, params["baseline_cfg"])
    assert digits_cal["baseline_cfg"] == calibrated_cfg(digits_cal, "calibrated", factor, None)
    grid = data["cfg_grid"]
    assert grid == params["cfg_grid_run"] == sorted(set(params["cfg_grid"]) | {baseline})
    best, digits_best = data["best_cfg"], params["digits_best_cfg"]
    assert best == grid[int(np.argmin([data["selection"][f"cfg={c:g}"]["fid"][-1] for c in grid]))]
    seeds = params["report_seeds"]
    assert seeds == [params["seed"] + 1 + j for j in range(params["n_seeds"])]  # reported seeds never the selection seed
    assert all([r["settings"]["seed"] for r in runs] == seeds for runs in data["report"].values())
    digests = {d for chain in list(data["selection"].values()) + sum(data["report"].values(), []) for d in chain["start_digest"]}
    assert len(digests) == 1  # one M0 behind every fine-tune
    assert data["report"]["digits-best"][0]["settings"]["cfg_scale"] == digits_best
    assert data["report"]["baseline"][0]["settings"]["cfg_scale"] == data["report"]["cond-drop only"][0]["settings"]["cfg_scale"] == baseline

    # preconditions recomputed from the recorded numbers
    floor, cap = data["floors"]["fresh"]["fid"], data["blank_cap"]
    assert cap > 2 * floor
    chains = {f"cfg={c:g}": [data["selection"][f"cfg={c:g}"]] for c in grid} | data["report"]  # [S] chains per name
    K = params["iterations"]
    for name, runs in chains.items():
        fid = np.array([chain["fid"] for chain in runs])  # [S, K]
        # the area under FID_k beside each rate
        assert data["fid_auc"][name] == [chain["fid_auc"] for chain in runs] == pytest.approx(np.sum(fid[:, 1:] + fid[:, :-1], 1) / 2)
        readout = data["readouts"][name]
        blank, white = np.array(readout["blank_share"]), np.array(readout["white_share"])
        assert blank.shape == white.shape == (len(runs), K + 1) and not blank[:, 0].any()  # D0 has no blank image
        # a saturated set: half its images blank or half its pixels white; at the cap: that, or FID within 2% of the cap
        saturated = (blank[:, 1:] >= 0.5) | (white[:, 1:] >= 0.5)
        assert np.array_equal(readout["saturated"], saturated)
        assert np.array_equal(readout["at_cap"], (fid >= 0.98 * cap) | saturated)
    below_cap = {name: not np.any(data["readouts"][name]["at_cap"]) for name in chains}
    m0 = data["m0"]  # the M0 bar of rdf_4_6, on M0's own held-out split: every claim's first precondition
    m0_ok = m0["metrics"]["accuracy"] >= 0.85 and m0["metrics"]["fid"] <= 2 * m0["floor"]["fid"]
    assert all(met(c, "M0 bar") == m0_ok for c in claims.values())
    new_style = m0["vs_d0"]["fid"] >= 3 * floor
    report = data["report"]
    rate = {n: np.array([r["collapse_rate"] for r in runs]) for n, runs in report.items()}  # [S]
    fid_K = {n: np.array([r["fid"][-1] for r in runs]) for n, runs in report.items()}  # [S]
    fid_1 = {n: np.array([r["fid"][0] for r in runs]) for n, runs in report.items()}  # [S]
    # every collapse-rate claim needs FID_1 at the calibrated baseline CFG within 3 x the floor (rdf_4_6's precondition)
    fid1 = np.array(cal["iteration_1"]["fid"])
    cal_fid = fid1[cal["grid"].index(baseline)] if baseline in cal["grid"] else fid_1["baseline"].mean()
    for cid in ("RDF-5.redifine-below-baseline-second-style", "RDF-5.each-half-weaker-second-style"):
        assert met(claims[cid], f"iteration-1 bar (baseline CFG {baseline:g} calibrated)") == (cal_fid <= 3 * floor)

    differs = claims["RDF-4.best-cfg-differs-between-styles"]
    assert met(differs, "a style new to M0") == new_style
    resolved = not (best == digits_best and best in (min(grid), max(grid)))
    assert met(differs, "optima the grid resolves") == resolved
    assert met(differs, f"below the blank cap (cfg={best:g})") == below_cap[f"cfg={best:g}"]  # a best chosen among capped chains
    testable = m0_ok and new_style and resolved and below_cap[f"cfg={best:g}"]
    assert differs["level"] == ("not testable" if not testable else "held" if best != digits_best else "not held")
    transfer = claims["RDF-4.best-cfg-does-not-transfer"]
    assert met(transfer, "two different CFGs") == (best != digits_best)
    assert best != digits_best or transfer["level"] == "not testable"  # never a setting compared with itself
    below = claims["RDF-5.redifine-below-baseline-second-style"]
    assert met(below, "iteration-1 bar (baseline)") == (fid_1["baseline"].mean() <= 3 * floor)  # the mean over seeds
    assert met(below, "below the blank cap (baseline)") == below_cap["baseline"]
    assert met(below, "baseline collapses") == bool((rate["baseline"] > 0).all())  # on every seed
    close = claims["RDF-5.redifine-close-to-best-second-style"]
    assert met(close, "below the blank cap (redifine)") == below_cap["redifine"]
    halves = claims["RDF-5.each-half-weaker-second-style"]
    # per-seed values, paired by seed
    values = {transfer["id"]: fid_K["digits-best"] - fid_K["best"], below["id"]: rate["redifine"] / np.maximum(rate["baseline"], 1e-9),
              close["id"]: fid_K["redifine"] / fid_K["best"], halves["id"]: np.minimum(rate["cond-drop only"], rate["schedule only"]) - rate["redifine"]}
    for claim in (transfer, below, close, halves):
        interval = claim["comparison"]["interval"]
        assert interval["estimate"] == pytest.approx(values[claim["id"]].mean()) and interval["n"] == len(seeds) == 1
        assert interval["low"] is None and interval["high"] is None  # one seed: an unbounded t interval
        failed = [p for p in claim["preconditions"] if not p["met"]]
        assert claim["level"] == ("not testable" if failed else "inconclusive"), claim["id"]
    archive = load_sample_archive(data["samples_archive"])
    assert len(archive) == 1 + (len(grid) + len(data["report"]) * len(seeds)) * params["iterations"]
