"""CASD-3 at the smoke profile: recall, coverage, precision, nearest-image SSIM, near-copy share and the LeNet-feature
distance for DM, SDA and CASD per seed, within their ranges, with the real held-out floors and the archive.
Every claim's level is recomputed from the JSON's numbers: its preconditions (DM replicates; the quality guards that keep
"far from the training set" from passing on broken samples: CASD's precision >= 0.8 x DM's, its nearest SSIM >= the
held-out images' - 0.05, its LeNet distance <= 1.1 x theirs; headroom below the held-out recall / coverage; an off-style
source) and Student's t interval over seeds of its paired quantity against its margin. A constructed case runs the
notebook's claims cell on the review's numbers, where the old reading held replication, distance and near-copies for
the wrong reason (CASD precision 0.6 against DM's 0.95, nearest SSIM 0.60 below the held-out 0.72)."""

import json
from pathlib import Path

import numpy as np

from madlib.data import load_sample_archive
from madlib.figures import FigureRecord, Precondition, seed_spread, with_spread

from tests.figures.levels import check_level, t_level

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "casd_3_memorization.ipynb"
CLAIMS_CELL = "4ba045e4"
METHODS = ("dm", "sda", "casd")
QUANTITIES = ("fid", "precision", "recall", "coverage", "mean_nearest_ssim", "near_copy_share", "mean_nearest_feature_distance")


def test_casd_3_memorization(smoke_build):
    record, _ = smoke_build("casd_3_memorization")
    assert record["experiments"] == ["CASD-3"]
    claims = {c["id"]: c for c in record["claims"]}
    assert set(claims) == {
        "CASD-3.dm-replicates", "CASD-3.casd-reduces-replication", "CASD-3.casd-fewer-near-copies", "CASD-3.casd-farther-from-training-images",
        "CASD-3.casd-raises-recall", "CASD-3.casd-raises-coverage", "CASD-3.sda-takes-the-synthetic-style", "CASD-3.casd-keeps-quality"}
    params, data = record["params"], record["data"]
    assert record["scale"]["paper"].startswith("FFHQ 64x64") and len(record["scale"]["differences"]) == 4
    assert "cache_dir" not in params and params["settings"]["images_seen"] == params["images_seen"]
    seeds = params["seeds"]
    for method in METHODS:
        v = data["values"][method]
        for q in ("precision", "recall", "coverage", "mean_nearest_ssim", "near_copy_share"):
            assert np.shape(v[q]) == (len(seeds),)
            assert all(-1.0 <= x <= 1.0 for x in v[q]), (method, q)
        assert all(x >= 0 for x in v["mean_nearest_feature_distance"])
        ssim = np.asarray(data["nearest_ssim_first_seed"][method])
        assert ssim.shape == (params["eval_samples"],)
        # the mean of the per-sample nearest SSIM is the recorded mean, and the near-copy share its tail
        np.testing.assert_allclose(ssim.mean(), v["mean_nearest_ssim"][0])
        np.testing.assert_allclose((ssim >= params["near_copy_ssim"]).mean(), v["near_copy_share"][0])
    floor = data["floor"]
    assert 0 < floor["mean_nearest_ssim"] < 1 and 0 < floor["coverage"] <= 1 and 0 < floor["precision"] <= 1
    assert np.shape(data["source"]["fid"]) == (len(seeds),)

    # the levels, recomputed from the JSON's numbers
    v = {method: {q: np.asarray(a) for q, a in data["values"][method].items()} for method in METHODS}
    avg = {method: {q: a.mean() for q, a in v[method].items()} for method in METHODS}
    dm_bar = bool(avg["dm"]["precision"] >= 0.5 * floor["precision"])
    replicates = v["dm"]["mean_nearest_ssim"] - floor["mean_nearest_ssim"]
    check_level(claims["CASD-3.dm-replicates"], replicates, "greater", 0.1, [])
    dm_copies = t_level(replicates, "greater", 0.1)[0] == "held"
    precision_ok = bool(avg["casd"]["precision"] >= 0.8 * avg["dm"]["precision"])
    ssim_ok = bool(avg["casd"]["mean_nearest_ssim"] >= floor["mean_nearest_ssim"] - 0.05)
    check_level(claims["CASD-3.casd-reduces-replication"], v["dm"]["mean_nearest_ssim"] - v["casd"]["mean_nearest_ssim"], "greater", 0.0,
                [dm_copies, precision_ok, ssim_ok])
    check_level(claims["CASD-3.casd-fewer-near-copies"], v["dm"]["near_copy_share"] - v["casd"]["near_copy_share"], "greater", 0.0,
                [bool(avg["dm"]["near_copy_share"] >= floor["near_copy_share"] + 0.05), precision_ok, ssim_ok])
    not_farther = bool(avg["casd"]["mean_nearest_feature_distance"] <= 1.1 * floor["mean_nearest_feature_distance"])
    check_level(claims["CASD-3.casd-farther-from-training-images"],
                v["casd"]["mean_nearest_feature_distance"] - v["dm"]["mean_nearest_feature_distance"], "greater", 0.0,
                [dm_copies, precision_ok, ssim_ok, not_farther])
    for q, guards in (("recall", [precision_ok]), ("coverage", [])):
        check_level(claims[f"CASD-3.casd-raises-{q}"], v["casd"][q] - v["dm"][q], "greater", 0.0,
                    [dm_bar, bool(avg["dm"][q] <= floor[q] - 0.05)] + guards)
    off_style = bool(np.mean(data["source"]["fid"]) >= 2 * avg["dm"]["fid"])
    check_level(claims["CASD-3.sda-takes-the-synthetic-style"], v["sda"]["fid"] - v["casd"]["fid"], "greater", 0.0, [dm_bar, off_style])
    check_level(claims["CASD-3.casd-keeps-quality"], v["casd"]["fid"] / v["dm"]["fid"], "less", 1.1, [dm_bar])

    archive = load_sample_archive(data["samples_archive"])
    assert set(archive) == {f"{m}/seed={s}" for m in METHODS for s in seeds}


def test_broken_samples_read_not_testable():
    """The review's committed numbers (MNIST 5k, n = 100): CASD's samples are far from D_r because they are off the digit
    manifold (precision 0.6 against DM's 0.95, nearest SSIM 0.60 below the held-out images' 0.72, LeNet distance 10.7
    against their 8.1). The old reading held "reduces replication", "fewer near-copies" and "farther"; the guards make them
    not testable, and recall (inflated by outliers) too. With samples as good as DM's, the same gaps are read."""
    floor = {"precision": 0.95, "recall": 0.968, "coverage": 0.979, "fid": 1.7, "mean_nearest_ssim": 0.716, "near_copy_share": 0.036,
             "mean_nearest_feature_distance": 8.1}
    jitter = np.array([0.01, -0.007, 0.002])
    review = {"dm": [20.1, 0.95, 0.47, 0.69, 0.91, 0.37, 4.6], "sda": [113.0, 0.3, 0.57, 0.14, 0.53, 0.0, 12.7],
              "casd": [49.7, 0.6, 0.77, 0.26, 0.60, 0.0, 10.7]}
    values = {m: {q: b * (1 + jitter) for q, b in zip(QUANTITIES, review[m])} for m in METHODS}
    namespace = dict(values=values, methods=METHODS, floor=floor, near_copy_ssim=0.95, k=5, source_fid=np.array([110.0, 127.0, 125.0]))
    claims = run_claims(namespace)
    assert claims["CASD-3.dm-replicates"].level == "held"
    for cid in ("casd-reduces-replication", "casd-fewer-near-copies", "casd-farther-from-training-images", "casd-raises-recall"):
        assert claims[f"CASD-3.{cid}"].level == "not testable", cid
    assert claims["CASD-3.casd-raises-coverage"].level == "not held"
    assert claims["CASD-3.casd-keeps-quality"].level == "not held"
    # CASD as precise as DM, new digits as close to D_r as real held-out ones: the replication gaps are read, and held
    values["casd"] = {q: b * (1 + jitter) for q, b in zip(QUANTITIES, [21.0, 0.93, 0.6, 0.8, 0.74, 0.05, 8.0])}
    claims = run_claims(namespace)
    for cid in ("casd-reduces-replication", "casd-fewer-near-copies", "casd-farther-from-training-images", "casd-raises-recall",
                "casd-raises-coverage", "casd-keeps-quality"):
        assert claims[f"CASD-3.{cid}"].level == "held", cid


def run_claims(namespace):
    """Run the notebook's claims cell on constructed numbers; returns {id: claim} of the record it fills."""
    nb = json.loads(NOTEBOOK.read_text())
    source = "".join(next(c for c in nb["cells"] if c.get("id") == CLAIMS_CELL)["source"])
    record = FigureRecord(name="casd_3_memorization", experiments=["CASD-3"], profile="custom", params={}, seed=0, scale={})
    exec(source, {"np": np, "Precondition": Precondition, "seed_spread": seed_spread, "with_spread": with_spread, "record": record,
                  **namespace})
    return {c.id: c for c in record.claims}
