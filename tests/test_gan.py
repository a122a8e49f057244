"""WGAN-GP ensembles (MAD App. B.1, MAD-13): the penalty against hand and finite-difference computations,
the family in the loop engine."""

import numpy as np
import pytest
import torch
from torch import nn

from madlib.loops import LoopSpec, run_loop
from madlib.models.gan import (ConvCritic, ConvGenerator, EnsembleNet, GanModel, WGANFamily, gradient_penalty,
                               wgan_gp_critic_loss)

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = dict(runs=2, image_size=8, latent_dim=4, width=16, depth=1, iterations=3, n_critic=2, batch_size=8,
            eval_samples=20, lenet="tiny")


def _critic(members=2, dim=3, width=5, seed=0):
    net = EnsembleNet(members, [dim, width, 1], torch.tanh, generator=torch.Generator().manual_seed(seed))
    return net.double()


def test_penalty_of_a_linear_critic_is_its_slope_norm_minus_one_squared():
    # D(x) = a . x + b has gradient a everywhere: penalty = (|a| - 1)^2 whatever the points
    net = EnsembleNet(3, [4, 1], torch.relu, generator=torch.Generator().manual_seed(0)).double()
    g = torch.Generator().manual_seed(1)
    real, fake = torch.randn(3, 6, 4, generator=g, dtype=torch.float64), torch.randn(3, 6, 4, generator=g, dtype=torch.float64)
    eps = torch.rand(3, 6, 1, generator=g, dtype=torch.float64)
    slope = net.weights[0][:, :, 0].norm(dim=1)  # [3]
    torch.testing.assert_close(gradient_penalty(net, real, fake, eps), (slope - 1) ** 2)


def test_penalty_matches_central_differences_on_a_nonlinear_critic():
    net = _critic()
    g = torch.Generator().manual_seed(2)
    real, fake = torch.randn(2, 4, 3, generator=g, dtype=torch.float64), torch.randn(2, 4, 3, generator=g, dtype=torch.float64)
    eps = torch.rand(2, 4, 1, generator=g, dtype=torch.float64)
    x_hat = eps * real + (1 - eps) * fake
    h, expected = 1e-6, torch.zeros(2)
    with torch.no_grad():
        for r in range(2):
            for b in range(4):
                grad = torch.zeros(3, dtype=torch.float64)
                for i in range(3):
                    up, down = x_hat.clone(), x_hat.clone()
                    up[r, b, i] += h
                    down[r, b, i] -= h
                    grad[i] = (net(up)[r, b, 0] - net(down)[r, b, 0]) / (2 * h)
                expected[r] += (grad.norm() - 1) ** 2 / 4
    torch.testing.assert_close(gradient_penalty(net, real, fake, eps), expected.double(), rtol=1e-6, atol=1e-8)


def test_critic_loss_gradient_includes_the_penalty_term():
    # create_graph: the penalty's own dependence on the critic's weights reaches the update (checked by differences)
    net = _critic(members=1)
    g = torch.Generator().manual_seed(3)
    real, fake = torch.randn(1, 5, 3, generator=g, dtype=torch.float64), torch.randn(1, 5, 3, generator=g, dtype=torch.float64)
    eps = torch.rand(1, 5, 1, generator=g, dtype=torch.float64)
    loss = wgan_gp_critic_loss(net, real, fake, eps, gp_weight=10.0).sum()
    (grad,) = torch.autograd.grad(loss, net.weights[0])
    h, w = 1e-6, net.weights[0]
    w.data[0, 1, 2] += h  # the penalty needs autograd itself, so the weight moves outside the graph
    up = wgan_gp_critic_loss(net, real, fake, eps, gp_weight=10.0).sum().detach()
    w.data[0, 1, 2] -= 2 * h
    down = wgan_gp_critic_loss(net, real, fake, eps, gp_weight=10.0).sum().detach()
    w.data[0, 1, 2] += h
    torch.testing.assert_close(grad[0, 1, 2], (up - down) / (2 * h), rtol=1e-5, atol=1e-7)
    # without the penalty the difference is the critic's mean gap alone
    gap = net(fake).mean() - net(real).mean()
    torch.testing.assert_close(wgan_gp_critic_loss(net, real, fake, eps, gp_weight=0.0).sum(), gap)


def test_members_are_independent():
    net = EnsembleNet(2, [3, 4, 2], torch.relu, generator=torch.Generator().manual_seed(0))
    x = torch.randn(2, 5, 3)
    before = net(x)
    with torch.no_grad():
        net.weights[1][1].add_(1.0)
    after = net(x)
    torch.testing.assert_close(after[0], before[0], rtol=0, atol=0)
    assert not torch.allclose(after[1], before[1])


def _loop(seed=0, **kw):
    family = WGANFamily("digits", keep_samples=5, **(TINY | kw))
    return family, run_loop(family, LoopSpec("fully_synthetic", generations=2, n_synth=40, n_ini=40), seed=seed,
                            progress=False)


def test_fully_synthetic_loop_records_per_run_and_is_reproducible():
    family, a = _loop()
    _, b = _loop()
    for key in ("fid", "precision", "recall", "class_entropy", "top_class_share", "critic_loss"):
        assert a.records[key].shape == (2, 2), key
        np.testing.assert_array_equal(a.records[key], b.records[key])
    assert a.records["samples"].shape == (2, 2, 5, 1, 8, 8) and a.records["samples"].dtype == np.uint8
    assert np.all((a.records["class_entropy"] >= 0) & (a.records["class_entropy"] <= 1))
    _, c = _loop(seed=1)
    assert not np.array_equal(a.records["fid"], c.records["fid"])


def test_real_sets_differ_between_runs_and_samples_are_uint8():
    family = WGANFamily("digits", **TINY)
    data = family.draw_real(30, np.random.default_rng(0))
    assert data.images.shape == (2, 30, 1, 8, 8) and data.images.dtype == torch.uint8
    assert not torch.equal(data.images[0], data.images[1])
    model = family.fit(data)
    out = family.sample(model, 7, 1.0, np.random.default_rng(0))
    assert out.images.shape == (2, 7, 1, 8, 8) and out.images.dtype == torch.uint8
    assert model.stats["critic_steps"] == 6 and model.stats["images_per_s"] > 0


def test_training_moves_samples_towards_the_data():
    # a few hundred WGAN-GP steps bring FID far below that of the untrained generator
    family = WGANFamily("digits", **(TINY | dict(runs=1, width=64, iterations=150, n_critic=3, batch_size=32, lr=1e-3,
                                                 eval_samples=100, latent_dim=8)))
    data = family.draw_real(300, np.random.default_rng(0))
    blank = {"critic_loss": np.zeros(1), "generator_loss": np.zeros(1), "seconds": 0.0}
    untrained = family.summary(GanModel(family.networks(torch.Generator().manual_seed(0))[0], 0, blank))
    trained = family.summary(family.fit(data))
    assert trained["fid"][0] < 0.5 * untrained["fid"][0], (trained["fid"], untrained["fid"])


def test_bad_input_is_named():
    family = WGANFamily("digits", **TINY)
    with pytest.raises(ValueError, match="set n_ini"):
        run_loop(family, LoopSpec("fully_synthetic", 2, n_synth=10), seed=0, progress=False)
    model = family.fit(family.draw_real(20, np.random.default_rng(0)))
    with pytest.raises(ValueError, match="lam must be 1"):
        family.sample(model, 5, 0.5, np.random.default_rng(0))
    with pytest.raises(ValueError, match="keep_samples must be <= eval_samples"):
        WGANFamily("digits", **(TINY | dict(keep_samples=50)))
    with pytest.raises(ValueError, match="n must be <="):
        family.draw_real(10**6, np.random.default_rng(0))


# --- the DCGAN-style option (architecture="conv") ---

@pytest.mark.parametrize("size, critic_sizes", [(14, [14, 7, 3]), (28, [28, 14, 7, 3]), (8, [8, 4])])
def test_conv_networks_map_latents_to_images_and_images_to_one_score(size, critic_sizes):
    from madlib.models.gan import _down_sizes

    assert _down_sizes(size) == critic_sizes  # 4x4 stride-2 padding-1 convs: out = floor((in - 2) / 2) + 1
    g = torch.Generator().manual_seed(0)
    gen, critic = ConvGenerator(3, 6, (1, size, size), 4, generator=g), ConvCritic(3, (1, size, size), 4, generator=g)
    x = gen(torch.randn(3, 5, 6))
    assert x.shape == (3, 5, size * size) and x.abs().max() <= 1
    assert critic(x).shape == (3, 5, 1)
    three = ConvCritic(2, (3, size, size), 4, "layer", generator=g)
    assert three(torch.randn(2, 7, 3 * size * size)).shape == (2, 7, 1)


@pytest.mark.parametrize("norm", ["none", "layer"])
def test_conv_members_are_independent(norm):
    # member 1's weights and inputs never reach member 0's outputs (grouped convolutions, per-member norms)
    g = torch.Generator().manual_seed(0)
    gen, critic = ConvGenerator(2, 4, (1, 14, 14), 4, generator=g), ConvCritic(2, (1, 14, 14), 4, norm, generator=g)
    z, x = torch.randn(2, 6, 4), torch.randn(2, 6, 196)
    before_g, before_c = gen(z), critic(x)
    z2, x2 = z.clone(), x.clone()
    z2[1], x2[1] = torch.randn(6, 4), torch.randn(6, 196)
    with torch.no_grad():
        critic.body[0].weight[4:].add_(1.0)  # output channels 4..7 of the first conv belong to member 1
    torch.testing.assert_close(gen(z2)[0], before_g[0], rtol=0, atol=1e-6)
    torch.testing.assert_close(critic(x2)[0], before_c[0], rtol=0, atol=1e-6)
    assert not torch.allclose(critic(x2)[1], before_c[1])


def test_penalty_of_a_linear_conv_critic_matches_its_slope_read_off_basis_images():
    # the conv critic without its LeakyReLUs is linear, D(x) = a . x + b: a_i = D(e_i) - D(0), computed without autograd,
    # and the penalty is (|a| - 1)^2 at every point
    critic = ConvCritic(2, (1, 8, 8), 3, generator=torch.Generator().manual_seed(1)).double()
    critic.body = nn.Sequential(*[nn.Identity() if isinstance(m, nn.LeakyReLU) else m for m in critic.body])
    with torch.no_grad():
        basis = torch.eye(64, dtype=torch.float64).expand(2, 64, 64)  # [R, 64, D]
        origin = critic(torch.zeros(2, 1, 64, dtype=torch.float64))  # [R, 1, 1]
        slope = (critic(basis) - origin)[..., 0]  # [R, D]
    g = torch.Generator().manual_seed(2)
    real, fake = torch.randn(2, 5, 64, generator=g, dtype=torch.float64), torch.randn(2, 5, 64, generator=g, dtype=torch.float64)
    eps = torch.rand(2, 5, 1, generator=g, dtype=torch.float64)
    torch.testing.assert_close(gradient_penalty(critic, real, fake, eps), (slope.norm(dim=1) - 1) ** 2)


@pytest.mark.parametrize("norm", ["none", "layer"])
def test_penalty_of_the_conv_critic_matches_central_differences(norm):
    critic = ConvCritic(2, (1, 8, 8), 3, norm, generator=torch.Generator().manual_seed(3)).double()
    g = torch.Generator().manual_seed(4)
    real, fake = torch.randn(2, 3, 64, generator=g, dtype=torch.float64), torch.randn(2, 3, 64, generator=g, dtype=torch.float64)
    eps = torch.rand(2, 3, 1, generator=g, dtype=torch.float64)
    x_hat, h = eps * real + (1 - eps) * fake, 1e-6
    steps = h * torch.eye(64, dtype=torch.float64)  # [D, D]
    with torch.no_grad():
        expected = torch.zeros(2, dtype=torch.float64)
        for b in range(3):
            up = x_hat[:, b:b + 1] + steps  # [R, D, D]: every coordinate moved once
            down = x_hat[:, b:b + 1] - steps
            grad = (critic(up) - critic(down))[..., 0] / (2 * h)  # [R, D]
            expected += (grad.norm(dim=1) - 1) ** 2 / 3
    torch.testing.assert_close(gradient_penalty(critic, real, fake, eps), expected, rtol=1e-6, atol=1e-8)


def test_conv_loop_is_reproducible_and_training_helps():
    kw = dict(architecture="conv", critic_norm="layer", width=4)
    family, a = _loop(**kw)
    _, b = _loop(**kw)
    for key in ("fid", "precision", "recall", "confidence", "critic_loss"):
        np.testing.assert_array_equal(a.records[key], b.records[key])
    assert a.records["samples"].shape == (2, 2, 5, 1, 8, 8)
    assert family.settings()["architecture"] == "conv"
    family = WGANFamily("digits", **(TINY | dict(runs=1, architecture="conv", width=8, iterations=100, n_critic=3,
                                                 batch_size=32, lr=1e-3, beta1=0.5, eval_samples=100, latent_dim=8)))
    data = family.draw_real(300, np.random.default_rng(0))
    blank = {"critic_loss": np.zeros(1), "generator_loss": np.zeros(1), "seconds": 0.0}
    untrained = family.summary(GanModel(family.networks(torch.Generator().manual_seed(0))[0].eval(), 0, blank))
    trained = family.summary(family.fit(data))
    assert trained["fid"][0] < 0.5 * untrained["fid"][0], (trained["fid"], untrained["fid"])
    assert 0 < trained["confidence"][0] <= 1


def test_conv_options_are_checked():
    with pytest.raises(ValueError, match="architecture"):
        WGANFamily("digits", **(TINY | dict(architecture="resnet")))
    with pytest.raises(ValueError, match="critic_norm"):
        WGANFamily("digits", **(TINY | dict(critic_norm="batch")))
    with pytest.raises(ValueError, match="ema_decay"):
        WGANFamily("digits", **(TINY | dict(ema_decay=1.0)))


def test_ema_generator_is_the_warmed_up_moving_average_of_the_trained_one(monkeypatch):
    import madlib.models.gan as gan

    family = WGANFamily("digits", **(TINY | dict(iterations=4, ema_decay=0.9)))
    data = family.draw_real(20, np.random.default_rng(0))
    plain = WGANFamily("digits", **(TINY | dict(iterations=4))).fit(data)
    start = [p.detach().clone() for p in family.networks(torch.Generator().manual_seed(data.seed))[0].parameters()]
    calls, real_update = [], gan.ema_update

    def recording(average, net, decay):
        calls.append(([p.detach().clone() for p in net.parameters()], decay))
        real_update(average, net, decay)

    monkeypatch.setattr(gan, "ema_update", recording)
    averaged = family.fit(data)
    # the averaging leaves training alone: the same losses and the same final trained weights as without it
    np.testing.assert_array_equal(plain.stats["critic_loss"], averaged.stats["critic_loss"])
    torch.testing.assert_close(calls[-1][0], [p.detach() for p in plain.generator.parameters()], rtol=0, atol=0)
    # decay min(0.9, (1 + i) / (10 + i)) at step i, and the recursion a <- d a + (1 - d) theta_i by hand
    assert [d for _, d in calls] == pytest.approx([min(0.9, (1 + i) / (10 + i)) for i in range(4)])
    expected = start
    for weights, d in calls:
        expected = [d * a + (1 - d) * w for a, w in zip(expected, weights)]
    torch.testing.assert_close([p.detach() for p in averaged.generator.parameters()], expected)
