"""The toy-diffusion recipe of SIMS-1 (the notebook SIMS cites, S:574) and the guidance decomposition."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from madlib.diffusion.guidance import constant_weight
from madlib.diffusion.networks import EnsembleResidualMLP
from madlib.diffusion.samplers import toy_ddpm_sampler
from madlib.diffusion.schedules import toy_cosine_schedule
from madlib.models.diffusion import DiffusionFamily, SimsModel

P_MEAN, P_COV = [0.0, 0.0], [[2.0, 1.0], [1.0, 2.0]]  # SIMS-1's P_r
TOY = dict(recipe="toy-diffusion", width=16, blocks=2, steps=10, base_epochs=2, aux_epochs=2, n_aux=64,
           batch_size=32, eval_samples=200)

pytestmark = pytest.mark.usefixtures("one_thread")


def test_toy_cosine_schedule_matches_the_notebooks_closed_form():
    # f(t) = cos^2((t / T + s) / (1 + s) * pi / 2) at t = 0..T-1, alpha_bar = f / f(0), beta_t = 1 - ab_t / ab_{t-1}
    T, s = 40, 0.008
    f = [math.cos((t / T + s) / (1 + s) * math.pi / 2) ** 2 for t in range(T)]
    alpha_bar = [v / f[0] for v in f]
    betas = [0.0] + [1 - alpha_bar[t] / alpha_bar[t - 1] for t in range(1, T)]
    sched = toy_cosine_schedule(T, s)
    np.testing.assert_allclose(sched.betas.numpy(), betas, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(sched.alpha_bar.numpy(), alpha_bar, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(sched.alphas.numpy(), 1 - np.array(betas), rtol=1e-6)
    assert sched.betas[0] == 0 and sched.alpha_bar[0] == 1  # step 0 is noise-free
    assert 0.74 < sched.betas[-1] < 0.76 and 0.0013 < sched.alpha_bar[-1] < 0.0017  # the brief's "about 0.75, 0.0015"
    assert sched.betas.max() < 0.76  # no clip is needed, none applied: betas rise monotonically
    assert torch.all(sched.betas[1:] > sched.betas[:-1])


def test_toy_sampler_never_applies_a_step_at_t_zero():
    sched = toy_cosine_schedule(6)
    seen = []

    def eps(x, t):
        seen.append(sorted(set(t.flatten().tolist())))
        return torch.zeros_like(x)

    noise = torch.randn(2, 5, 2, generator=torch.Generator().manual_seed(0))
    out = toy_ddpm_sampler(eps, noise, sched, generator=torch.Generator().manual_seed(1))
    assert seen == [[5.0], [4.0], [3.0], [2.0], [1.0]]  # t = T-1 .. 1; never t = 0
    # by hand: with eps = 0 each step divides by sqrt(alpha_t); noise sqrt(beta_t) z for t > 1 only (4 draws)
    g, x = torch.Generator().manual_seed(1), noise.clone()
    for t in range(5, 0, -1):
        x = x / sched.alphas[t].sqrt()
        if t > 1:
            x = x + sched.betas[t].sqrt() * torch.randn(x.shape, generator=g)
    torch.testing.assert_close(out, x, rtol=0, atol=0)


def test_toy_sampler_draws_a_gaussian_exactly_with_the_exact_eps():
    # with eps* of N(0, c I) the chain is a linear Gaussian map: its output variance has a closed form
    sched, c = toy_cosine_schedule(40), 2.0
    ab, a, b = sched.alpha_bar.double(), sched.alphas.double(), sched.betas.double()
    eps = lambda x, t: (1 - ab[t.long()]).sqrt()[..., None] / (ab[t.long()] * c + 1 - ab[t.long()])[..., None] * x  # noqa: E731
    noise = torch.randn(1, 200_000, 1, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    x = toy_ddpm_sampler(eps, noise, sched, generator=torch.Generator().manual_seed(1))
    var = 1.0
    for t in range(39, 0, -1):
        m = (1 - b[t] / (1 - ab[t]).sqrt() * (1 - ab[t]).sqrt() / (ab[t] * c + 1 - ab[t])) / a[t].sqrt()
        var = m ** 2 * var + (b[t] if t > 1 else 0.0)
    assert abs(x.var().item() - var.item()) < 0.02 * var.item()


def _reference_block_net(net: EnsembleResidualMLP, r: int) -> nn.Module:
    """Member r rebuilt from torch.nn modules, as the toy notebook writes its DiffusionModel."""

    class Block(nn.Module):
        def __init__(self, k):
            super().__init__()
            n = net.width
            self.l1, self.n1, self.l2, self.n2 = nn.Linear(n + 1, n + 1), nn.LayerNorm(n + 1), nn.Linear(n + 1, n), nn.LayerNorm(n)
            with torch.no_grad():
                self.l1.weight.copy_(net.w1[k][r].T), self.l1.bias.copy_(net.b1[k][r, 0])
                self.l2.weight.copy_(net.w2[k][r].T), self.l2.bias.copy_(net.b2[k][r, 0])
                self.n1.weight.copy_(net.g1[k][r, 0]), self.n1.bias.copy_(net.c1[k][r, 0])
                self.n2.weight.copy_(net.g2[k][r, 0]), self.n2.bias.copy_(net.c2[k][r, 0])

        def forward(self, h, t):
            u = torch.relu(self.n1(self.l1(torch.hstack([h, t]))))
            return torch.relu(self.n2(self.l2(u))) + h

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.inp, self.out = nn.Linear(net.dim + 1, net.width), nn.Linear(net.width, net.dim)
            self.blocks = nn.ModuleList([Block(k) for k in range(net.blocks)])
            with torch.no_grad():
                self.inp.weight.copy_(net.w_in[r].T), self.inp.bias.copy_(net.b_in[r, 0])
                self.out.weight.copy_(net.w_out[r].T), self.out.bias.copy_(net.b_out[r, 0])

        def forward(self, x, t):
            h = self.inp(torch.hstack([x, t]))
            for block in self.blocks:
                h = block(h, t)
            return self.out(h)

    return Model()


def test_residual_mlp_equals_the_notebooks_network_member_by_member():
    net = EnsembleResidualMLP(3, 2, width=8, blocks=2, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():  # move the LayerNorms off their initial values so that they are tested too
        for p in list(net.g1) + list(net.c1) + list(net.g2) + list(net.c2):
            p.add_(0.3 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    x = torch.randn(3, 7, 2, generator=torch.Generator().manual_seed(1))
    t = torch.randint(0, 40, (3, 7), generator=torch.Generator().manual_seed(2)).float()
    out = net(x, t)
    assert out.shape == (3, 7, 2)
    for r in range(3):
        ref = _reference_block_net(net, r)(x[r], t[r, :, None])
        torch.testing.assert_close(out[r], ref, rtol=1e-5, atol=1e-5)
    with torch.no_grad():  # members are independent
        net.w_out[1].add_(1.0)
    torch.testing.assert_close(net(x, t)[0], out[0], rtol=0, atol=0)
    assert not torch.allclose(net(x, t)[1], out[1])


def test_recipe_is_a_named_choice_and_the_toy_recipe_uses_its_parts():
    with pytest.raises(ValueError, match="recipe must be one of"):
        DiffusionFamily(P_MEAN, P_COV, runs=1, recipe="toy")
    family = DiffusionFamily(P_MEAN, P_COV, runs=2, w=1.0, **TOY)
    assert family.sampler is toy_ddpm_sampler and family.schedule.betas[0] == 0
    assert "toy-diffusion" in family.fingerprint() and family.sampled_steps() == list(range(1, 10))
    model = family.fit(family.draw_real(50, np.random.default_rng(0)))
    assert isinstance(model.base, EnsembleResidualMLP) and isinstance(model.aux, EnsembleResidualMLP)
    assert np.all(np.isfinite(family.summary(model)["w2"]))


def test_w_zero_samples_the_base_model_exactly():
    family = DiffusionFamily(P_MEAN, P_COV, runs=2, w=(0.0, 3.0), **TOY)
    model = family.fit(family.draw_real(50, np.random.default_rng(0)))
    assert model.aux is not None
    calls = []

    def guide(x, t):
        calls.append(1)
        return model.aux(x, t)

    noise = torch.randn(4, 30, 2, generator=torch.Generator().manual_seed(3))
    alone = toy_ddpm_sampler(model.base, noise, family.schedule, generator=torch.Generator().manual_seed(4))
    float_zero = toy_ddpm_sampler(model.base, noise, family.schedule, guide=guide, weight=constant_weight(0.0),
                                  generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(float_zero, alone, rtol=0, atol=0)
    assert not calls  # a float weight of 0 never evaluates the guide
    grid = family._draw(model, 30, torch.Generator().manual_seed(5))  # per-member w = (0, 0, 3, 3)
    base = family._draw(SimsModel(model.base, None), 30, torch.Generator().manual_seed(5))
    torch.testing.assert_close(grid[:2], base[:2], rtol=0, atol=0)
    assert not torch.allclose(grid[2:], base[2:])


def test_exact_eps_is_the_regression_of_the_noise_on_x_t():
    # E[eps | x_t] is linear in x_t for Gaussian x_0: a least-squares fit on many draws recovers it
    family = DiffusionFamily(P_MEAN, P_COV, runs=1, **TOY)
    g = torch.Generator().manual_seed(0)
    chol = torch.linalg.cholesky(torch.tensor(P_COV, dtype=torch.float64))
    for step in (1, 5, 9):
        ab = family.schedule.alpha_bar.double()[step]
        x0 = torch.randn(200_000, 2, generator=g, dtype=torch.float64) @ chol.T
        eps = torch.randn(x0.shape, generator=g, dtype=torch.float64)
        xt = ab.sqrt() * x0 + (1 - ab).sqrt() * eps
        coef = torch.linalg.lstsq(xt, eps).solution  # eps ~ xt @ coef
        exact = family.exact_eps(xt[:5], torch.full((5,), step))
        torch.testing.assert_close(exact, xt[:5] @ coef, rtol=0.02, atol=0.02)


def test_guidance_decomposition_shapes_and_identities():
    family = DiffusionFamily(P_MEAN, P_COV, runs=2, **TOY)
    data = family.draw_real(60, np.random.default_rng(0))
    out = family.guidance_decomposition(data, budgets=[1, 3], aux_seeds=3, lrs=[1e-3, 1e-4], w_grid=(0.0, 1.0),
                                        probe_points=20, eval_samples=100)
    assert out["sys2"].shape == out["noise2"].shape == out["cos_sys"].shape == (2, 2, 2)
    assert out["w_star"].shape == out["gain"].shape == (2, 2, 2, 3)
    assert out["w2"].shape == (2, 2, 2, 2, 3) and out["sys2_t"].shape == (2, 2, 9)
    assert np.all((out["gain"] >= 0) & (out["gain"] <= 1 + 1e-9)) and np.all(np.abs(out["cos_sys"]) <= 1 + 1e-9)
    assert np.all(out["noise2"] > 0) and np.all(out["base_err2"] > 0)
    w0 = out["w2"][:, :, 0]  # w = 0 is the base model alone, at every budget and rate
    assert np.all(w0 == w0[0, 0])
    assert not np.allclose(out["w2"][0, 0, 1], out["w2"][0, 1, 1])  # the budget changes guided samples
    with pytest.raises(ValueError, match="budgets must be distinct"):
        family.guidance_decomposition(data, budgets=[1, 1], aux_seeds=2)
