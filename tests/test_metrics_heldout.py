"""HeldOutMetrics (features of the reference set once) against image_metrics; class_shares against the labels."""

import math

import numpy as np
import pytest
import torch

from madlib.data import load_images
from madlib.metrics import HeldOutMetrics, class_shares, image_metrics, load_lenet, predicted_classes


@pytest.fixture(scope="module")
def digits():
    images, labels = load_images("digits", "train", size=8, dtype="uint8")
    test, test_labels = load_images("digits", "test", size=8, dtype="uint8")
    return images, labels, test, test_labels, load_lenet("tiny")


def test_held_out_metrics_equal_image_metrics(digits):
    images, labels, test, test_labels, lenet = digits
    full = image_metrics(images[:200], labels[:200], test, test_labels, lenet)
    fast = HeldOutMetrics(test, lenet)(images[:200])
    assert set(fast) == {"fid", "precision", "recall"}
    for key in fast:
        assert fast[key] == pytest.approx(full[key], rel=1e-9, abs=1e-12)


def test_unconditional_samples_have_no_accuracy_and_their_class_shares_follow_the_classifier(digits):
    images, labels, test, test_labels, lenet = digits
    out = image_metrics(images[:100], None, test, test_labels, lenet)
    assert math.isnan(out["accuracy"]) and out["fid"] >= 0
    shares = class_shares(images[:300], lenet, 10)
    counts = np.bincount(predicted_classes(images[:300], lenet).numpy(), minlength=10) / 300
    np.testing.assert_allclose(shares, counts)
    assert shares.sum() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="fake_images must be"):
        HeldOutMetrics(test, lenet)(torch.zeros(3, 8, 8))


def test_protocol_adds_kid_density_coverage_and_a_floor_at_the_same_size(digits):
    from madlib.metrics import density_coverage, kid, lenet_features

    images, labels, test, test_labels, lenet = digits
    metrics = HeldOutMetrics(test, lenet)
    out = metrics.protocol(images[:150])
    real, fake = (lenet_features(x, lenet).double().numpy() for x in (test, images[:150]))
    assert out["kid"] == pytest.approx(kid(real, fake), rel=1e-9)
    assert out["coverage"] == pytest.approx(density_coverage(real, fake).coverage)
    assert (out["n_fake"], out["n_real"]) == (150, test.shape[0])
    floor = metrics.floor(images, 150, seed=1)
    assert floor["n_fake"] == 150 and floor["fid"] >= 0
    with pytest.raises(ValueError, match="n must be at most"):
        metrics.floor(images[:10], 150)


def test_difference_of_a_model_with_itself_is_zero_and_a_worse_model_reads_worse(digits):
    images, labels, test, test_labels, lenet = digits
    metrics = HeldOutMetrics(test, lenet)
    a = images[:200]
    same = metrics.difference(a, a.clone(), n_boot=50)
    assert same.low == same.high == same.estimate == 0.0
    noisy = (a.float() + 150 * torch.randn(a.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 255).to(torch.uint8)
    for metric in ("fid", "kid"):
        worse = metrics.difference(noisy, a, metric=metric, n_boot=50)
        assert worse.low > 0, (metric, worse)
    with pytest.raises(ValueError, match="paired"):
        metrics.difference(a, a[:100])
