"""The batched Gaussian-mixture family against independent facts and scikit-learn's EM."""

import numpy as np
import pytest
from sklearn.mixture import GaussianMixture

from madlib.data import grid_mixture
from madlib.loops import LoopSpec, run_loop
from madlib.metrics.modes import mode_statistics
from madlib.models.mixture import (MixtureFamily, MixtureModel, fit_mixture, kmeans_init, mixture_moments,
                                   rank_correlation, sample_mixture)


def three_modes(runs=1):
    w = np.array([0.2, 0.3, 0.5])
    mu = np.array([[-6.0, 0.0], [0.0, 6.0], [6.0, -1.0]])
    cov = np.array([[[1.0, 0.3], [0.3, 0.5]], [[0.4, 0.0], [0.0, 0.8]], [[0.7, -0.2], [-0.2, 0.6]]])
    return MixtureFamily(w, mu, cov, runs), w, mu, cov


def test_log_prob_matches_scipy_mixture_density():
    from scipy.stats import multivariate_normal

    family, w, mu, cov = three_modes(runs=2)
    x = np.random.default_rng(0).normal(size=(50, 2)) * 4
    expected = np.log(sum(w[k] * multivariate_normal(mu[k], cov[k]).pdf(x) for k in range(3)))
    got = family.true_model().log_prob(x)  # [2, 50]
    np.testing.assert_allclose(got, np.broadcast_to(expected, got.shape), rtol=1e-10, atol=1e-10)


def test_fit_recovers_well_separated_modes_from_kmeans_start():
    family, w, mu, cov = three_modes(runs=3)
    x = sample_mixture(family.true_model(), 6000, 1.0, np.random.default_rng(1))
    model, info = fit_mixture(x, kmeans_init(x, 3))
    assert info["converged"].all()
    for r in range(3):
        order = np.argsort(model.means[r, :, 0])  # modes sorted along x1, as the truth is
        # Against the truth, within a few standard errors (n_k >= 1200 points per mode).
        np.testing.assert_allclose(model.weights[r, order], w, atol=0.025)
        np.testing.assert_allclose(model.means[r, order], mu, atol=0.1)
        np.testing.assert_allclose(model.covs[r, order], cov, atol=0.15)
        # Against the maximum-likelihood estimate of each labelled mode (separation >= 8 std): much tighter.
        label = ((x[r][:, None, :] - mu) ** 2).sum(-1).argmin(-1)
        for k in range(3):
            pts = x[r][label == k]
            np.testing.assert_allclose(model.means[r, order[k]], pts.mean(0), atol=2e-3)
            np.testing.assert_allclose(model.covs[r, order[k]], np.cov(pts.T, ddof=0), atol=5e-3)
            assert abs(model.weights[r, order[k]] - len(pts) / x.shape[1]) < 1e-3


def test_fit_agrees_with_sklearn_gaussian_mixture():
    family, *_ = three_modes(runs=2)
    x = sample_mixture(family.true_model(), 3000, 1.0, np.random.default_rng(2))
    start = kmeans_init(x, 3)
    ours, info = fit_mixture(x, start, tol=1e-6, max_iter=500)
    for r in range(2):
        sk = GaussianMixture(3, covariance_type="full", tol=1e-6, max_iter=500, reg_covar=1e-6,
                             weights_init=start.weights[r], means_init=start.means[r],
                             precisions_init=np.linalg.inv(start.covs[r])).fit(x[r])
        assert abs(ours.log_prob(x)[r].mean() - sk.score(x[r])) < 1e-5
        np.testing.assert_allclose(ours.means[r], sk.means_, atol=1e-3)
        np.testing.assert_allclose(ours.weights[r], sk.weights_, atol=1e-4)


def test_batched_fit_equals_run_by_run_fit():
    family, *_ = three_modes(runs=3)
    x = sample_mixture(family.true_model(), 400, 1.0, np.random.default_rng(3))
    start = kmeans_init(x, 3)
    batched, info = fit_mixture(x, start)
    for r in range(3):
        one = MixtureModel(start.weights[r:r + 1], start.means[r:r + 1], start.covs[r:r + 1])
        alone, info_r = fit_mixture(x[r:r + 1], one)
        assert info_r["n_iter"][0] == info["n_iter"][r]
        np.testing.assert_allclose(alone.means[0], batched.means[r], rtol=1e-10, atol=1e-12)


def test_lambda_one_sampling_matches_the_model_moments():
    family, *_ = three_modes(runs=2)
    model = family.true_model()
    mean, cov = mixture_moments(model)
    x = sample_mixture(model, 200_000, 1.0, np.random.default_rng(4))
    np.testing.assert_allclose(x.mean(1), mean, atol=0.05)
    np.testing.assert_allclose(np.stack([np.cov(xr.T) for xr in x]), cov, rtol=0.02, atol=0.05)
    # Weights: each point falls near one of the well-separated modes.
    near = ((x[0][:, None, :] - model.means[0]) ** 2).sum(-1).argmin(-1)
    np.testing.assert_allclose(np.bincount(near, minlength=3) / x.shape[1], model.weights[0], atol=0.005)


def test_lambda_scales_each_component_covariance():
    model = MixtureModel(np.array([[1.0]]), np.array([[[1.0, -2.0]]]), np.array([[[[2.0, 0.5], [0.5, 1.0]]]]))
    x = sample_mixture(model, 200_000, 0.25, np.random.default_rng(5))[0]
    np.testing.assert_allclose(np.cov(x.T), 0.25 * model.covs[0, 0], rtol=0.02)


def test_dead_component_stays_dead_and_is_never_sampled():
    x = np.concatenate([np.random.default_rng(6).normal(size=(1, 300, 2)) * 0.1 + 5.0], 1)
    start = MixtureModel(np.array([[0.5, 0.5]]), np.array([[[5.0, 5.0], [-50.0, -50.0]]]),
                         np.broadcast_to(0.01 * np.eye(2), (1, 2, 2, 2)).copy())
    model, _ = fit_mixture(x, start)
    assert model.weights[0, 1] == 0.0 and model.weights[0, 0] == 1.0
    np.testing.assert_array_equal(model.means[0, 1], [-50.0, -50.0])
    samples = sample_mixture(model, 5000, 1.0, np.random.default_rng(7))
    assert np.all(samples > 0)


def test_grid_loop_keeps_modes_at_generation_one_and_records_per_run_arrays():
    toy = grid_mixture()
    family = MixtureFamily.from_toy(toy, runs=3)
    result = run_loop(family, LoopSpec("fully_synthetic", generations=3, n_synth=2000), seed=0, progress=False)
    assert result.records["weights"].shape == (4, 3, 25)
    assert result.records["covs"].shape == (4, 3, 25, 2, 2)
    model = MixtureModel(*(result.records[k][1] for k in ("weights", "means", "covs")))
    np.testing.assert_allclose(model.means, family.true_model().means, atol=0.1)  # warm start keeps the modes
    stats = mode_statistics(sample_mixture(model, 2000, 1.0, np.random.default_rng(8)), toy.means.numpy(), 0.3)
    assert np.all(stats["covered"] == 25)
    np.testing.assert_allclose(stats["mean_mode_variance"], 2 * 0.1**2, rtol=0.25)


def test_mode_statistics_known_cases():
    centres = np.array([[0.0, 0.0], [10.0, 0.0]])
    pts = np.array([[[0.0, 0.1], [0.0, -0.1], [0.1, 0.0], [-0.1, 0.0]]])  # all on mode 0
    stats = mode_statistics(pts, centres, 1.0)
    assert stats["covered"][0] == 1
    np.testing.assert_allclose(stats["mode_variance"][0], [4 * 0.01 / 3 * 2 / 2, 0.0])
    np.testing.assert_allclose(stats["mean_mode_variance"][0], 0.02 / 3)


def test_mode_statistics_agree_with_a_per_cell_loop():
    toy = grid_mixture()
    centres = toy.means.numpy()
    model = MixtureModel(np.full((2, 25), 1 / 25), centres[None].repeat(2, 0) + 0.05,
                         np.broadcast_to(0.12**2 * np.eye(2), (2, 25, 2, 2)).copy())
    model.weights[1, :10] = 0.0
    model.weights[1] /= model.weights[1].sum()
    pts = sample_mixture(model, 3000, 1.0, np.random.default_rng(12))
    ours = mode_statistics(pts, centres, 0.3)
    for r in range(2):  # the obvious loop: one cell at a time
        cell = np.argmin(((pts[r][:, None] - centres) ** 2).sum(-1), axis=1)
        for m in range(25):
            inside = pts[r][cell == m]
            ref = np.trace(np.cov(inside.T)) if len(inside) >= 2 else 0.0
            assert ours["mode_variance"][r, m] == pytest.approx(ref, rel=1e-8, abs=1e-12)
    assert ours["covered"][0] == 25 and ours["covered"][1] == 15


def test_rank_correlation_reference_and_constant_input():
    from scipy.stats import spearmanr

    rng = np.random.default_rng(10)
    a, b = rng.normal(size=(20, 3)), rng.integers(0, 4, size=(20, 3)).astype(float)
    expected = [spearmanr(a[:, j], b[:, j]).statistic for j in range(3)]
    np.testing.assert_allclose(rank_correlation(a, b), expected, rtol=1e-12)
    assert np.isnan(rank_correlation(a[:, 0], np.ones(20)))


@pytest.mark.parametrize("kwargs, match", [
    (dict(init="random"), "init"),
    (dict(n_components=3), "n_components"),
    (dict(runs=0), "runs"),
    (dict(tol=-1.0), "tol"),
    (dict(reg_covar=-1e-6), "reg_covar"),
    (dict(max_iter=0), "max_iter"),
])
def test_bad_family_arguments_name_the_parameter(kwargs, match):
    args = dict(weights=np.ones(2), means=np.zeros((2, 2)), covs=np.broadcast_to(np.eye(2), (2, 2, 2)), runs=2)
    with pytest.raises(ValueError, match=match):
        MixtureFamily(**{**args, **kwargs})


def test_bad_p_r_and_data_are_refused():
    with pytest.raises(ValueError, match="weights"):
        MixtureFamily([1.0, -1.0], np.zeros((2, 2)), np.broadcast_to(np.eye(2), (2, 2, 2)), 1)
    with pytest.raises(ValueError, match="covs"):
        MixtureFamily([1.0, 1.0], np.zeros((2, 2)), np.broadcast_to(-np.eye(2), (2, 2, 2)), 1)
    family, *_ = three_modes(runs=2)
    with pytest.raises(ValueError, match="lam"):
        sample_mixture(family.true_model(), 10, 1.5, np.random.default_rng(0))
    with pytest.raises(ValueError, match="x must be"):
        fit_mixture(np.zeros((3, 10, 2)), family.true_model())
    with pytest.raises(ValueError, match="n_components"):
        kmeans_init(np.zeros((1, 2, 2)), 3)


def test_concat_warm_starts_from_the_newest_model_and_augmentation_loop_runs():
    family, *_ = three_modes(runs=2)
    rng = np.random.default_rng(11)
    real = family.draw_real(50, rng)
    other = MixtureModel(*(np.copy(a) for a in (real.source.weights, real.source.means + 1.0, real.source.covs)))
    pooled = family.concat([real, family.sample(other, 30, 1.0, rng)])
    assert pooled.points.shape == (2, 80, 2) and pooled.source is other
    result = run_loop(family, LoopSpec("augmentation", generations=3, n_synth=100, n_ini=200), seed=1, progress=False)
    assert result.records["total_variance"].shape == (3, 2)
