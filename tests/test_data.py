"""Embedded datasets and exact toy distributions against independent facts."""

import math

import numpy as np
import pytest
import torch

from madlib.data import DATASETS, grid_mixture, load_images, Rosenbrock, sims_gaussian, stratified_holdout


# --- images -------------------------------------------------------------------------------------

def test_mnist5k_split_shapes_and_class_balance():
    x, y = load_images("mnist5k", "train")
    xt, yt = load_images("mnist5k", "test")
    assert x.shape == (4000, 1, 28, 28) and x.dtype == torch.float32
    assert xt.shape == (1000, 1, 28, 28)
    assert torch.bincount(y).tolist() == [400] * 10
    assert torch.bincount(yt).tolist() == [100] * 10
    assert 0.0 <= float(x.min()) and float(x.max()) == 1.0
    xa, _ = load_images("mnist5k", "all", dtype="uint8")
    assert xa.shape[0] == 5000 and xa.dtype == torch.uint8 and int(xa.max()) == 255
    # train and held-out are disjoint and together the whole set
    flat = {bytes(v) for v in xa.flatten(1).numpy()}
    tr = {bytes(v) for v in load_images("mnist5k", "train", dtype="uint8")[0].flatten(1).numpy()}
    te = {bytes(v) for v in load_images("mnist5k", "test", dtype="uint8")[0].flatten(1).numpy()}
    assert tr | te == flat and not (tr & te)


def test_load_is_deterministic_and_views_agree():
    a, ya = load_images("mnist5k", "test", dtype="uint8")
    b, yb = load_images("mnist5k", "test", dtype="uint8")
    assert torch.equal(a, b) and torch.equal(ya, yb)
    f, _ = load_images("mnist5k", "test", dtype="float64")
    assert torch.allclose(f, a.double() / 255.0)
    s, _ = load_images("mnist5k", "test", dtype="float32", pixel_range=(-1.0, 1.0))
    assert torch.allclose(s.double(), 2 * a.double() / 255.0 - 1, atol=1e-6)


def test_digits_upscaled_and_stratified():
    x, y = load_images("digits", "train")
    xt, yt = load_images("digits", "test")
    assert x.shape[1:] == (1, 8, 8) and x.shape[0] + xt.shape[0] == 1797
    counts = torch.bincount(y, minlength=10) + torch.bincount(yt, minlength=10)
    assert torch.allclose(torch.bincount(yt, minlength=10).double() / counts, torch.full((10,), 0.2, dtype=torch.float64), atol=0.01)
    up, _ = load_images("digits", "train", size=28, dtype="uint8")
    assert up.shape == (x.shape[0], 1, 28, 28) and up.dtype == torch.uint8
    # the upscaled image is the same digit: pooled back to 8x8 it correlates with the original
    down = torch.nn.functional.adaptive_avg_pool2d(up.double() / 255, 8).flatten()
    assert float(torch.corrcoef(torch.stack([down, x.double().flatten()]))[0, 1]) > 0.9
    assert abs(float(up.double().mean() / 255 - x.double().mean())) < 0.02


def test_stratified_holdout_every_fifth():
    labels = np.repeat(np.arange(3), [10, 7, 5])
    held = stratified_holdout(labels)
    assert held.sum() == 2 + 1 + 1
    assert np.flatnonzero(held).tolist() == [4, 9, 14, 21]


def test_unknown_name_and_missing_root(tmp_path):
    with pytest.raises(ValueError, match="name must be one of .*mnist5k"):
        load_images("cifar10")
    with pytest.raises(ValueError, match="root is required for dataset 'mnist'"):
        load_images("mnist")
    with pytest.raises(FileNotFoundError, match="root .* does not exist"):
        load_images("mnist", root=tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="holds no torchvision MNIST files"):
        load_images("mnist", root=tmp_path)
    with pytest.raises(ValueError, match="split must be one of"):
        load_images("mnist5k", "validation")
    with pytest.raises(ValueError, match="dtype must be one of"):
        load_images("mnist5k", dtype="int16")
    assert set(DATASETS) == {"mnist5k", "digits", "mnist"}


def test_full_mnist_from_a_local_root(tmp_path):
    """A tiny fake torchvision MNIST folder (idx files) loads through the 'mnist' entry, offline."""
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)

    def write(name, magic, arr):
        header = magic.to_bytes(4, "big") + b"".join(int(s).to_bytes(4, "big") for s in arr.shape)
        (raw / name).write_bytes(header + arr.astype(np.uint8).tobytes())

    for prefix, n in (("train", 30), ("t10k", 10)):
        write(f"{prefix}-images-idx3-ubyte", 2051, rng.integers(0, 256, (n, 28, 28)))
        write(f"{prefix}-labels-idx1-ubyte", 2049, np.arange(n) % 10)
    x, y = load_images("mnist", "train", root=tmp_path)
    xt, yt = load_images("mnist", "test", root=tmp_path, dtype="uint8")
    assert x.shape == (30, 1, 28, 28) and xt.shape == (10, 1, 28, 28) and yt.tolist() == list(range(10))


# --- toy distributions ----------------------------------------------------------------------------

TOYS = {"sims": sims_gaussian(), "grid": grid_mixture(), "rosenbrock": Rosenbrock()}
# integration boxes holding essentially all the mass
BOXES = {"sims": ((-9, 9), (-9, 9)), "grid": ((-3, 3), (-3, 3)), "rosenbrock": ((-7, 7), (-5, 45))}


@pytest.mark.parametrize("name", list(TOYS))
def test_log_prob_integrates_to_one(name):
    (a, b), (c, d) = BOXES[name]
    n = 1201
    u, v = torch.linspace(a, b, n, dtype=torch.float64), torch.linspace(c, d, n, dtype=torch.float64)
    grid = torch.stack(torch.meshgrid(u, v, indexing="ij"), -1)
    mass = TOYS[name].log_prob(grid).exp().sum() * (u[1] - u[0]) * (v[1] - v[0])
    assert abs(float(mass) - 1.0) < 2e-3


@pytest.mark.parametrize("name", list(TOYS))
def test_score_is_the_gradient_of_log_prob(name):
    x = TOYS[name].sample(200, seed=1).requires_grad_(True)
    (grad,) = torch.autograd.grad(TOYS[name].log_prob(x).sum(), x)
    assert torch.allclose(TOYS[name].score(x.detach()), grad, rtol=1e-9, atol=1e-9)
    # and a central finite difference, independent of autograd
    h = 1e-5
    x0 = x.detach()[:20]
    fd = torch.stack([(TOYS[name].log_prob(x0 + h * e) - TOYS[name].log_prob(x0 - h * e)) / (2 * h)
                      for e in torch.eye(2, dtype=torch.float64)], -1)
    assert torch.allclose(TOYS[name].score(x0), fd, rtol=1e-4, atol=1e-4)


def test_sims_gaussian_samples_match_its_moments():
    x = sims_gaussian().sample(200_000, seed=0)
    assert torch.allclose(x.mean(0), torch.zeros(2, dtype=torch.float64), atol=0.02)
    assert torch.allclose(torch.cov(x.T), torch.tensor([[2.0, 1.0], [1.0, 2.0]], dtype=torch.float64), atol=0.03)


def test_rosenbrock_samples_match_log_prob():
    """Histogram of exact samples against the density integrated over the same cells."""
    r = Rosenbrock()
    x = r.sample(400_000, seed=3)
    edges1, edges2 = torch.linspace(-2, 2, 9, dtype=torch.float64), torch.linspace(-1, 4, 11, dtype=torch.float64)
    hist = torch.histogramdd(x, bins=[edges1, edges2]).hist / x.shape[0]
    fine = 40
    u = torch.linspace(-2, 2, 8 * fine + 1, dtype=torch.float64)
    v = torch.linspace(-1, 4, 10 * fine + 1, dtype=torch.float64)
    uc, vc = (u[1:] + u[:-1]) / 2, (v[1:] + v[:-1]) / 2
    dens = r.log_prob(torch.stack(torch.meshgrid(uc, vc, indexing="ij"), -1)).exp() * (u[1] - u[0]) * (v[1] - v[0])
    expected = dens.reshape(8, fine, 10, fine).sum((1, 3))
    se = torch.sqrt(expected * (1 - expected) / x.shape[0]) + 1e-6
    assert float(((hist - expected) / se).abs().max()) < 5.0
    # the exact conditional: x2 | x1 ~ N(x1^2, 1/2)
    resid = x[:, 1] - x[:, 0] ** 2
    assert abs(float(resid.mean())) < 0.01 and abs(float(resid.var()) - 0.5) < 0.01


def test_grid_mixture_layout_and_samples_hit_all_modes():
    g = grid_mixture()
    assert g.n_modes == 25 and g.means.shape == (25, 2)
    assert sorted(set(g.means[:, 0].tolist())) == [-2.0, -1.0, 0.0, 1.0, 2.0]
    x, mode = g.sample(10_000, seed=0, return_modes=True)
    assert torch.equal(g.mode_of(x), mode)  # modes are 10 std apart: no sample crosses a cell border
    counts = torch.bincount(mode, minlength=25)
    assert counts.min() > 300  # 400 expected per mode
    assert torch.allclose((x - g.means[mode]).std(0), torch.full((2,), g.std, dtype=torch.float64), rtol=0.05)


def test_sampling_needs_an_explicit_seed_and_is_reproducible():
    g = grid_mixture()
    with pytest.raises(ValueError, match="seed"):
        g.sample(10)
    assert torch.equal(g.sample(50, seed=4), g.sample(50, generator=torch.Generator().manual_seed(4)))
    assert not torch.equal(Rosenbrock().sample(5, seed=0), Rosenbrock().sample(5, seed=1))
    assert math.isclose(Rosenbrock().log_norm, math.log(math.pi * math.sqrt(2)))
