"""MAD-13 at the smoke profile: the loop's bookkeeping, the floor measured like the samples, the archive."""

import numpy as np
from scipy import stats

from madlib.data import load_sample_archive


def test_mad_13_wgan_mnist(smoke_build):
    record, _ = smoke_build("mad_13_wgan_mnist")
    assert record["experiments"] == ["MAD-13"]
    claims = {c["id"]: c for c in record["claims"]}
    assert set(claims) == {"MAD-13.generation-1-bar", "MAD-13.fid-rises", "MAD-13.precision-falls", "MAD-13.recall-falls",
                           "MAD-13.monotone"}
    params, data = record["params"], record["data"]
    runs, generations = params["runs"], params["generations"]
    assert params["architecture"] == "conv"  # the default networks are the DCGAN-style pair
    for key in ("fid", "precision", "recall", "class_entropy", "top_class_share", "confidence"):
        values = np.array(data["metrics"][key])
        assert values.shape == (runs, generations), key
        assert np.all(np.isfinite(values))
    for key in ("precision", "recall", "class_entropy", "top_class_share", "confidence"):
        assert np.all((np.array(data["metrics"][key]) >= 0) & (np.array(data["metrics"][key]) <= 1))
    fid = np.array(data["metrics"]["fid"])
    assert np.all(fid > 0) and data["floor"]["fid"] > 0
    # the levels follow from the recorded per-run numbers: the bar is every loop claim's precondition, and a
    # met bar leaves the level to the t interval over runs of the paired change against a margin of 0
    confidence = np.array(data["metrics"]["confidence"])
    bar = bool(fid[:, 0].mean() <= 3 * data["floor"]["fid"] and confidence[:, 0].mean() >= 0.9 * data["floor"]["confidence"])
    assert claims["MAD-13.generation-1-bar"]["level"] == ("held" if bar else "not held")
    change = fid[:, -1] - fid[:, 0]
    low, high = stats.t.interval(0.95, runs - 1, loc=change.mean(), scale=stats.sem(change))
    expected = "held" if low > 0 else "not held" if high <= 0 else "inconclusive"
    assert claims["MAD-13.fid-rises"]["level"] == (expected if bar else "not testable")
    assert np.allclose(claims["MAD-13.fid-rises"]["comparison"]["interval"]["low"], low)
    for cid in ("MAD-13.precision-falls", "MAD-13.recall-falls", "MAD-13.monotone"):
        assert bar or claims[cid]["level"] == "not testable", claims[cid]
    assert 0.8 < data["floor"]["confidence"] <= 1  # real digits are recognised with confidence
    archive = load_sample_archive(data["samples_archive"])
    assert len(archive) == runs * generations
    stored = archive[f"run=1/gen={generations}"]
    assert stored.images.dtype == np.uint8 and len(stored.images) == min(params["archive_per_set"], params["eval_samples"])


def test_a_loop_read_on_a_model_short_of_its_bar_is_not_testable():
    """Before the levels, "FID rises in every run" read held on a generation 1 far above the bar (FID 10.6 against a
    3x-floor bar of 9.9 at 500 samples); now the bar gates the loop claims, and a met bar leaves them to the interval."""
    from pathlib import Path

    from tests.figures.levels import run_claims_cell

    notebook = Path(__file__).resolve().parents[2] / "notebooks" / "mad_13_wgan_mnist.ipynb"
    fid = np.array([[10.6, 20.0, 30.0], [10.2, 21.0, 33.0], [10.9, 19.0, 29.0]])  # [runs, generations], rising in every run
    metrics = {"fid": fid, "precision": np.full((3, 3), 0.7), "recall": np.full((3, 3), 0.8), "confidence": np.full((3, 3), 0.9)}
    namespace = dict(metrics=metrics, generations=3, floor={"fid": 3.3, "precision": 0.96, "recall": 0.95, "confidence": 0.93},
                     gen1_bar={"fid_max": 9.9, "confidence_min": 0.84},
                     gen1={k: {"mean": float(v[:, 0].mean()), "std": float(v[:, 0].std(ddof=1))} for k, v in metrics.items()})
    claims = run_claims_cell(notebook, "m13-claims", namespace, ("MAD-13",))
    assert claims["MAD-13.generation-1-bar"].level == "not held"
    assert claims["MAD-13.fid-rises"].level == "not testable"
    namespace["gen1_bar"] = {"fid_max": 11.0, "confidence_min": 0.84}  # the same loop on a model that meets its bar
    claims = run_claims_cell(notebook, "m13-claims", namespace, ("MAD-13",))
    assert claims["MAD-13.fid-rises"].level == "held"
    assert claims["MAD-13.precision-falls"].level == "not held"  # no change in any run: the interval [0, 0] is not below 0
