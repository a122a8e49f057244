"""MAD-12 at the smoke profile: the augmentation loop's stored training sets hold D_r plus n_synth samples."""

from pathlib import Path

import numpy as np

from madlib.data import load_image_set


def test_mad_12_mnist_augmentation(smoke_build):
    record, _ = smoke_build("mad_12_mnist_augmentation")
    assert record["experiments"] == ["MAD-12"]
    claims = {c["id"] for c in record["claims"]}
    assert claims == {"MAD-12.fid-rises", "MAD-12.slower-than-fully-synthetic", "MAD-12.lambda-trades-precision-for-recall",
                      "MAD-12.lambda-0.8-best"}
    params, data = record["params"], record["data"]
    store = Path(data["store"])
    first = load_image_set(store / "augmentation_lam_1" / "gen_001_train.npz")
    second = load_image_set(store / "augmentation_lam_1" / "gen_002_train.npz")
    source = second.arrays["source"]
    assert (source == 0).sum() == params["n_real"] and (source == 1).sum() == params["n_synth"]
    np.testing.assert_array_equal(second.images[source == 0], first.images)  # the same fixed real set D_r
    full = load_image_set(store / "fully_synthetic_lam_1" / "gen_002_train.npz")
    assert (full.arrays["source"] == 1).sum() == params["n_real"] + params["n_synth"]
