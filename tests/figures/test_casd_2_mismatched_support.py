"""CASD-2 at the smoke profile (issue 27 design): sources trained once per profile, the "contains" source being CASD-1's
good source (same SourceSpec, same cache key), every (method, case, seed) cell of the fit sweep present with its protocol
metrics (against every real image of the real digits outside the pool) and its FID-against-budget curve, class
histograms that are distributions over the ten digits, the real histogram equal to the real set's labels, and the
archive. Every claim's level is recomputed from the JSON's numbers: its preconditions (each source's histogram is its
support; DM bar; headroom: DM data-limited against the source whose digits contain the real ones; DM follows P_r; a
source histogram that differs from P_r; a source that makes the digits absent from D_r) and Student's t interval over
seeds of its paired quantity against its margin. Constructed cases run the notebook's claims cell on numbers where the
old "under 5% of digits 8-9" bar, which no model reaches (DM, which never saw them, reads 7-10% by LeNet's confusion),
said "not held", and where each precondition fails on its own."""

from pathlib import Path

import numpy as np
import pytest

from madlib.data import load_images, load_sample_archive
from madlib.figures.manifest import load_manifest
from madlib.figures.params import notebook_parameters
from madlib.figures.runner import resolve_figure
from madlib.methods import casd
from madlib.metrics import total_variation

from tests.figures.levels import check_level, run_claims_cell

FIGURE = "casd_2_mismatched_support"
NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / f"{FIGURE}.ipynb"
CLAIMS_CELL = "aedfb922"
CASES = ("contains", "intersects", "inside")
KEYS = ["dm/none"] + [f"{method}/{case}" for case in CASES for method in ("sda", "casd")]
KINDS = ("casd-beats-dm-and-sda", "sda-needs-the-real-support", "casd-follows-real-classes", "sda-pulled-toward-source")


def good_source(params) -> casd.SourceSpec:
    """CASD-1's good source as issue 27 fixes it: the first source_per_class training images of each class (inside the
    protocol's pool), the source budget, the snapshots."""
    return casd.SourceSpec("good", params["dataset"], images_seen=params["source_images_seen"],
                           snapshot_images=tuple(params["source_snapshots"]), per_class=params["source_per_class"])


def test_casd_2_mismatched_support(smoke_build):
    record, _ = smoke_build(FIGURE)
    assert record["experiments"] == ["CASD-2"]
    params, data = record["params"], record["data"]
    seeds, n_seeds = params["seeds"], params["n_seeds"]
    assert seeds == [params["seed"] + k for k in range(n_seeds)] and params["lanes"] == 1
    assert "cache_dir" not in params and params["settings"]["images_seen"] == params["images_seen"]
    assert record["scale"]["paper"].startswith("CIFAR-10 first 8 classes") and len(record["scale"]["differences"]) == 3
    real = params["real_classes"]

    # the protocol: the reference is every real image of the real digits outside the pool, training and test splits
    in_real = sum(int(np.isin(load_images(params["dataset"], split)[1].numpy(), real).sum()) for split in ("train", "test"))
    assert data["reference_count"] == params["reference_count"] == in_real - params["pool"]
    assert data["floor"]["n_fake"] == params["eval_samples"] and data["floor"]["n_real"] == data["reference_count"]
    np.testing.assert_allclose(sum(data["floor"]["class_shares"]), 1.0)

    # every cell and seed, each its own fit, read on eval_samples samples against the same reference
    assert data["keys"] == KEYS and list(data["cells"]) == KEYS
    budgets = [params["images_seen"] // 4, params["images_seen"] // 2, params["images_seen"]]
    assert data["curve"]["images_seen"] == budgets
    fit_keys = set()
    for key, rows in data["cells"].items():
        assert len(rows) == n_seeds and np.shape(data["fid"][key]) == np.shape(data["kid"][key]) == (n_seeds,), key
        for row in rows:
            assert row["metrics"]["n_fake"] == params["eval_samples"] and row["reference_count"] == data["reference_count"]
            assert row["metrics"]["n_real"] == data["reference_count"]
            assert sorted(int(b) for b in row["curve"]) == budgets
            fit_keys.add(row["key"])
        np.testing.assert_allclose(data["fid"][key], [r["metrics"]["fid"] for r in rows])
        np.testing.assert_allclose(data["kid"][key], [r["metrics"]["kid"] for r in rows])
        np.testing.assert_allclose([[r["curve"][str(b)]["fid"] for b in budgets] for r in rows], data["curve"]["fid"][key])
        shares = np.asarray(data["class_shares"][key])
        assert shares.shape == (n_seeds, 10)
        np.testing.assert_allclose(shares.sum(1), 1.0)
    assert len(fit_keys) == len(KEYS) * n_seeds
    # P_r: the real set is the first n_real images of the pool, equal per class
    expected = np.zeros(10)
    expected[real] = 1 / len(real)
    np.testing.assert_allclose(data["p_real"], expected)

    # sources, trained once per profile: "contains" is CASD-1's good source (the same spec, so the same cache key)
    sources = data["sources"]
    assert list(sources) == list(CASES) and len({s["key"] for s in sources.values()}) == 3
    assert sources["contains"]["spec"] == good_source(params).plain() == params["sources"]["contains"]
    assert sources["intersects"]["spec"]["classes"] == params["intersects_classes"]
    assert sources["inside"]["spec"]["classes"] == params["inside_classes"]
    fit = casd.train_source(good_source(params), casd.EDMSettings(**params["settings"]), params["source_seed"], cache_dir=data["cache"])
    assert fit.from_cache and fit.key == sources["contains"]["key"]
    assert sorted(int(b) for b in sources["contains"]["metrics"]) == sorted({*params["source_snapshots"], params["source_images_seen"]})
    source = {case: np.asarray(v) for case, v in data["source_class_shares"].items()}
    assert all(v.shape == (n_seeds, 10) for v in source.values())
    classes = {case: list(range(10)) if sources[case]["spec"]["classes"] is None else sources[case]["spec"]["classes"] for case in CASES}

    # the levels, recomputed from the JSON's numbers
    claims = {c["id"]: c for c in record["claims"]}
    absent = [c for c in range(10) if c not in real]
    with_absent = [case for case in CASES if set(absent) & set(classes[case])]
    assert with_absent == ["contains", "intersects"]
    assert set(claims) == ({"CASD-2.sources"} | {f"CASD-2.{kind}.{case}" for case in CASES for kind in KINDS}
                           | {f"CASD-2.casd-avoids-absent-digits.{case}" for case in with_absent})
    fid = {k: np.asarray(v) for k, v in data["fid"].items()}
    shares = {k: np.asarray(v) for k, v in data["class_shares"].items()}
    p_real, dm = np.asarray(data["p_real"]), fid["dm/none"]
    absent_share = {k: v[:, absent].sum(1) for k, v in shares.items()}
    bar = max(0.10, absent_share["dm/none"].mean())
    own = {case: bool((1 - source[case][:, classes[case]].sum(1)).mean() <= bar
                      and source[case][:, classes[case]].mean(0).min() >= 0.5 / len(classes[case])) for case in CASES}
    assert claims["CASD-2.sources"]["level"] == ("held" if all(own.values()) else "not held")
    assert data["oracle"]["case"] == "contains" and data["oracle"]["read"]["n_fake"] <= params["eval_samples"]
    oracle = data["oracle"]["read"]["fid"]
    headroom = bool(oracle <= 0.75 * dm.mean() and dm.mean() - oracle >= 2 * dm.std(ddof=1))
    dm_bar = bool(np.mean([r["metrics"]["precision"] for r in data["cells"]["dm/none"]]) >= 0.5 * data["floor"]["precision"])
    yardstick = bool(total_variation(shares["dm/none"], p_real).mean() <= 0.25)
    for case in CASES:
        sda, casd_fid = fid[f"sda/{case}"], fid[f"casd/{case}"]
        check_level(claims[f"CASD-2.casd-beats-dm-and-sda.{case}"], np.minimum(dm, sda) - casd_fid, "greater", 0.0, [own[case], dm_bar, headroom])
        helps = case == "contains"
        check_level(claims[f"CASD-2.sda-needs-the-real-support.{case}"], dm - sda if helps else sda - dm, "greater", 0.0,
                    [own[case], dm_bar] + ([headroom] if helps else []))
        differs = bool(total_variation(source[case], p_real).mean() >= 0.15)
        check_level(claims[f"CASD-2.casd-follows-real-classes.{case}"],
                    total_variation(shares[f"casd/{case}"], p_real) - total_variation(shares["dm/none"], p_real), "less", 0.05,
                    [yardstick, own[case], differs])
        check_level(claims[f"CASD-2.sda-pulled-toward-source.{case}"],
                    total_variation(shares[f"sda/{case}"], source[case]) - total_variation(shares["dm/none"], source[case]), "less", -0.05,
                    [yardstick, own[case], differs])
        assert {"kid_dm", "kid_sda", "kid_casd"} <= set(claims[f"CASD-2.casd-beats-dm-and-sda.{case}"]["measured"])  # KID beside FID
    for case in with_absent:
        makes = bool(source[case][:, absent].sum(1).mean() >= absent_share["dm/none"].mean() + 0.10)
        check_level(claims[f"CASD-2.casd-avoids-absent-digits.{case}"], absent_share[f"casd/{case}"] - absent_share["dm/none"], "less", 0.05,
                    [yardstick, own[case], makes])

    # the sweeps and the timing are recorded
    assert data["sweeps"]["sources"]["cells"] == 3 and data["sweeps"]["fits"]["cells"] == len(KEYS) * n_seeds
    assert data["timing"]["fits_s"] > 0 and data["timing"]["lanes"] == 1
    archive = load_sample_archive(data["samples_archive"])
    assert len(archive) == len(KEYS) * n_seeds + len(CASES) * n_seeds
    shown = archive[f"casd/intersects/seed={seeds[0]}"]
    assert shown.images.shape == (params["archive_per_set"], 1, params["image_size"], params["image_size"])
    assert set(np.unique(shown.labels)) <= set(range(10))
    assert archive[f"source/inside/seed={seeds[-1]}"].images.shape[0] == params["archive_per_set"]


@pytest.mark.parametrize("profile", ["smoke", "default", "paper"])
def test_contains_source_is_casd_1_good_source(profile):
    """At every profile, CASD-2's contains source and CASD-1's good source have the same spec, training settings and seed,
    so one cached training serves both figures (cache key: role, training settings, seed, snapshots, data)."""
    entries = load_manifest()
    mine, theirs = ({n: spec.default for n, spec in notebook_parameters(entries[name].notebook).items()} | resolve_figure(entries[name], profile)
                    for name in (FIGURE, "casd_1_effective_data"))
    needed = ("dataset", "source_images_seen", "source_snapshots", "source_per_class", "source_seed", "image_size", "base_channels", "batch_size", "lr", "ema_decay")
    assert all(name in mine and name in theirs for name in needed)
    assert good_source(mine) == good_source(theirs)
    assert {n: mine[n] for n in needed} == {n: theirs[n] for n in needed}


def histogram(weights, n_seeds=3):
    """[S, 10] class shares from per-digit weights [10] and a small per-seed jitter."""
    h = np.asarray(weights, float)[None, :] * (1 + 0.02 * np.array([[0.5], [-0.3], [0.1]])[:n_seeds] * np.arange(10) / 10)
    return h / h.sum(1, keepdims=True)


def constructed():
    """Numbers of a run where every precondition is met: DM reads 8% of its samples as digits 8-9 (LeNet's confusion), CASD
    11% with sources that make their own digits only; SDA pulled toward each source; the contains source, read on its real
    digits, at half DM's FID."""
    real = [0, 1, 2, 3, 4, 5, 6, 7]
    classes = {"contains": list(range(10)), "intersects": list(range(2, 10)), "inside": list(range(2, 8))}
    p_real = np.zeros(10)
    p_real[real] = 1 / 8
    dm = np.r_[np.full(8, 0.92 / 8), [0.04, 0.04]]
    casd_h = np.r_[np.full(8, 0.89 / 8), [0.055, 0.055]]
    sources = {case: np.where(np.isin(np.arange(10), c), 1.0 / len(c), 0.0) for case, c in classes.items()}
    shares = {"dm/none": histogram(dm)}
    for case in classes:
        shares[f"sda/{case}"] = histogram(0.7 * sources[case] + 0.3 * dm)
        shares[f"casd/{case}"] = histogram(casd_h)
    fid = {key: 15.0 + np.array([0.4, -0.2, 0.3]) for key in shares}
    return dict(real_classes=real, case_classes=classes, shares=shares, fid=fid, kid={key: v / 1000 for key, v in fid.items()},
                precision={key: np.array([0.75, 0.74, 0.76]) for key in shares}, p_real=p_real,
                floor={"fid": 4.5, "kid": 0.001, "precision": 0.96},
                source_shares={case: histogram(sources[case]) for case in classes}, oracle="contains",
                oracle_read={"fid": 7.5, "kid": 0.004, "n_fake": 2000}, total_variation=total_variation)


def run_claims(namespace):
    return run_claims_cell(NOTEBOOK, CLAIMS_CELL, namespace, experiments=("CASD-2",))


def failed(claim):
    """Names of the claim's preconditions that are not met."""
    return [p["name"] for p in claim.preconditions if not p["met"]]


def test_absent_digits_are_read_against_dm():
    """DM, which never saw digits 8-9, reads 8% of its samples as 8-9; CASD reads 11% with sources that make 20-25% of them.
    The old bar (under 5%) said "not held" although no model reaches it; against DM (margin 0.05) CASD is held."""
    claims = run_claims(constructed())
    assert claims["CASD-2.sources"].level == "held"
    for case in ("contains", "intersects"):
        assert claims[f"CASD-2.casd-avoids-absent-digits.{case}"].level == "held"
    for case in ("contains", "intersects", "inside"):
        assert claims[f"CASD-2.sda-pulled-toward-source.{case}"].level == "held"
        assert claims[f"CASD-2.casd-follows-real-classes.{case}"].level == "held"
        assert claims[f"CASD-2.casd-beats-dm-and-sda.{case}"].level == "not held"  # equal FIDs: no gap above 0
    assert "CASD-2.casd-avoids-absent-digits.inside" not in claims  # that source makes no 8 or 9: nothing to avoid


def test_each_precondition_makes_its_claims_not_testable():
    # a contains source that is its support (every digit >= half of uniform) but close to P_r: nothing to pull
    namespace = constructed()
    near = np.r_[np.full(8, 0.11), [0.06, 0.06]]  # TV to P_r 0.12
    namespace["source_shares"] = {**namespace["source_shares"], "contains": histogram(near)}
    claims = run_claims(namespace)
    for kind in ("casd-follows-real-classes", "sda-pulled-toward-source"):
        assert failed(claims[f"CASD-2.{kind}.contains"]) == ["source contains differs from P_r"]
        assert claims[f"CASD-2.{kind}.intersects"].level == "held"
    # a source that is not its support (30% of its samples read as digits 0-1, outside its training digits 2-9)
    namespace = constructed()
    off = np.r_[[0.15, 0.15], np.full(8, 0.7 / 8)]
    namespace["source_shares"] = {**namespace["source_shares"], "intersects": histogram(off)}
    claims = run_claims(namespace)
    assert claims["CASD-2.sources"].level == "not held"
    for claim_id, claim in claims.items():
        if claim_id.endswith(".intersects"):
            assert claim.level == "not testable" and "source intersects is its support" in failed(claim), claim_id
    assert claims["CASD-2.casd-avoids-absent-digits.contains"].level == "held"
    # no headroom: the contains source, read on its real digits, is as good as DM -> the FID claims read against it are not testable
    namespace = constructed()
    namespace["oracle_read"] = {"fid": 14.9, "kid": 0.015, "n_fake": 2000}
    claims = run_claims(namespace)
    for case in CASES:
        assert failed(claims[f"CASD-2.casd-beats-dm-and-sda.{case}"]) == ["headroom"]
    assert failed(claims["CASD-2.sda-needs-the-real-support.contains"]) == ["headroom"]
    assert claims["CASD-2.sda-needs-the-real-support.intersects"].level == "not held"  # equal FIDs: SDA is not worse
    # DM short of its bar: every FID claim is not testable, the histogram claims still read
    namespace = constructed()
    namespace["precision"] = {key: np.array([0.3, 0.3, 0.3]) for key in namespace["precision"]}
    claims = run_claims(namespace)
    for case in CASES:
        assert failed(claims[f"CASD-2.sda-needs-the-real-support.{case}"]) == ["DM bar"]
        assert claims[f"CASD-2.casd-follows-real-classes.{case}"].level == "held"
