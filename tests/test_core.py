"""The image core (madlib.diffusion.core) every image method calls: its trainer resumes with the same numbers, every
caller's cache hit returns the bytes the fit wrote, its sampler gives the images the per-module loops gave, and its
evaluation equals the metric code each module had (computed inline here) on the same samples."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from madlib.data import load_images, to_uint8
from madlib.data.images import balanced_counts, balanced_index
from madlib.diffusion import core
from madlib.diffusion.config import EDMConfig
from madlib.diffusion.guidance import cfg_predictors, constant_weight, interval_weight
from madlib.diffusion.losses import EDMPrecond, edm_loss
from madlib.diffusion.samplers import ddpm_ancestral_sampler, edm_heun_sampler, euler_ancestral_sampler
from madlib.diffusion.schedules import cosine_schedule, edm_sigma_steps
from madlib.diffusion.unet import UNet
from madlib.metrics.lenet import load_lenet
from tests.helpers import awake, tiny_lenet_cache

pytestmark = pytest.mark.usefixtures("one_thread")

# 8x8 digits, a two-level U-Net of width 8, a few steps: every fit here takes well under a second
CONFIG = EDMConfig(image_size=8, base_channels=8, channel_mults=(1, 2), batch_size=16, warmup=32, ema_decay=0.9,
                   sample_steps=4, sample_batch=7)


lenet_cache = tiny_lenet_cache()  # the tiny classifier, trained once into this module's own cache


@pytest.fixture(scope="module")
def digits():
    images, labels = load_images("digits", "train", size=8, dtype="uint8")
    return images[:48], labels[:48]


def _bytes(net: torch.nn.Module) -> bytes:
    return b"".join(v.detach().cpu().contiguous().numpy().tobytes() for v in net.state_dict().values())


def _denoiser(num_classes: int = 10, num_sources: int = 0, size: int = 8) -> EDMPrecond:
    """An untrained U-Net whose zero-initialised layers are woken up, so that every input shows in its output."""
    net = EDMPrecond(UNet(1, size, 8, (1, 2), num_classes=num_classes, num_sources=num_sources, seed=0))
    return awake(net).eval().requires_grad_(False)


# --- train ------------------------------------------------------------------------------------------------------

def _loss_that_stops_at(call: int, calls: list):
    def loss(net, x, **kw):
        calls.append(1)
        if len(calls) == call:
            raise KeyboardInterrupt
        return edm_loss(net, x, **kw)

    return loss


def test_train_resumed_from_its_checkpoint_equals_an_uninterrupted_run(tmp_path, digits):
    images, labels = digits
    kw = dict(images_seen=200, seed=3, labels=labels, label_dropout=0.2, num_classes=10)  # 13 steps of 16
    whole = core.train(images, CONFIG, **kw)
    assert whole.stats.steps == 13 and not whole.loaded
    with pytest.raises(KeyboardInterrupt):  # killed during step 8: the last checkpoint holds step 6
        core.train(images, CONFIG, loss=_loss_that_stops_at(8, []), checkpoint=tmp_path / "c.pt", checkpoint_every=3,
                   **kw)
    calls = []
    resumed = core.train(images, CONFIG, loss=_loss_that_stops_at(0, calls), checkpoint=tmp_path / "c.pt",
                         checkpoint_every=3, **kw)
    assert len(calls) == 13 - 6
    assert _bytes(resumed.net) == _bytes(whole.net)  # the EMA network, from scratch: initial weights drawn again
    # a fine-tune of a given network (no EMA, AdamW) resumes the same way
    tune = EDMConfig(batch_size=16, lr=1e-3, ema_decay=0.0)
    start = core.train(images, CONFIG, **kw).net
    fine = dict(images_seen=160, seed=4, labels=labels, optimizer="adamw")
    uninterrupted = core.train(images, tune, net=_copy(start), **fine)
    with pytest.raises(KeyboardInterrupt):
        core.train(images, tune, net=_copy(start), loss=_loss_that_stops_at(5, []), checkpoint=tmp_path / "f.pt",
                   checkpoint_every=2, **fine)
    again = core.train(images, tune, net=_copy(start), checkpoint=tmp_path / "f.pt", checkpoint_every=2, **fine)
    assert _bytes(again.net) == _bytes(uninterrupted.net)


def _copy(net):
    import copy

    return copy.deepcopy(net).train().requires_grad_(True)


def test_from_scratch_the_initial_weights_are_the_first_draw_of_the_seed(digits):
    images, _ = digits
    seen = []
    core.train(images, CONFIG, images_seen=16, seed=7, net=lambda s: seen.append(s) or CONFIG.network(s))
    assert seen == [int(torch.randint(2**31, (1,), generator=torch.Generator().manual_seed(7)))]
    with pytest.raises(ValueError, match="snapshot_steps and checkpoint cannot be combined"):
        core.train(images, CONFIG, images_seen=16, seed=7, snapshot_steps=[1], checkpoint="unused.pt")
    with pytest.raises(ValueError, match="cache_dir needs role and settings"):
        core.train(images, CONFIG, images_seen=16, seed=7, cache_dir="unused")
    with pytest.raises(ValueError, match=r"images must be uint8 images \[n >= 1, C, H, W\]"):
        core.train(images.float(), CONFIG, images_seen=16, seed=7)


def test_bf16_autocast_trains_and_samples_close_to_fp32_and_is_keyed_apart(tmp_path, digits):
    # the GPU option, checked on the CPU: the same draws, the forward pass in bfloat16 (8 mantissa bits)
    images, _ = digits
    kw = dict(images_seen=64, seed=3, cache_dir=tmp_path, role="t", settings={"what": "precision"})
    full, half = (core.train(images, CONFIG, precision=p, **kw) for p in ("fp32", "bf16"))
    assert half.key != full.key and not half.loaded  # another number, another file
    a, b = (torch.cat([v.flatten() for v in t.net.state_dict().values() if v.is_floating_point()]) for t in (full, half))
    moved = (a - torch.cat([v.flatten() for v in CONFIG.network(int(torch.randint(2**31, (1,), generator=torch.Generator().manual_seed(3)))).state_dict().values()
                            if v.is_floating_point()])).norm()
    assert 0 < (a - b).norm() < 0.2 * moved  # different numbers, the same training (far less than what 4 steps moved)
    assert all(v.dtype == torch.float32 for v in half.net.state_dict().values() if v.is_floating_point())
    x = [core.sample(full.net, 16, seed=1, image_shape=(1, 8, 8), sigmas=CONFIG.sigmas(), precision=p) for p in ("fp32", "bf16")]
    assert x[1].dtype == torch.uint8 and (x[0].float() - x[1].float()).abs().mean() < 8  # within a few grey levels on average
    with pytest.raises(ValueError, match=r"precision must be one of \['bf16', 'fp32'\]; got 'fp16'"):
        core.sample(full.net, 2, seed=1, image_shape=(1, 8, 8), sigmas=CONFIG.sigmas(), precision="fp16")
    with pytest.raises(ValueError, match=r"precision must be one of"):
        core.train(images, CONFIG, images_seen=16, seed=7, precision="half")


# --- the caches: a hit returns the bytes the fit wrote ----------------------------------------------------------

def test_a_core_cache_hit_returns_the_written_network_snapshots_and_stats(tmp_path, digits):
    images, labels = digits
    kw = dict(images_seen=96, seed=2, labels=labels, label_dropout=0.1, num_classes=10, snapshot_steps=[2, 4],
              cache_dir=tmp_path, role="test", settings={"what": "a test fit"})
    fresh = core.train(images, CONFIG, **kw)
    hit = core.train(images, CONFIG, **kw)
    assert not fresh.loaded and hit.loaded and hit.key == fresh.key and len(list(tmp_path.glob("test-*.pt"))) == 1
    assert _bytes(hit.net) == _bytes(fresh.net)
    assert sorted(hit.snapshots) == [2, 4]
    assert all(_bytes(hit.snapshots[s]) == _bytes(fresh.snapshots[s]) for s in (2, 4))
    assert hit.stats == fresh.stats  # the stats of the run that wrote the file
    other = core.train(images, CONFIG, **(kw | {"labels": labels.flip(0)}))  # other labels: another key, trained
    assert not other.loaded and other.key != fresh.key


def test_sims_base_cache_hit_returns_the_same_bytes(tmp_path, digits):
    from madlib.methods.sims import SIMSConfig, train_base

    config = SIMSConfig(image_size=8, base_channels=8, channel_mults=(1, 2), warmup=0, sample_steps=4)
    fresh = train_base(digits[0], config, images_seen=64, seed=4, cache_dir=tmp_path)
    hit = train_base(digits[0], config, images_seen=64, seed=4, cache_dir=tmp_path)
    assert fresh.stats is not None and hit.stats is None and _bytes(hit.net) == _bytes(fresh.net)


def test_casd_cache_hit_returns_the_same_bytes(tmp_path, digits):
    from madlib.methods import casd

    settings = casd.EDMSettings(image_size=8, base_channels=8, channel_mults=(1, 2), images_seen=64, batch_size=16)
    real, synthetic = digits[0][:16], digits[0][16:40]
    fresh = casd.casd_train(real, synthetic, settings, 1, cache_dir=tmp_path)
    hit = casd.casd_train(real, synthetic, settings, 1, cache_dir=tmp_path)
    assert not fresh.from_cache and hit.from_cache and hit.key == fresh.key
    assert _bytes(hit.net) == _bytes(fresh.net) and hit.final_loss == fresh.final_loss
    assert hit.train_seconds is None and hit.images_per_s is None and fresh.train_seconds > 0
    source = casd.SourceSpec("good", "digits", images_seen=32)
    first, again = (casd.train_source(source, settings, 0, cache_dir=tmp_path) for _ in range(2))
    assert again.from_cache and _bytes(again.net) == _bytes(first.net)


def test_redifine_m0_cache_hit_returns_the_same_bytes(tmp_path):
    from madlib.methods.redifine import m0_cache_path, pretrain_m0

    tiny = dict(dataset="digits", image_size=8, base_channels=8, images_seen=64, batch_size=32, warmup=0)
    fresh = pretrain_m0(**tiny, cache_dir=tmp_path)
    hit = pretrain_m0(**tiny, cache_dir=tmp_path)
    assert not fresh.cached and hit.cached and _bytes(hit.net) == _bytes(fresh.net)
    assert hit.path == fresh.path == m0_cache_path(fresh.settings, tmp_path) and fresh.path.is_file()
    assert hit.seconds == fresh.seconds  # the training time of the run that wrote it
    assert _bytes(pretrain_m0(**tiny, use_cache=False).net) == _bytes(fresh.net)


# --- sample: the per-module loops it replaced, written out --------------------------------------------------------

def test_heun_sampling_equals_the_sims_and_casd_loops():
    net, aux = _denoiser(num_classes=0, num_sources=2), _denoiser(num_classes=0)
    awake(aux, seed=1)
    sigmas, n, batch = edm_sigma_steps(4), 20, 7  # 7 x 64 values per chunk, a multiple of 16
    # SIMS before: all latents at once from the seed, split into chunks; guided by the auxiliary model from step 1
    g = torch.Generator().manual_seed(5)
    chunks = []
    for z in torch.randn((n, 1, 8, 8), generator=g).split(batch):
        with torch.no_grad():
            x = edm_heun_sampler(lambda x, s: net(x, s), z[None], sigmas, guide=aux, weight=interval_weight(1.5, 1))
        chunks.append(to_uint8(x[0], (-1.0, 1.0)).cpu())
    got = core.sample(net, n, seed=5, image_shape=(1, 8, 8), sigmas=sigmas, guide=aux, weight=interval_weight(1.5, 1),
                      sample_batch=batch)
    assert got.dtype == torch.uint8 and torch.equal(got, torch.cat(chunks))
    # CASD before: each chunk's latents drawn in turn, the source label 0 on every call
    g = torch.Generator().manual_seed(3)
    chunks = []
    for start in range(0, n, batch):
        b = min(batch, n - start)
        latents = torch.randn((1, b, 1, 8, 8), generator=g)
        s = torch.zeros((1, b), dtype=torch.int64)
        with torch.no_grad():
            x = edm_heun_sampler(lambda x, sigma: net(x, sigma, s=s), latents, sigmas)
        chunks.append(to_uint8(x[0], (-1.0, 1.0)).cpu())
    assert torch.equal(core.sample(net, n, seed=3, image_shape=(1, 8, 8), sigmas=sigmas, sources=0, sample_batch=batch),
                       torch.cat(chunks))


def test_heun_latents_do_not_depend_on_the_chunks_when_each_holds_a_multiple_of_16_values():
    # 14x14: 196 values per image, so chunks of 4 images (784 values) give the latents of one draw of all n
    net = _denoiser(num_classes=0, size=14)
    sigmas = edm_sigma_steps(3)
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        whole = to_uint8(edm_heun_sampler(lambda x, s: net(x, s), torch.randn((1, 10, 1, 14, 14), generator=g),
                                          sigmas)[0], (-1.0, 1.0))
    assert torch.equal(core.sample(net, 10, seed=2, image_shape=(1, 14, 14), sigmas=sigmas, sample_batch=4), whole)


def test_euler_ancestral_and_ddpm_sampling_equal_the_redifine_and_mad_loops():
    net = _denoiser()
    labels = torch.tensor([3, 3, 1, 7, 0, 9, 2, 5, 5, 8, 0])
    sigmas = edm_sigma_steps(4)
    weight = lambda i, n: 6.5 * math.exp(-2.0 * i / n)  # noqa: E731 - a schedule, as ReDiFine's
    g = torch.Generator().manual_seed(6)
    chunks = []
    for y in labels.split(4):  # ReDiFine before: latents then the step noise of each chunk, one generator
        y = y[None]
        noise = torch.randn((1, y.shape[1], 1, 8, 8), generator=g)
        with torch.no_grad():
            x = euler_ancestral_sampler(lambda x, s, y=y: net(x, s, y), noise, sigmas,
                                        guide=lambda x, s: net(x, s, None), weight=weight, generator=g)
        chunks.append(to_uint8(x[0], (-1.0, 1.0)).cpu())
    got = core.sample(net, len(labels), seed=6, image_shape=(1, 8, 8), sampler="euler_ancestral", sigmas=sigmas,
                      labels=labels, guide="cfg", weight=weight, sample_batch=4)
    assert torch.equal(got, torch.cat(chunks))
    # MAD's DDPM (ImageDiffusionFamily.generate before): CFG at w = 1, x0 clipped, a generator handed in
    eps = awake(UNet(1, 8, 8, (1, 2), num_classes=10, seed=1)).eval()
    schedule = cosine_schedule(10)
    g = torch.Generator().manual_seed(9)
    chunks = []
    for y in labels.split(5):
        noise = torch.randn((1, len(y), 1, 8, 8), generator=g)
        primary, guide = cfg_predictors(eps, y[None])
        with torch.no_grad():
            x = ddpm_ancestral_sampler(primary, noise, schedule, guide=guide, weight=constant_weight(1.0), generator=g,
                                       clip_x0=(-1.0, 1.0))
        chunks.append(to_uint8(x[0], (-1.0, 1.0)).cpu())
    got = core.sample(eps, len(labels), seed=torch.Generator().manual_seed(9), image_shape=(1, 8, 8), sampler="ddpm",
                      schedule=schedule, labels=labels, guide="cfg", weight=1.0, sample_batch=5, clip_x0=(-1.0, 1.0))
    assert torch.equal(got, torch.cat(chunks))
    with pytest.raises(ValueError, match="labels must be"):
        core.sample(net, 3, seed=0, image_shape=(1, 8, 8), sigmas=sigmas, labels=labels)
    with pytest.raises(ValueError, match="needs sigmas"):
        core.sample(net, 3, seed=0, image_shape=(1, 8, 8))


# --- evaluate: the metric code each module had, written out -------------------------------------------------------

@pytest.fixture(scope="module")
def sets():
    """Two uint8 sets of different digits (a 'fake' and a reference) with their labels, and the tiny LeNet."""
    train, train_labels = load_images("digits", "train", size=14, dtype="uint8")
    test, test_labels = load_images("digits", "test", size=14, dtype="uint8")
    return train[:120], train_labels[:120], test, test_labels, load_lenet("tiny")


def test_casd_sample_metrics_equal_their_old_formulas(sets):
    from madlib.methods import casd
    from madlib.metrics import (HeldOutMetrics, class_shares, density_coverage, frechet_distance, lenet_features,
                                precision_recall)

    fake_images, _, real_images, _, lenet = sets
    fake, real = lenet_features(fake_images, lenet), lenet_features(real_images, lenet)
    precision, recall = precision_recall(real, fake, k=5)
    dc = density_coverage(real, fake, k=5)
    old = {"fid": float(frechet_distance(real, fake)), "precision": precision, "recall": recall, "density": dc.density,
           "coverage": dc.coverage, "class_shares": class_shares(fake_images, lenet, 10),
           "n_fake": len(fake_images), "n_real": len(real_images)}
    for reference in (real_images, HeldOutMetrics(real_images, lenet)):  # images, or their features computed once
        new = casd.sample_metrics(fake_images, reference, lenet)
        assert set(old) <= set(new) and new["kid"] == HeldOutMetrics(real_images, lenet).protocol(fake_images)["kid"]
        for key, value in old.items():
            np.testing.assert_array_equal(new[key], value, err_msg=key)


def test_wgan_scores_equal_their_old_formulas(sets):
    from madlib.metrics import frechet_distance, lenet_features, lenet_logits, precision_recall
    from madlib.models.gan import WGANFamily

    family = WGANFamily("digits", runs=1, image_size=14, lenet="tiny")
    fake_images, lenet = sets[0], family._lenet()
    real = lenet_features(family.test_images, lenet)
    fake = lenet_features(fake_images, lenet)
    precision, recall = precision_recall(real, fake, k=5)
    probs = lenet_logits(fake_images, lenet).softmax(1).cpu()
    p = torch.bincount(probs.argmax(1), minlength=10).double()
    p = p / p.sum()
    old = {"fid": float(frechet_distance(real, fake)), "precision": float(precision), "recall": float(recall),
           "class_entropy": float(-(p[p > 0] * p[p > 0].log()).sum() / math.log(len(p))),
           "top_class_share": float(p.max()), "confidence": float(probs.max(1).values.mean())}
    for _ in range(2):  # the second call reads the held-out features it kept
        assert family.scores(fake_images) == old


def test_image_family_measure_and_core_evaluate_equal_image_metrics(sets):
    from madlib.metrics import HeldOutMetrics, image_metrics
    from madlib.metrics.images import class_readouts
    from madlib.models.images import ImageDiffusionFamily

    fake_images, fake_labels, real_images, real_labels, lenet = sets
    family = ImageDiffusionFamily("digits", image_size=14, base_channels=8, channel_mults=(1, 2), lenet="tiny")
    for _ in range(2):  # the second call reads the held-out features it kept
        assert family.measure(fake_images, fake_labels) == image_metrics(fake_images, fake_labels, family.test_images,
                                                                         family.test_labels, family._lenet())
    new = core.evaluate(HeldOutMetrics(real_images, lenet), fake_images, fake_labels,
                        real=class_readouts(real_images, real_labels, lenet))
    assert new == image_metrics(fake_images, fake_labels, real_images, real_labels, lenet)


def test_redifine_real_floors_equal_image_metrics(sets):
    from madlib.methods.redifine import real_floors
    from madlib.metrics import image_metrics

    d0, d0_labels, other, other_labels, lenet = sets
    floors = real_floors(d0, d0_labels, other[:120], other_labels[:120], lenet, seed=1)
    rng = np.random.default_rng(1)  # the old halves, written out
    first = np.concatenate([rng.permutation(np.flatnonzero(d0_labels.numpy() == c))[: (d0_labels == c).sum() // 2]
                            for c in range(10)])
    second = np.setdiff1d(np.arange(len(d0_labels)), first)
    assert floors["halves"] == image_metrics(d0[first], d0_labels[first], d0[second], d0_labels[second], lenet)
    assert floors["fresh"] == image_metrics(other[:120], other_labels[:120], d0, d0_labels, lenet)


# --- the one class-balanced subset --------------------------------------------------------------------------------

def test_balanced_index_equals_the_subsets_each_module_drew():
    labels = torch.as_tensor(np.random.default_rng(0).integers(0, 4, 200))
    assert balanced_counts(10, 4).tolist() == [3, 3, 2, 2]
    # CASD's first n of each class in storage order
    first = balanced_index(labels, 10)
    assert first.tolist() == [int(i) for c, k in zip(range(4), (3, 3, 2, 2)) for i in np.flatnonzero(labels == c)[:k]]
    # the MAD family's draw: rng.choice per class, in class order
    rng = np.random.default_rng(3)
    old = np.concatenate([rng.choice(np.flatnonzero(labels.numpy() == c), k, replace=False)
                          for c, k in [(0, 3), (1, 3), (2, 2), (3, 2)]])
    assert balanced_index(labels, 10, classes=range(4), rng=np.random.default_rng(3)).tolist() == old.tolist()
    # ReDiFine's: the same draws over the pool left after ``exclude``, sorted within each class
    allowed = np.ones(200, bool)
    allowed[first.numpy()] = False
    rng = np.random.default_rng(4)
    old = np.concatenate([np.sort(rng.choice(np.flatnonzero((labels.numpy() == c) & allowed), k, replace=False))
                          for c, k in [(0, 3), (1, 3), (2, 2), (3, 2)]])
    got = balanced_index(labels, 10, classes=range(4), rng=np.random.default_rng(4), exclude=first, sort=True)
    assert got.tolist() == old.tolist() and not set(got.tolist()) & set(first.tolist())
    with pytest.raises(ValueError, match="needs 100 images of class 0; the split holds"):
        balanced_index(labels, 400)
