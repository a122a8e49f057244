"""CASD Algorithm 1-2 (madlib.methods.casd): source labels, pooling, baselines, sampling with label 0, the cache."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from madlib.data import load_images
from madlib.data.images import from_uint8
from madlib.diffusion.losses import edm_loss
from madlib.methods import casd

TINY = casd.EDMSettings(image_size=8, base_channels=8, channel_mults=(1, 2), images_seen=96, batch_size=16,
                        sample_steps=4, sample_batch=32)


def _images(n: int, low: int, high: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(low, high + 1, (n, 1, 8, 8), generator=g).to(torch.uint8)


class _Recorder:
    """Wraps edm_loss and keeps the batch (images in [-1, 1]) and source labels of every call."""

    def __init__(self):
        self.batches, self.sources = [], []

    def __call__(self, net, x0, generator=None, y=None, **labels):
        self.batches.append(x0.detach().clone())
        self.sources.append(None if labels.get("s") is None else labels["s"].detach().clone())
        return edm_loss(net, x0, generator=generator, y=y, **labels)


class _SpyDenoiser(torch.nn.Module):
    """Records the source label of every network evaluation of a wrapped denoiser."""

    def __init__(self, inner):
        super().__init__()
        self.inner, self.seen = inner, []

    def forward(self, x, sigma, y=None, **labels):
        self.seen.append(labels.get("s"))
        return self.inner(x, sigma, y, **labels)


def test_casd_algorithm_1_line_3_source_labels():
    s = casd.source_labels(3, 5)
    assert s.tolist() == [0, 0, 0, 1, 1, 1, 1, 1]
    real, synth = _images(3, 0, 10, 0), _images(5, 200, 255, 1)
    images, sources = casd.pooled_training_set(real, synth)
    assert torch.equal(images[:3], real) and torch.equal(images[3:], synth) and torch.equal(sources, s)


def test_casd_sample_uses_source_label_0_only():
    fit = casd.casd_train(_images(16, 0, 100, 0), _images(16, 150, 255, 1), TINY, seed=0)
    spy = _SpyDenoiser(fit.net)
    images = casd.casd_sample(casd.Fit(spy, True, fit.key, False, None, None), 40, TINY, seed=3)
    assert images.shape == (40, 1, 8, 8) and images.dtype == torch.uint8
    # Algorithm 2: 2 T - 1 evaluations per chain, two chains (sample_batch 32: batches of 32 and 8)
    assert len(spy.seen) == 2 * TINY.network_evaluations()
    assert all(s is not None and s.shape[-1] in (32, 8) and bool((s == casd.REAL).all()) for s in spy.seen)
    # and the spy did not change the numbers
    assert torch.equal(images, casd.casd_sample(fit, 40, TINY, seed=3))


def test_dm_and_sda_sample_without_a_source_label():
    fit = casd.dm_train(_images(16, 0, 100, 0), TINY, seed=0)
    spy = _SpyDenoiser(fit.net)
    casd.heun_sample(casd.Fit(spy, False, fit.key, False, None, None), 8, TINY, seed=0)
    assert spy.seen and all(s is None for s in spy.seen)
    with pytest.raises(ValueError, match="casd_sample needs a source-conditional fit"):
        casd.casd_sample(fit, 8, TINY, seed=0)
    with pytest.raises(ValueError, match="source must be None"):
        casd.heun_sample(fit, 8, TINY, seed=0, source=0)


def test_pooled_training_sees_each_source_in_proportion_to_its_count(monkeypatch):
    # Eq. 5: every image of the pool weighs 1 / (n + m); 3 whole epochs of the 30 + 90 pool, batch 24
    recorder = _Recorder()
    monkeypatch.setattr(casd, "edm_loss", recorder)
    n, m = 30, 90
    settings = casd.EDMSettings(**{**TINY.__dict__, "images_seen": 3 * (n + m), "batch_size": 24})
    casd.casd_train(_images(n, 0, 100, 0), _images(m, 150, 255, 1), settings, seed=0)
    s = torch.cat([b.flatten() for b in recorder.sources])
    assert s.numel() == 3 * (n + m)
    assert set(s.tolist()) == {0, 1}  # no label dropout: the "no label" token 2 never appears
    assert int((s == 0).sum()) == 3 * n and int((s == 1).sum()) == 3 * m
    # the label matches the image's source (real images are dark, synthetic bright)
    x = torch.cat([b.reshape(-1, 64) for b in recorder.batches])
    bright = x.mean(1) > 0
    assert torch.equal(bright, s == 1)


def test_dm_never_sees_a_synthetic_image(monkeypatch):
    recorder = _Recorder()
    monkeypatch.setattr(casd, "edm_loss", recorder)
    real, synth = _images(20, 0, 100, 0), _images(60, 150, 255, 1)
    casd.train_method("dm", real, synth, TINY, seed=0)
    top = from_uint8(torch.tensor([100], dtype=torch.uint8), casd.PIXEL_RANGE).item()
    assert recorder.batches and all(float(b.max()) <= top + 1e-6 for b in recorder.batches)
    assert all(s is None for s in recorder.sources)
    recorder.batches.clear()
    casd.train_method("sda", real, synth, TINY, seed=0)  # SDA does see them, without a label
    assert any(float(b.max()) > top for b in recorder.batches)
    assert all(s is None for s in recorder.sources)


def test_same_seed_same_fit_and_samples():
    real, synth = _images(16, 0, 100, 0), _images(16, 150, 255, 1)
    a = casd.casd_train(real, synth, TINY, seed=4)
    b = casd.casd_train(real, synth, TINY, seed=4)
    for p, q in zip(a.net.parameters(), b.net.parameters()):
        assert torch.equal(p, q)
    assert torch.equal(casd.casd_sample(a, 8, TINY, 1), casd.casd_sample(b, 8, TINY, 1))
    c = casd.casd_train(real, synth, TINY, seed=5)
    assert not torch.equal(next(a.net.parameters()), next(c.net.parameters()))


def test_cached_source_with_other_settings_is_not_reused(tmp_path):
    spec = casd.SourceSpec("good", "digits", images_seen=64)
    first = casd.train_source(spec, TINY, seed=0, cache_dir=tmp_path)
    again = casd.train_source(spec, TINY, seed=0, cache_dir=tmp_path)
    assert not first.from_cache and again.from_cache and again.key == first.key
    for p, q in zip(first.net.parameters(), again.net.parameters()):
        assert torch.equal(p, q)
    others = [casd.train_source(casd.SourceSpec("good", "digits", images_seen=80), TINY, seed=0, cache_dir=tmp_path),
              casd.train_source(spec, casd.EDMSettings(**{**TINY.__dict__, "lr": 1e-3}), seed=0, cache_dir=tmp_path),
              casd.train_source(spec, TINY, seed=1, cache_dir=tmp_path),
              casd.train_source(casd.SourceSpec("good", "digits", (0, 1), images_seen=64), TINY, seed=0, cache_dir=tmp_path)]
    assert not any(o.from_cache for o in others)
    assert len({first.key, *(o.key for o in others)}) == 5
    assert len(list(tmp_path.glob("source-*.pt"))) == 5
    assert not list(tmp_path.glob("*.tmp"))  # written atomically: no temporary files left


def test_cache_file_whose_stored_settings_differ_is_rebuilt(tmp_path):
    spec = casd.SourceSpec("good", "digits", images_seen=64)
    first = casd.train_source(spec, TINY, seed=0, cache_dir=tmp_path)
    (path,) = tmp_path.glob("source-*.pt")
    stored = torch.load(path, weights_only=True)
    stored["settings"]["training"]["lr"] = 0.5  # a file under this name that claims other settings
    torch.save(stored, path)
    assert not casd.train_source(spec, TINY, seed=0, cache_dir=tmp_path).from_cache
    assert casd.train_source(spec, TINY, seed=0, cache_dir=tmp_path).from_cache  # rewritten with the right settings
    assert first.key


def test_synthetic_set_is_cached_and_deterministic(tmp_path):
    source = casd.train_source(casd.SourceSpec("good", "digits", images_seen=64), TINY, seed=0, cache_dir=tmp_path)
    a = casd.synthetic_set(source, 12, TINY, seed=2, cache_dir=tmp_path)
    b = casd.synthetic_set(source, 12, TINY, seed=2)  # no cache: sampled again, same numbers
    assert a.shape == (12, 1, 8, 8) and torch.equal(a, b)
    assert len(list(tmp_path.glob("synthetic-*.pt"))) == 1
    assert casd.synthetic_set(source, 0, TINY, seed=2).shape == (0, 1, 8, 8)


def test_source_classes_restrict_the_training_images():
    spec = casd.SourceSpec("inside", "digits", classes=(2, 3, 4, 5, 6, 7))
    images = spec.training_images(8)
    all_images, labels = load_images("digits", "train", size=8, dtype="uint8")
    keep = (labels >= 2) & (labels <= 7)
    assert torch.equal(images, all_images[keep])


def test_first_n_balanced_takes_the_first_images_of_each_class():
    labels = torch.tensor([0, 1, 0, 2, 1, 0, 2, 2, 1, 0])
    images = torch.arange(10).reshape(10, 1, 1, 1)
    x, y = casd.first_n_balanced(images, labels, 5)
    assert y.tolist() == [0, 0, 1, 1, 2] and x.flatten().tolist() == [0, 2, 1, 4, 3]
    x, y = casd.first_n_balanced(images, labels, 4, classes=[1, 2])
    assert y.tolist() == [1, 1, 2, 2] and x.flatten().tolist() == [1, 4, 3, 6]
    with pytest.raises(ValueError, match="needs 4 images of class 1"):
        casd.first_n_balanced(images, labels, 8, classes=[1, 2])


def test_unknown_method_names_the_accepted_ones():
    with pytest.raises(ValueError, match="method"):
        casd.train_method("cfg", _images(4, 0, 10, 0), None, TINY, seed=0)
    with pytest.raises(ValueError, match="needs synthetic images"):
        casd.train_method("casd", _images(4, 0, 10, 0), None, TINY, seed=0)


def test_class_histogram_of_real_images_matches_their_labels():
    # the classifier's class shares of held-out MNIST digits against the shares of their true labels
    from madlib.metrics import class_shares, load_lenet

    images, labels = load_images("mnist5k", "test", size=14, dtype="uint8")
    keep = labels < 8  # an uneven mix: digits 0-7 only, as CASD-2's real set
    images, labels = images[keep][::2], labels[keep][::2]
    shares = class_shares(images, load_lenet())
    truth = np.bincount(labels.numpy(), minlength=10) / len(labels)
    assert np.abs(shares - truth).sum() < 0.08  # total variation < 0.04
    assert shares[8] + shares[9] < 0.03
    metrics = casd.sample_metrics(images, images, load_lenet())
    np.testing.assert_allclose(metrics["class_shares"], shares)
    assert metrics["fid"] < 1e-6 and metrics["coverage"] == 1.0


def test_casd_sample_is_algorithm_2_written_out():
    # CASD Algorithm 2 line by line (t_i = sigma_i, s_theta = D): Euler step, then Heun's average where t_{i-1} != 0
    fit = casd.casd_train(_images(16, 0, 100, 0), _images(16, 150, 255, 1), TINY, seed=0)
    n = 6
    g = torch.Generator().manual_seed(9)
    x = torch.randn((1, n, 1, 8, 8), generator=g) * TINY.sigma_max
    s = torch.zeros((1, n), dtype=torch.int64)
    t = [float(v) for v in TINY.sigmas()]
    with torch.no_grad():
        for i in range(len(t) - 1):
            d = (x - fit.net(x, t[i], s=s)) / t[i]
            x_next = x + (t[i + 1] - t[i]) * d
            if t[i + 1] != 0:
                d_prime = (x_next - fit.net(x_next, t[i + 1], s=s)) / t[i + 1]
                x_next = x + (t[i + 1] - t[i]) * (0.5 * d + 0.5 * d_prime)
            x = x_next
    expected = casd.to_uint8(x[0], casd.PIXEL_RANGE)
    got = casd.casd_sample(fit, n, TINY, seed=9)
    assert (got.int() - expected.int()).abs().max() <= 1  # float64 grid vs float32 steps: at most one grey level
    assert (got == expected).float().mean() > 0.99


# --- issue 27: the oracle, sources once per profile, snapshots, the protocol's sets ----------------------------

def test_protocol_sets_pool_holds_every_training_set_and_the_reference_is_everything_else():
    from madlib.data.images import protocol_sets

    protocol = protocol_sets("digits", size=8, pool=100)
    train, train_labels = load_images("digits", "train", size=8, dtype="uint8")
    test, _ = load_images("digits", "test", size=8, dtype="uint8")
    assert protocol.reference_count == len(train) + len(test) - 100
    for n in (10, 40, 100):  # CASD's "first n samples" of the training split, taken from the pool
        mine, labels = protocol.first(n)
        theirs, their_labels = casd.first_n_balanced(train, train_labels, n)
        assert torch.equal(mine, theirs) and torch.equal(labels, their_labels)
    # the pool and the reference share no image: each reference image is matched against every pool image
    flat_pool, flat_ref = protocol.pool_images.flatten(1).int(), protocol.reference.flatten(1).int()
    same = (flat_ref[:, None, :] == flat_pool[None, :, :]).all(-1)
    pool_index = casd.first_n_index(train_labels, 100)
    duplicates_in_data = (train.flatten(1).int()[:, None, :] == flat_pool[None]).all(-1).sum() - 100
    assert same.sum() == duplicates_in_data  # only images the dataset itself holds twice (digits has none)
    assert same.sum() == 0 and len(set(pool_index.tolist())) == 100
    sub = protocol_sets("digits", size=8, pool=40, classes=[0, 1, 2, 3])
    assert set(sub.pool_labels.tolist()) == {0, 1, 2, 3} and sub.first(8)[1].tolist() == [0, 0, 1, 1, 2, 2, 3, 3]


def test_the_oracle_trains_on_n_plus_m_real_images_and_never_on_a_synthetic_one():
    from madlib.data.images import protocol_sets

    protocol = protocol_sets("digits", size=8, pool=100)
    synthetic = _images(60, 0, 255, 3)
    real, none = casd.cell_training_set("oracle", protocol, 20, 60, synthetic)
    assert none is None and torch.equal(real, protocol.first(80)[0])
    assert not (real.flatten(1).int()[:, None] == synthetic.flatten(1).int()[None]).all(-1).any()
    real, synth = casd.cell_training_set("casd", protocol, 20, 30, synthetic)
    assert torch.equal(real, protocol.first(20)[0]) and torch.equal(synth, synthetic[:30])
    assert casd.cell_training_set("dm", protocol, 20, 60, synthetic)[1] is None
    with pytest.raises(ValueError, match="needs at least m = 90 synthetic images; got 60"):
        casd.cell_training_set("sda", protocol, 20, 90, synthetic)
    assert casd.cell_key("oracle", "good", 20, 60) == "oracle/none/n=20/m=60"


def test_snapshots_are_the_ema_after_their_images_seen_and_keyed_apart(tmp_path):
    real = _images(32, 0, 255, 4)
    settings = casd.EDMSettings(**{**TINY.settings(), "images_seen": 64})
    assert casd.snapshot_steps([32, 64], 32, 16) == {2: 32, 4: 64}
    assert casd.snapshot_steps([40], 8, 16) == {5: 40}  # the batch is clipped to the set
    fit = casd.dm_train(real, settings, 0, snapshot_images=[32], cache_dir=tmp_path)
    short = casd.dm_train(real, casd.EDMSettings(**{**TINY.settings(), "images_seen": 32}), 0)
    # the snapshot after 32 images is the EMA network of a run stopped there
    for a, b in zip(fit.snapshots[32].net.state_dict().values(), short.net.state_dict().values()):
        assert torch.equal(a, b)
    assert fit.snapshots[32].key == f"{fit.key}@32" and fit.key != casd.dm_train(real, settings, 0).key
    again = casd.dm_train(real, settings, 0, snapshot_images=[32], cache_dir=tmp_path)
    assert again.from_cache and torch.equal(casd.heun_sample(again.snapshots[32], 8, settings, 1),
                                            casd.heun_sample(fit.snapshots[32], 8, settings, 1))


def test_a_source_is_trained_once_and_reused_by_every_seed_with_the_same_bytes(tmp_path):
    spec = casd.SourceSpec("good", "digits", images_seen=64, snapshot_images=(32,))
    common = dict(settings=TINY.settings(), dataset="digits", pool=100, classes=None, eval_samples=16,
                  source_seed=1000, cache_dir=str(tmp_path), n=20, m=40, synthetic_m=40)
    cells = [casd.run_cell(method="casd", source={"spec": spec.plain(), "snapshot": 32}, seed=s, eval_seed=50 + s,
                           synthetic_seed=2000 + s, **common) for s in (0, 1)]
    files = sorted(p.name for p in tmp_path.rglob("*") if p.is_file() and "source" in p.name)
    assert len(files) == 1  # one source file (with its snapshot) for both seeds
    first = casd.source_fit(spec, TINY, 1000, cache_dir=tmp_path)
    assert first.from_cache and casd.source_fit(spec, TINY, 1000, snapshot=32, cache_dir=tmp_path).key == f"{first.key}@32"
    # each seed draws its own synthetic set from the one source; a second call reads the same bytes back
    sets = [casd.synthetic_set(first.snapshots[32], 40, TINY, 2000 + s, cache_dir=tmp_path) for s in (0, 1)]
    assert not torch.equal(sets[0], sets[1])
    again = casd.run_cell(method="casd", source={"spec": spec.plain(), "snapshot": 32}, seed=0, eval_seed=50,
                          synthetic_seed=2000, **common)
    assert again["from_cache"] and torch.equal(again["images"], cells[0]["images"])
    assert (again["metrics"]["fid"], again["metrics"]["kid"]) == (cells[0]["metrics"]["fid"], cells[0]["metrics"]["kid"])
    with pytest.raises(ValueError, match=r"snapshot must be one of the source's snapshot_images \[32\] or None; got 16"):
        casd.source_fit(spec, TINY, 1000, snapshot=16, cache_dir=tmp_path)
