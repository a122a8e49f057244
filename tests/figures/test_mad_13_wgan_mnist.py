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
