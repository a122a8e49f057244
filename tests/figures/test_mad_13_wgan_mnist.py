"""MAD-13 at the smoke profile: the loop's bookkeeping, the floor measured like the samples, the archive."""

import numpy as np

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
    # the held flags follow from the recorded per-run numbers
    assert claims["MAD-13.fid-rises"]["held"] == bool(np.all(fid[:, -1] > fid[:, 0]))
    confidence = np.array(data["metrics"]["confidence"])
    assert claims["MAD-13.generation-1-bar"]["held"] == bool(fid[:, 0].mean() <= 3 * data["floor"]["fid"]
                                                             and confidence[:, 0].mean() >= 0.9 * data["floor"]["confidence"])
    assert 0.8 < data["floor"]["confidence"] <= 1  # real digits are recognised with confidence
    archive = load_sample_archive(data["samples_archive"])
    assert len(archive) == runs * generations
    stored = archive[f"run=1/gen={generations}"]
    assert stored.images.dtype == np.uint8 and len(stored.images) == min(params["archive_per_set"], params["eval_samples"])
