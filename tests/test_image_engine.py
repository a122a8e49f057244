"""The image engine (issue 13): EDM preconditioning, Euler-ancestral and Heun on images, the one guided
prediction, the trainer's schedule, EMA and resume, the second label, the EDM image family, sample archives."""

import dataclasses
import math

import numpy as np
import pytest
import torch

from madlib.data import load_image_set, load_sample_archive, save_image_set, save_sample_archive
from madlib.diffusion.guidance import constant_weight, exponential_cfg_weight, guided_prediction
from madlib.diffusion.losses import EDMPrecond, ddpm_eps_loss, edm_loss
from madlib.diffusion.samplers import edm_heun_sampler, euler_ancestral_sampler
from madlib.diffusion.schedules import cosine_schedule, edm_sigma_steps
from madlib.diffusion.training import lr_factor, train_ensemble
from madlib.diffusion.unet import UNet
from madlib.figures import seed_spread, seeds_agree
from madlib.models.images import ImageDiffusionFamily
from tests.helpers import awake

pytestmark = pytest.mark.usefixtures("one_thread")

# an image of 2x2 pixels whose 4 values are jointly Gaussian: mean MU, covariance COV
MU = torch.tensor([0.5, -0.25, 0.0, 0.25], dtype=torch.float64)
A = torch.tensor([[0.4, 0.1, 0.0, 0.0], [0.1, 0.3, 0.05, 0.0], [0.0, 0.05, 0.2, 0.02], [0.0, 0.0, 0.02, 0.25]],
                 dtype=torch.float64)
COV = A @ A.T + 0.01 * torch.eye(4, dtype=torch.float64)


def exact_image_denoiser(x, sigma):
    # E[x0 | x0 + sigma n] for x0 ~ N(MU, COV) on images [R, B, 1, 2, 2]
    flat = x.reshape(*x.shape[:2], 4)
    gain = COV @ torch.linalg.inv(COV + sigma ** 2 * torch.eye(4, dtype=COV.dtype))
    return (MU + (flat - MU) @ gain.T).reshape(x.shape)


def _image_moments(x):
    flat = x.reshape(-1, 4)
    return flat.mean(0), torch.cov(flat.T)


@pytest.mark.parametrize("sampler", ["heun", "euler_ancestral"])
def test_image_samplers_with_the_exact_denoiser_reach_the_gaussian(sampler):
    g = torch.Generator().manual_seed(0)
    latents = torch.randn(1, 40000, 1, 2, 2, generator=g, dtype=torch.float64)
    if sampler == "heun":
        x = edm_heun_sampler(exact_image_denoiser, latents, edm_sigma_steps(24))
    else:  # first order with fresh noise: more steps for the same accuracy
        x = euler_ancestral_sampler(exact_image_denoiser, latents, edm_sigma_steps(200), generator=g)
    assert x.shape == latents.shape
    mean, cov = _image_moments(x)
    torch.testing.assert_close(mean, MU, atol=0.02, rtol=0)
    torch.testing.assert_close(cov, COV, atol=0.02, rtol=0)


def test_euler_ancestral_with_eta_zero_is_deterministic_euler():
    latents = torch.randn(1, 50, 1, 2, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    sigmas = edm_sigma_steps(12)
    a = euler_ancestral_sampler(exact_image_denoiser, latents, sigmas, eta=0.0, generator=torch.Generator().manual_seed(2))
    b = euler_ancestral_sampler(exact_image_denoiser, latents, sigmas, eta=0.0, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    x = latents * sigmas[0]  # plain Euler steps of dx/dsigma = (x - D) / sigma, by hand
    for s_cur, s_next in zip(sigmas[:-1], sigmas[1:]):
        x = x + (s_next - s_cur) * (x - exact_image_denoiser(x, s_cur)) / s_cur
    torch.testing.assert_close(a, x)
    with pytest.raises(ValueError, match="eta must lie in"):
        euler_ancestral_sampler(exact_image_denoiser, latents, sigmas, eta=1.5)


def test_edm_preconditioning_against_a_hand_computation():
    seen = {}

    def raw(x_in, c_noise, y=None, **labels):
        seen.update(x_in=x_in, c_noise=c_noise, y=y, **labels)
        return torch.full_like(x_in, 2.0)

    x = torch.full((1, 3, 1, 2, 2), 4.0)
    d = EDMPrecond(raw, sigma_data=0.5)(x, 0.5, torch.tensor([[1, 2, 3]]), s=torch.tensor([[0, 1, 0]]))
    # sigma = sigma_data = 0.5: c_skip = 1/2, c_out = 0.25 / sqrt(0.5), c_in = 1 / sqrt(0.5), c_noise = ln(0.5) / 4
    torch.testing.assert_close(d, torch.full_like(x, 0.5 * 4.0 + 0.25 / math.sqrt(0.5) * 2.0))
    torch.testing.assert_close(seen["x_in"], torch.full_like(x, 4.0 / math.sqrt(0.5)))
    torch.testing.assert_close(seen["c_noise"], torch.full((1, 3), math.log(0.5) / 4))
    assert seen["y"].tolist() == [[1, 2, 3]] and seen["s"].tolist() == [[0, 1, 0]]
    with pytest.raises(ValueError, match="sigma_data must be > 0"):
        EDMPrecond(raw, sigma_data=0.0)


def test_edm_loss_of_the_exact_denoiser_is_its_posterior_variance():
    # E |D(x0 + sigma n) - x0|^2 = tr Cov[x0 | x] / 4 per pixel for the exact posterior mean; the loss weights it
    denoiser = lambda x, sigma, y=None: exact_image_denoiser(x, sigma.reshape(-1)[0])  # noqa: E731
    x0 = MU + torch.randn(1, 20000, 4, generator=torch.Generator().manual_seed(4), dtype=torch.float64) @ torch.linalg.cholesky(COV).T
    x0 = x0.reshape(1, 20000, 1, 2, 2)
    sigma = 0.7  # a point mass for ln sigma: p_std = 0
    loss = edm_loss(lambda x, s, y=None: exact_image_denoiser(x, s[0, 0]), x0, torch.Generator().manual_seed(5),
                    p_mean=math.log(sigma), p_std=0.0)
    post = COV - COV @ torch.linalg.inv(COV + sigma ** 2 * torch.eye(4, dtype=COV.dtype)) @ COV
    weight = (sigma ** 2 + 0.25) / (sigma * 0.5) ** 2
    torch.testing.assert_close(loss, torch.tensor([weight * post.trace().item() / 4], dtype=torch.float64), rtol=0.03, atol=0)
    del denoiser


def test_a_guidance_weight_of_zero_returns_the_primary_bit_for_bit():
    x = torch.randn(1, 8, 1, 2, 2, generator=torch.Generator().manual_seed(6))
    primary = lambda x, t: x * 1.7 + 0.3  # noqa: E731
    calls = []
    guide = lambda x, t: calls.append(1) or x * 0.2  # noqa: E731
    assert torch.equal(guided_prediction(primary, guide, constant_weight(0.0), 0, 10, x, 1.0), primary(x, 1.0))
    assert not calls  # the guide is not evaluated at w = 0
    assert torch.equal(guided_prediction(primary, None, constant_weight(3.0), 0, 10, x, 1.0), primary(x, 1.0))
    torch.testing.assert_close(guided_prediction(primary, guide, constant_weight(2.0), 0, 10, x, 1.0),
                               3 * primary(x, 1.0) - 2 * guide(x, 1.0))
    # ReDiFine's decaying CFG scale s0 exp(-alpha i / n): w = scale - 1; at the first step w = s0 - 1
    weight = exponential_cfg_weight(s0=7.5, alpha=2.0)
    assert weight(0, 30) == pytest.approx(6.5) and weight(15, 30) == pytest.approx(7.5 * math.exp(-1) - 1)
    # a sampler with a zero-weight guide gives exactly the unguided chain
    latents = torch.randn(1, 20, 1, 2, 2, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    sigmas = edm_sigma_steps(8)
    other = lambda x, s: exact_image_denoiser(x, s) * 0.5  # noqa: E731
    plain = euler_ancestral_sampler(exact_image_denoiser, latents, sigmas, generator=torch.Generator().manual_seed(8))
    zero = euler_ancestral_sampler(exact_image_denoiser, latents, sigmas, guide=other, weight=constant_weight(0.0),
                                   generator=torch.Generator().manual_seed(8))
    assert torch.equal(plain, zero)


def test_lr_factor_warms_up_linearly_then_decays_by_cosine():
    assert [lr_factor(k, 10, 4, "constant") for k in (0, 1, 3, 9)] == [0.25, 0.5, 1.0, 1.0]
    assert lr_factor(3, 10, 4, "cosine") == pytest.approx(1.0)
    assert lr_factor(7, 10, 4, "cosine") == pytest.approx(0.5 * (1 + math.cos(math.pi * 3 / 6)))
    assert lr_factor(9, 10, 0, "cosine") == pytest.approx(0.5 * (1 + math.cos(math.pi * 9 / 10)))


def _tiny_run(tmp_path, *, stop_at=None, checkpoint=True):
    net = UNet(image_size=8, base_channels=8, seed=0)
    ema = UNet(image_size=8, base_channels=8, seed=0)
    g = torch.Generator().manual_seed(1)
    data = torch.rand(1, 40, 1, 8, 8, generator=torch.Generator().manual_seed(2)) * 2 - 1
    labels = torch.arange(40)[None] % 10
    steps = []

    def after():
        steps.append(1)
        if stop_at is not None and len(steps) == stop_at:
            raise KeyboardInterrupt

    stats = train_ensemble(net, data, lambda m, x, **kw: ddpm_eps_loss(m, x, cosine_schedule(20), **kw),
                           samples_seen=200, batch_size=16, lr=2e-3, labels=labels, cond_dropout=0.2, generator=g,
                           warmup=48, lr_decay="cosine", ema=ema, ema_decay=0.9, after_step=after,
                           checkpoint=tmp_path / "train.pt" if checkpoint else None, checkpoint_every=3)
    return net, ema, stats, len(steps)


def test_a_resumed_training_run_equals_an_uninterrupted_one(tmp_path):
    net, ema, stats, _ = _tiny_run(tmp_path / "a", checkpoint=False)
    assert stats.steps == 13
    with pytest.raises(KeyboardInterrupt):
        _tiny_run(tmp_path / "b", stop_at=8)  # the last checkpoint holds step 6
    resumed, resumed_ema, _, ran = _tiny_run(tmp_path / "b")
    assert ran == 13 - 6
    for a, b in zip(list(net.parameters()) + list(ema.parameters()), list(resumed.parameters()) + list(resumed_ema.parameters())):
        assert torch.equal(a, b)
    # a finished checkpoint resumes to the end at once; another run's checkpoint is refused by name
    again, _, _, ran = _tiny_run(tmp_path / "b")
    assert ran == 0 and all(torch.equal(a, b) for a, b in zip(net.parameters(), again.parameters()))
    other = UNet(image_size=8, base_channels=8, seed=0)
    with pytest.raises(ValueError, match="belongs to another training run"):
        train_ensemble(other, torch.zeros(1, 40, 1, 8, 8), lambda m, x, **kw: ddpm_eps_loss(m, x, cosine_schedule(20), **kw),
                       samples_seen=100, batch_size=16, checkpoint=tmp_path / "b" / "train.pt")
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "train.pt").write_bytes(b"half a file")
    with pytest.raises(ValueError, match="not a complete training checkpoint"):
        _tiny_run(tmp_path / "c")


def test_trainer_bad_input_is_named():
    net = UNet(image_size=8, base_channels=8, seed=0)
    data = torch.zeros(1, 4, 1, 8, 8)
    loss = lambda m, x, **kw: ddpm_eps_loss(m, x, cosine_schedule(5), **kw)  # noqa: E731
    with pytest.raises(ValueError, match=r"optimizer must be one of \['adam', 'adamw'\]"):
        train_ensemble(net, data, loss, samples_seen=4, optimizer="sgd")
    with pytest.raises(ValueError, match=r"lr_decay must be one of"):
        train_ensemble(net, data, loss, samples_seen=4, lr_decay="linear")
    with pytest.raises(ValueError, match="no trainable parameters"):
        train_ensemble(net.requires_grad_(False), data, loss, samples_seen=4)


def test_the_second_label_has_its_own_token_and_embedding():
    net = awake(UNet(image_size=8, base_channels=8, num_sources=2, seed=0), 9)
    x, t, y = torch.randn(1, 3, 1, 8, 8), torch.zeros(1, 3), torch.tensor([[1, 2, 3]])
    real, synthetic, none = net(x, t, y, s=torch.zeros(1, 3, dtype=torch.long)), net(x, t, y, s=torch.ones(1, 3, dtype=torch.long)), net(x, t, y)
    assert not torch.allclose(real, synthetic) and not torch.allclose(real, none)
    assert torch.equal(net(x, t, y, s=torch.full((1, 3), 2)), none)  # index num_sources is "no label"
    # without a second label the U-Net is the one of before: same parameters for the same seed
    plain, with_s = UNet(image_size=8, base_channels=8, seed=0), UNet(image_size=8, base_channels=8, seed=0, num_sources=2)
    assert torch.equal(plain.stem.weight, with_s.stem.weight)
    with pytest.raises(ValueError, match="s .*must be None"):
        plain(x, t, y, s=torch.zeros(1, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="num_sources must be"):
        UNet(image_size=8, num_sources=-1)


def test_edm_image_family_trains_and_samples_with_heun_and_euler_ancestral():
    kw = dict(image_size=8, base_channels=8, epochs=2.0, batch_size=32, eval_samples=20, lenet="tiny", objective="edm",
              sample_steps=4)
    heun = ImageDiffusionFamily("digits", **kw)
    model = heun.fit(heun.draw_real(60, np.random.default_rng(0)))
    assert isinstance(model.net, EDMPrecond) and heun.network_evaluations() == 7
    images = heun.generate(model, torch.arange(10), 1.0, torch.Generator().manual_seed(0))
    assert images.dtype == torch.uint8 and images.shape == (10, 1, 8, 8)
    # Heun is the deterministic ODE of the drawn latents: the family's images are the sampler's on those latents
    latents = torch.randn((1, 10, 1, 8, 8), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        direct = edm_heun_sampler(lambda x, s: model.net(x, s, torch.arange(10)[None]), latents, heun.sigmas)
    assert torch.equal(images, ((direct[0].clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8))
    euler = ImageDiffusionFamily("digits", sampler="euler_ancestral", **kw)
    assert euler.network_evaluations(0.5) == 8
    a = euler.generate(model, torch.arange(10), 1.0, torch.Generator().manual_seed(0))
    assert torch.equal(a, euler.generate(model, torch.arange(10), 1.0, torch.Generator().manual_seed(0)))
    assert not torch.equal(a, images)  # the same latents, plus fresh noise at every step
    with pytest.raises(ValueError, match=r"sampler must be one of \['ddpm'\] for objective 'ddpm'"):
        ImageDiffusionFamily("digits", image_size=8, sampler="heun")
    with pytest.raises(ValueError, match="objective must be one of"):
        ImageDiffusionFamily("digits", image_size=8, objective="flow")


def test_sample_archives_round_trip_and_keep_every_class(tmp_path):
    images = np.arange(300 * 4, dtype=np.uint8).reshape(300, 1, 2, 2)
    labels = np.repeat(np.arange(10), 30)
    path = save_sample_archive(tmp_path / "fig_samples.npz", {"lam=1/seed=0/gen=1": (images, labels),
                                                             "lam=1/seed=0/gen=2": (images[:7], labels[:7])},
                               {"figure": "fig"}, per_set=100)
    sets = load_sample_archive(path)
    assert list(sets) == ["lam=1/seed=0/gen=1", "lam=1/seed=0/gen=2"]
    first = sets["lam=1/seed=0/gen=1"]
    assert first.images.shape == (100, 1, 2, 2) and np.bincount(first.labels).tolist() == [10] * 10
    keep = np.linspace(0, 299, 100).round().astype(int)
    assert np.array_equal(first.images, images[keep]) and first.meta == {"figure": "fig"}
    assert np.array_equal(sets["lam=1/seed=0/gen=2"].images, images[:7])
    save_image_set(tmp_path / "plain.npz", images, labels)
    with pytest.raises(ValueError, match="not a madlib-sample-archive"):
        load_sample_archive(tmp_path / "plain.npz")
    assert load_image_set(path).images.shape[0] == 107  # an archive is still an image set
    with pytest.raises(ValueError, match="at least one"):
        save_sample_archive(tmp_path / "empty.npz", {})


def test_seed_spread_and_seeds_agree_against_numpy():
    values = np.array([[1.0, 2.0], [3.0, 5.0], [2.0, 2.0]])
    spread = seed_spread(values)
    assert np.allclose(spread["mean"], values.mean(0)) and np.allclose(spread["std"], values.std(0, ddof=1))
    assert spread["seeds"] == 3 and np.array_equal(spread["min"], [1.0, 2.0])
    assert seeds_agree([0.1, 2.0, 0.5]) and not seeds_agree([0.1, -0.01, 3.0]) and not seeds_agree([])


def test_a_shared_fit_cache_reuses_only_identical_training():
    kw = dict(image_size=8, base_channels=8, epochs=1.0, batch_size=32, eval_samples=20, lenet="tiny", steps=5)
    cache = {}
    unbiased, biased = (ImageDiffusionFamily("digits", lam=lam, fit_cache=cache, **kw) for lam in (1.0, 0.8))
    real = unbiased.draw_real(40, np.random.default_rng(0))
    first = unbiased.fit(real)
    assert biased.fit(real) is first and len(cache) == 1  # lambda is not a training setting
    alone = ImageDiffusionFamily("digits", lam=0.8, **kw).fit(real)  # no cache: trained again, the same weights
    assert alone is not first and all(torch.equal(a, b) for a, b in zip(alone.net.parameters(), first.net.parameters()))
    longer = ImageDiffusionFamily("digits", fit_cache=cache, **(kw | dict(epochs=2.0))).fit(real)
    assert longer is not first and len(cache) == 2
    reseeded = unbiased.fit(dataclasses.replace(real, seed=real.seed + 1))
    assert reseeded is not first and len(cache) == 3
    with pytest.raises(ValueError, match="fit_cache must be a dict"):
        ImageDiffusionFamily("digits", fit_cache=[], **kw)


def test_real_floor_measures_a_seeded_random_subset_of_the_training_split():
    from madlib.metrics import image_metrics

    family = ImageDiffusionFamily("digits", image_size=8, base_channels=8, lenet="tiny")
    pick = torch.as_tensor(np.random.default_rng(3).choice(len(family.train_labels), 40, replace=False))
    expected = image_metrics(family.train_images[pick], family.train_labels[pick], family.test_images,
                             family.test_labels, family._lenet())
    assert family.real_floor(40, 3) == expected
    with pytest.raises(ValueError, match="n must be"):
        family.real_floor(3, 0)


def test_seed_loops_in_lanes_equal_each_loop_run_alone(tmp_path):
    from madlib.loops import LoopSpec, run_loop
    from madlib.models.images import run_seed_loops
    from madlib.sweep import sweep

    kw = dict(image_size=8, base_channels=8, epochs=1.0, batch_size=32, eval_samples=20, lenet="tiny", steps=5)
    loops = [dict(label=f"lambda {lam:g}", store=f"lam_{lam:g}", kind="augmentation", generations=2, n_synth=20, lam=lam,
                  n_ini=40) for lam in (1.0, 0.8)]
    cells = [dict(dataset="digits", seed=s, loops=loops, family=kw, store_dir=str(tmp_path / "lanes")) for s in (3, 4)]
    lanes = sweep(run_seed_loops, cells, options={"lanes": 2}, progress=False).values
    for seed, out in zip((3, 4), lanes):
        for loop in loops:
            spec = LoopSpec(**{k: v for k, v in loop.items() if k not in ("label", "store")})
            alone = run_loop(ImageDiffusionFamily("digits", lam=loop["lam"], **kw), spec, seed=seed, progress=False)
            got = out[loop["label"]]["records"]
            assert set(got) == set(alone.records)
            assert all(np.array_equal(got[k], alone.records[k]) for k in got)
        # both loops of a seed read the same generation 1
        assert out["lambda 1"]["records"]["train_loss"][0] == out["lambda 0.8"]["records"]["train_loss"][0]
        stored = ImageDiffusionFamily("digits", lam=0.8, store_dir=tmp_path / "lanes" / "lam_0.8" / f"seed_{seed}", **kw)
        assert stored.load_stored(2, "eval").images.shape[0] == 20
