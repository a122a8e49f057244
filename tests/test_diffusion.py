"""Diffusion core against exact Gaussian scores and algebraic identities."""

import math

import numpy as np
import pytest
import torch

from madlib.diffusion.guidance import (cfg, cfg_scale_from_w, exponential_cfg_weight, extrapolate, interval_weight,
                                       lam_from_w, sims_score, w_from_cfg_scale, w_from_lam)
from madlib.diffusion.losses import ddpm_eps_loss, edm_denoise
from madlib.diffusion.networks import EnsembleMLP
from madlib.diffusion.samplers import ddpm_ancestral_sampler, edm_heun_sampler, get_sampler
from madlib.diffusion.schedules import cosine_schedule, edm_sigma_steps
from madlib.diffusion.training import finetune_copy, train_ensemble
from madlib.theory.gaussian import w2_gaussian

MEAN = torch.tensor([1.0, -0.5], dtype=torch.float64)
COV = torch.tensor([[2.0, 1.0], [1.0, 2.0]], dtype=torch.float64)  # the SIMS-1 P_r covariance, shifted mean


def exact_denoiser(x, sigma):
    # D(x; sigma) = E[x0 | x] for x0 ~ N(MEAN, COV), x = x0 + sigma n
    gain = COV @ torch.linalg.inv(COV + sigma ** 2 * torch.eye(2, dtype=COV.dtype))
    return MEAN + (x - MEAN) @ gain.T


def _moments(x):
    x = x.reshape(-1, 2)
    return x.mean(0), torch.cov(x.T)


def test_edm_heun_sampler_with_exact_denoiser_hits_the_target():
    g = torch.Generator().manual_seed(0)
    latents = torch.randn(1, 40000, 2, generator=g, dtype=torch.float64)
    x = edm_heun_sampler(exact_denoiser, latents, edm_sigma_steps(32, sigma_max=80.0))
    mean, cov = _moments(x)
    torch.testing.assert_close(mean, MEAN, atol=0.04, rtol=0)
    torch.testing.assert_close(cov, COV, atol=0.08, rtol=0)


def test_ddpm_ancestral_sampler_with_exact_eps_hits_the_target():
    schedule = cosine_schedule(200)
    ab_all = schedule.alpha_bar.double()

    def exact_eps(x, t):
        ab = ab_all[t[0, 0].long()]
        cov_t = ab * COV + (1 - ab) * torch.eye(2, dtype=COV.dtype)
        return (1 - ab).sqrt() * (x - ab.sqrt() * MEAN) @ torch.linalg.inv(cov_t).T

    g = torch.Generator().manual_seed(1)
    noise = torch.randn(1, 40000, 2, generator=g, dtype=torch.float64)
    mean, cov = _moments(ddpm_ancestral_sampler(exact_eps, noise, schedule, generator=g))
    torch.testing.assert_close(mean, MEAN, atol=0.05, rtol=0)
    torch.testing.assert_close(cov, COV, atol=0.12, rtol=0)


def test_cosine_schedule_matches_its_formula():
    s, steps = 0.008, 40
    sched = cosine_schedule(steps, s)
    f = lambda t: math.cos((t / steps + s) / (1 + s) * math.pi / 2) ** 2  # noqa: E731
    for t in (0, 10, 20, 30):  # the last steps are clipped at max_beta
        assert sched.alpha_bar[t].item() == pytest.approx(min(f(t + 1) / f(0), 1.0), rel=1e-5, abs=1e-6)


def test_guidance_identities():
    g = torch.Generator().manual_seed(2)
    a, b = torch.randn(3, 5, 2, generator=g), torch.randn(3, 5, 2, generator=g)
    assert torch.equal(sims_score(a, b, 0.0), a)  # w = 0 is the base model
    torch.testing.assert_close(sims_score(a, a, 3.7), a)  # aux = base: any w gives the base
    torch.testing.assert_close(sims_score(a, b, -1.0), b)  # w = -1 samples the auxiliary alone
    torch.testing.assert_close(sims_score(a, b, 2.0), 3 * a - 2 * b)
    # ReDiFine's CFG scale: 1 is the conditional model, 0 the unconditional one
    torch.testing.assert_close(cfg(a, b, w_from_cfg_scale(1.0)), a)
    torch.testing.assert_close(cfg(a, b, w_from_cfg_scale(0.0)), b)
    assert lam_from_w(w_from_lam(0.8)) == pytest.approx(0.8)
    assert cfg_scale_from_w(w_from_lam(0.4)) == pytest.approx(2.5)  # paper-targets: CFG 2.5 is lambda 0.4
    schedule = exponential_cfg_weight(7.5, 2.0)
    assert schedule(0, 30) == pytest.approx(6.5) and 1 + schedule(30, 30) == pytest.approx(7.5 * math.exp(-2))
    window = interval_weight(2.0, first=10)
    assert [window(i, 32) for i in (0, 9, 10, 31)] == [0.0, 0.0, 2.0, 2.0]
    # per-member weights [R]: member r gets w[r], exactly its primary at w[r] = 0
    per_member = sims_score(a, b, torch.tensor([0.0, 2.0, -1.0]))
    assert torch.equal(per_member[0], a[0])
    torch.testing.assert_close(per_member[1], 3 * a[1] - 2 * b[1])
    torch.testing.assert_close(per_member[2], b[2])
    with pytest.raises(ValueError, match="one entry per member"):
        sims_score(a, b, torch.tensor([1.0, 2.0]))
    with pytest.raises(ValueError, match="must be finite"):
        sims_score(a, b, torch.tensor([1.0, float("nan"), 0.0]))


def test_guided_sampler_with_equal_models_equals_unguided():
    latents = torch.randn(1, 500, 2, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    sigmas = edm_sigma_steps(10)
    plain = edm_heun_sampler(exact_denoiser, latents, sigmas)
    guided = edm_heun_sampler(exact_denoiser, latents, sigmas, guide=exact_denoiser, weight=lambda i, n: 3.0)
    torch.testing.assert_close(plain, guided)


def test_ensemble_members_are_independent():
    net = EnsembleMLP(3, 2, width=16, depth=2, generator=torch.Generator().manual_seed(4))
    x = torch.randn(3, 32, 2)
    losses = ddpm_eps_loss(net, x, cosine_schedule(40), generator=torch.Generator().manual_seed(5))
    grads = torch.autograd.grad(losses[0], list(net.parameters()))
    for grad in grads:
        assert grad[0].abs().sum() > 0 and grad[1:].abs().sum() == 0
    single = net.member(1)
    torch.testing.assert_close(single(x[1:2], torch.ones(1, 32)), net(x, torch.ones(3, 32))[1:2])


def test_trained_ensemble_reproduces_a_gaussian():
    g = torch.Generator().manual_seed(6)
    members, n = 2, 1000
    data = (MEAN.float() + torch.randn(members, n, 2, generator=g) @ torch.linalg.cholesky(COV.float()).T)
    net = EnsembleMLP(members, 2, generator=g)
    schedule = cosine_schedule(40, max_beta=0.9)

    def w2_to_target(model):
        with torch.no_grad():
            x = ddpm_ancestral_sampler(model, torch.randn(members, 4000, 2, generator=g), schedule, generator=g)
        return [float(w2_gaussian(*[m.double().numpy() for m in _moments(x[r])], MEAN.numpy(), COV.numpy()))
                for r in range(members)]

    untrained = w2_to_target(net)
    stats = train_ensemble(net, data, lambda m, x, **kw: ddpm_eps_loss(m, x, schedule, **kw),
                           samples_seen=1500 * 250, batch_size=250, lr=2e-3, generator=g)
    assert stats.steps == 1500 and stats.samples_per_s > 0
    trained = w2_to_target(net)
    # W2 between the sampled moments and P_r: an untrained network is far off, a trained one close.
    assert min(untrained) > 1.5 and max(trained) < 0.6, (untrained, trained)


def test_finetune_copy_leaves_the_base_untouched():
    g = torch.Generator().manual_seed(7)
    net = EnsembleMLP(2, 2, width=8, depth=1, generator=g)
    before = [p.detach().clone() for p in net.parameters()]
    schedule = cosine_schedule(10)
    aux, stats = finetune_copy(net, torch.randn(2, 50, 2, generator=g),
                               lambda m, x, **kw: ddpm_eps_loss(m, x, schedule, **kw), samples_seen=100, batch_size=25,
                               generator=g)
    assert stats.steps == 4
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(before, aux.parameters()))


def test_edm_denoise_preconditioning_limits():
    # at tiny sigma D(x) ~ x (c_skip -> 1, c_out -> 0) whatever the network says
    net = EnsembleMLP(1, 2, width=8, depth=1, generator=torch.Generator().manual_seed(8))
    x = torch.randn(1, 10, 2)
    torch.testing.assert_close(edm_denoise(net, x, 1e-6), x, atol=1e-5, rtol=0)


def test_bad_input_is_named():
    a = torch.zeros(1, 4, 2)
    with pytest.raises(ValueError, match="w .*must be finite"):
        sims_score(a, a, float("nan"))
    with pytest.raises(ValueError, match="must have one shape"):
        extrapolate(a, torch.zeros(1, 4, 3), 1.0)
    with pytest.raises(ValueError, match=r"sampler must be one of \['ddpm', 'euler_ancestral', 'heun'\]"):
        get_sampler("euler")
    net = EnsembleMLP(1, 2, width=4, depth=1)
    with pytest.raises(ValueError, match="empty dataset"):
        train_ensemble(net, torch.zeros(1, 0, 2), ddpm_eps_loss, samples_seen=10)
    with pytest.raises(ValueError, match=r"x must be \[members=1, batch, dim=2\]"):
        net(torch.zeros(2, 4, 2), torch.zeros(2, 4))
    with pytest.raises(ValueError, match=r"lam must lie in \(0, 1\]"):
        w_from_lam(0.0)
    assert np.isfinite(lam_from_w(0.0))


def test_edm_config_is_the_one_settings_class_of_sims_and_casd():
    from madlib.diffusion.config import EDMConfig
    from madlib.methods.casd import EDMSettings
    from madlib.methods.sims import SIMSConfig

    assert issubclass(SIMSConfig, EDMConfig) and issubclass(EDMSettings, EDMConfig)
    assert SIMSConfig().warmup == 5000 and EDMSettings().warmup == 0
    casd = EDMSettings(images_seen=1000, sample_steps=5)
    # the cache key's part: the network and optimiser, never the sampler or the device
    assert "images_seen" in casd.training() and not {"sample_steps", "rho", "device"} & set(casd.training())
    assert casd.network_evaluations() == SIMSConfig(sample_steps=5).network_evaluations() == 9
    assert torch.equal(casd.sigmas(), SIMSConfig(sample_steps=5).sigmas())
    a, b = EDMConfig(base_channels=8).network(seed=3), EDMConfig(base_channels=8).network(seed=3)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    with_source = EDMConfig(base_channels=8).network(seed=3, num_sources=2)
    assert sum(p.numel() for p in with_source.parameters()) > sum(p.numel() for p in a.parameters())
    with pytest.raises(ValueError, match="base_channels"):
        EDMConfig(base_channels=4)
    with pytest.raises(ValueError, match="lr"):
        SIMSConfig(lr=0.0)


@pytest.mark.parametrize("name", ["heun", "euler_ancestral", "ddpm"])
def test_samplers_never_wait_on_the_device_inside_their_loop(name):
    # On the meta device a tensor has no values: any host read of one (`if tensor`, .item(), .tolist()) raises, so
    # a sampler that runs here issues no device-to-host sync per step (what CUDA graphs and compile need).
    latents = torch.empty(1, 4, 3, device="meta")
    denoise = lambda x, sigma: 0.5 * x  # noqa: E731
    sampler = get_sampler(name)
    if name == "ddpm":
        out = sampler(denoise, latents, cosine_schedule(10), generator=torch.Generator().manual_seed(0))
    else:
        kwargs = {"generator": torch.Generator().manual_seed(0)} if name == "euler_ancestral" else {}
        out = sampler(denoise, latents, edm_sigma_steps(6, 0.002, 80.0, 7.0), **kwargs)
    assert out.device.type == "meta" and out.shape == latents.shape
    with pytest.raises(Exception):  # the check has teeth: a host read of a meta tensor fails
        bool(out.sum() > 0)
