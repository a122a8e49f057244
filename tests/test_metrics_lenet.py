"""The LeNet feature extractor: cache behaviour, determinism, and torch-fidelity against the own metrics."""

import subprocess
import sys

import pytest
import torch

from madlib.data import load_images
from madlib.metrics import (CacheWarning, TINY_RECIPE, class_histogram, frechet_distance, lenet_features, load_lenet,
                            precision_recall)
from madlib.metrics.lenet import LeNetRecipe, cache_path, train_lenet


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MADLIB_CACHE", str(tmp_path))
    return tmp_path


@pytest.fixture
def tiny(cache):
    return load_lenet("tiny")


def _same_weights(a, b):
    return all(torch.equal(a.state_dict()[k], b.state_dict()[k]) for k in a.state_dict())


def test_tiny_training_writes_then_loads_the_cache(cache, tiny):
    path = cache_path(TINY_RECIPE)
    assert path.parent == cache and path.exists() and tiny.info["path"] == str(path)
    assert tiny.info["loaded_from_cache"] is False and 0.0 <= tiny.info["heldout_accuracy"] <= 1.0
    assert tiny.info["n_heldout"] == 1000
    again = load_lenet("tiny")
    assert again.info["loaded_from_cache"] is True and _same_weights(tiny, again)
    assert again.info["heldout_accuracy"] == tiny.info["heldout_accuracy"]
    assert not list(cache.glob("*.tmp"))  # atomic write left no temporary file


def test_training_is_deterministic(cache):
    a, b = train_lenet(TINY_RECIPE), train_lenet(TINY_RECIPE)
    assert _same_weights(a, b)
    c = train_lenet(LeNetRecipe(steps=30, batch_size=32, seed=1))
    assert not _same_weights(a, c)
    assert cache_path(TINY_RECIPE) != cache_path(LeNetRecipe(steps=30, batch_size=32, seed=1))


@pytest.mark.parametrize("damage", ["truncate", "garbage", "flip_weights", "stale_recipe"])
def test_corrupt_or_stale_cache_is_detected_and_rebuilt(cache, tiny, damage):
    path = cache_path(TINY_RECIPE)
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[:1000])
    elif damage == "garbage":
        path.write_bytes(b"not a checkpoint")
    else:
        payload = torch.load(path, weights_only=True)
        if damage == "flip_weights":
            payload["state_dict"]["fc2.bias"] += 1.0  # weights changed, checksum not updated
        else:
            payload["recipe"]["lr"] = 0.5  # written by another recipe under this name
        torch.save(payload, path)
    with pytest.warns(CacheWarning, match="rebuilding"):
        rebuilt = load_lenet("tiny")
    assert rebuilt.info["loaded_from_cache"] is False and _same_weights(rebuilt, tiny)
    assert load_lenet("tiny").info["loaded_from_cache"] is True  # the rebuilt file is valid


def test_unknown_recipe_name(cache):
    with pytest.raises(ValueError, match="recipe must be a LeNetRecipe or one of"):
        load_lenet("huge")


def test_features_and_class_histogram(tiny):
    x, _ = load_images("mnist5k", "test")
    f = lenet_features(x[:50], tiny)
    assert f.shape == (50, 128) and torch.all(f >= 0)
    # uint8 and float views of the same images give the same features
    xu, _ = load_images("mnist5k", "test", dtype="uint8")
    assert torch.allclose(lenet_features(xu[:50], tiny), f, atol=1e-5)
    h = class_histogram(x[:50], tiny)
    assert h["n"] == 50 and h["counts"].sum() == 50 and h["shares"].sum() == pytest.approx(1.0)


def test_torch_fidelity_agrees_with_own_metrics(tiny):
    from madlib.metrics.fidelity import EXTRACTOR_NAME, fidelity_metrics, fidelity_metrics_from_features
    from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

    assert EXTRACTOR_NAME in FEATURE_EXTRACTORS_REGISTRY
    real, _ = load_images("mnist5k", "train", dtype="uint8")
    fake, _ = load_images("mnist5k", "test", dtype="uint8")
    real, fake = real[:300], fake[:120]
    tf = fidelity_metrics(real, fake, weights_path=tiny.info["path"], kid_subsets=5)
    fr, ff = lenet_features(real, tiny), lenet_features(fake, tiny)
    own_fid = frechet_distance(fr, ff).value
    assert tf["fid"] == pytest.approx(own_fid, rel=1e-4)
    pr = precision_recall(fr, ff, k=5)  # torch-fidelity 0.4: precision is the fake share in the real manifold
    assert (tf["precision"], tf["recall"]) == pytest.approx((pr.precision, pr.recall), abs=1e-6)
    assert tf["kid_subset_size"] == 120 and (tf["n_real"], tf["n_fake"], tf["k"]) == (300, 120, 5)
    from_features = fidelity_metrics_from_features(fr, ff, kid_subsets=5)
    assert from_features["fid"] == pytest.approx(tf["fid"], rel=1e-6)
    assert from_features["kid"] == pytest.approx(tf["kid"], rel=1e-4)  # float32 kernels


def test_metrics_package_does_not_import_torch_fidelity_or_pot():
    code = "import sys, madlib.metrics, madlib.data; print('torch_fidelity' in sys.modules, 'ot' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
