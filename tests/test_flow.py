"""The batched RealNVP flow: change of variables against autograd, normalisation, training, the family."""

import math

import numpy as np
import pytest
import torch

from madlib.data import Rosenbrock
from madlib.loops import LoopSpec, run_loop
from madlib.models.flow import FlowFamily, FlowModel, RealNVP, train_flow


def random_flow(runs=2, layers=4, seed=0):
    """A flow whose couplings are not the identity (the last layers start at zero otherwise)."""
    g = torch.Generator().manual_seed(seed)
    flow = RealNVP(runs, 2, layers, 16, generator=g, dtype=torch.float64)
    with torch.no_grad():
        for l in range(layers):
            flow.w3[l].copy_(0.5 * torch.randn(flow.w3[l].shape, generator=g, dtype=torch.float64))
            flow.b3[l].copy_(0.2 * torch.randn(flow.b3[l].shape, generator=g, dtype=torch.float64))
        flow.loc.copy_(torch.tensor([[[0.5, -1.0]], [[0.0, 1.0]]], dtype=torch.float64)[:runs])
        flow.scale.copy_(torch.tensor([[[1.5, 0.7]], [[1.0, 2.0]]], dtype=torch.float64)[:runs])
    return flow.requires_grad_(False)


def test_log_det_matches_autograd_jacobian():
    flow = random_flow()
    x = torch.randn(2, 3, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    _, log_det = flow(x)
    for r in range(2):
        for b in range(3):
            def point_map(p, r=r, b=b):  # the map R^2 -> R^2 of point b of run r
                xb = x.clone()
                xb[r, b] = p
                return flow(xb)[0][r, b]

            jac = torch.autograd.functional.jacobian(point_map, x[r, b])  # [2, 2]
            torch.testing.assert_close(torch.log(torch.det(jac).abs()), log_det[r, b], rtol=0, atol=1e-10)


def test_inverse_undoes_forward():
    flow = random_flow()
    x = 3 * torch.randn(2, 100, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    z, _ = flow(x)
    torch.testing.assert_close(flow.inverse(z), x, rtol=1e-10, atol=1e-10)


def test_density_integrates_to_one_and_sampling_matches_its_moments():
    flow = random_flow()
    model = FlowModel(flow, np.zeros((2, 1)), np.zeros((2, 1)), np.zeros(2, int))
    h = 0.0625
    axis = np.arange(-16, 16, h) + h / 2
    grid = np.stack(np.meshgrid(axis, axis, indexing="ij"), -1).reshape(-1, 2)
    p = np.exp(model.log_prob(grid))  # [2, m]
    mass = p.sum(1) * h * h
    np.testing.assert_allclose(mass, 1.0, atol=2e-3)
    grid_mean = (p[..., None] * grid).sum(1) * h * h  # [2, 2]
    x = model.sample(100_000, 1.0, np.random.default_rng(3))
    np.testing.assert_allclose(x.mean(1), grid_mean, atol=0.03)


def test_lambda_is_the_latent_variance():
    flow = random_flow()
    model = FlowModel(flow, np.zeros((2, 1)), np.zeros((2, 1)), np.zeros(2, int))
    x = model.sample(50_000, 0.5, np.random.default_rng(4))
    z, _ = flow(torch.tensor(x))
    np.testing.assert_allclose(z.var(1).numpy(), 0.5, rtol=0.03)


def test_training_on_rosenbrock_approaches_its_entropy_and_is_deterministic():
    torch.set_num_threads(1)
    target = Rosenbrock()
    x = target.sample(4000, seed=0).numpy()[None]
    a = train_flow(x, seed=5, layers=4, hidden=32, epochs=4, batch_size=256)
    b = train_flow(x, seed=5, layers=4, hidden=32, epochs=4, batch_size=256)
    torch.testing.assert_close(a.flow.w2[1], b.flow.w2[1], rtol=0, atol=0)
    test = target.sample(20_000, seed=1).numpy()
    entropy = -target.log_prob(torch.tensor(test)).mean().item()  # 0.5 log(2 pi e) + 0.5 log(pi e) = 2.49
    assert abs(entropy - (0.5 * math.log(2 * math.pi * math.e) + 0.5 * math.log(math.pi * math.e))) < 0.02
    nll = -a.log_prob(test).mean()
    assert entropy - 0.02 < nll < entropy + 0.15  # KL(P_r || flow) >= 0 and small after a short training
    assert a.val_nll.shape == (1, 4) and 0 <= a.best_epoch[0] < 4
    assert a.val_nll[0, a.best_epoch[0]] == a.val_nll.min()


def test_family_runs_a_short_loop():
    torch.set_num_threads(1)
    grid = np.array([[0.0, 0.0], [0.0, 1.0], [3.0, 0.0]])
    family = FlowFamily(Rosenbrock(), runs=2, layers=2, hidden=8, epochs=1, eval_points=grid, eval_samples=50)
    result = run_loop(family, LoopSpec("fully_synthetic", generations=2, n_synth=300, lam=0.8, n_ini=300),
                      seed=0, progress=False)
    assert result.records["samples"].shape == (2, 2, 50, 2)
    assert result.records["log_prob_eval"].shape == (2, 2, 3)
    assert result.records["val_nll_curve"].shape == (2, 2, 1)
    assert np.all(np.isfinite(result.records["val_nll"]))
    with pytest.raises(NotImplementedError, match="n_ini"):
        family.true_model()


@pytest.mark.parametrize("kwargs, match", [
    (dict(runs=0), "runs"),
    (dict(val_fraction=1.0), "val_fraction"),
    (dict(epochs=0), "epochs"),
    (dict(lr=0.0), "lr"),
    (dict(eval_points=np.zeros(3)), "eval_points"),
])
def test_bad_family_arguments_name_the_parameter(kwargs, match):
    with pytest.raises(ValueError, match=match):
        FlowFamily(Rosenbrock(), **{"runs": 1, **kwargs})


def test_bad_inputs_are_refused():
    with pytest.raises(TypeError, match="target"):
        FlowFamily(object(), runs=1)
    with pytest.raises(ValueError, match="x must be"):
        train_flow(np.zeros((10, 2)), seed=0)
    with pytest.raises(ValueError, match="val_fraction"):
        train_flow(np.zeros((1, 3, 2)), seed=0, val_fraction=0.01)
    model = FlowModel(random_flow(), np.zeros((2, 1)), np.zeros((2, 1)), np.zeros(2, int))
    with pytest.raises(ValueError, match="lam"):
        model.sample(10, 0.0, np.random.default_rng(0))
    with pytest.raises(ValueError, match="dim"):
        RealNVP(1, dim=1)
