"""MAD-9..11 at the smoke profile: what the loop stored and what the metrics say about real images."""

from pathlib import Path

import numpy as np

from madlib.data import load_image_set


def test_mad_9_11_mnist_fully_synthetic(smoke_build):
    record, _ = smoke_build("mad_9_11_mnist_fully_synthetic")
    assert record["experiments"] == ["MAD-9", "MAD-10", "MAD-11"]
    claims = {c["id"] for c in record["claims"]}
    assert {"MAD-9.fid-rises", "MAD-9.recall-falls", "MAD-10.precision-holds", "MAD-11.modes-collapse"} <= claims
    params, data = record["params"], record["data"]
    T = params["generations"]
    for lam in map(str, params["lam_values"]):
        assert len(data["metrics"][lam]["fid"]) == T
    # real vs real is far closer than an untrained smoke model's samples
    floor = data["floor"]
    assert floor["precision"] > 0.5 and floor["recall"] > 0.5
    assert floor["fid"] < min(data["metrics"]["1.0"]["fid"])
    # the fully synthetic loop trained generation 2 on n_images samples of generation 1 only, stored as uint8
    train = load_image_set(Path(data["store"]) / "lam_1" / "gen_002_train.npz")
    assert train.images.dtype == np.uint8 and train.images.shape[0] == params["n_images"]
    assert set(np.unique(train.arrays["source"])) == {1}
    assert np.bincount(train.labels).tolist() == [params["n_images"] // 10] * 10  # class-balanced
