"""MAD Sec. 3.1 Gaussian theory against independent facts: scipy, closed forms, a second method."""

import numpy as np
import pytest
from scipy import linalg, stats

from madlib.loops import LoopSpec, run_loop
from madlib.models.gaussian import GaussianFamily
from madlib.theory.gaussian import (
    expected_log_variance_ratio_1d,
    expected_mean_drift_sq,
    fit_gaussian,
    gaussian_stats,
    mean_drift_sq_variance_bound,
    pool_gaussian_stats,
    sample_gaussian_points,
    sample_gaussian_stats,
    trace_relative_variance_bound,
    w2_gaussian,
)


def _random_spd(rng, d, batch=()):
    a = rng.standard_normal(batch + (d, d))
    return a @ np.swapaxes(a, -1, -2) + 0.1 * np.eye(d)


def test_w2_gaussian_matches_scipy_sqrtm():
    rng = np.random.default_rng(0)
    for d in (1, 3, 7):
        m1, m2 = rng.standard_normal(d), rng.standard_normal(d)
        c1, c2 = _random_spd(rng, d), _random_spd(rng, d)
        root = linalg.sqrtm(c2)
        ref = np.sum((m1 - m2) ** 2) + np.trace(c1 + c2 - 2 * np.real(linalg.sqrtm(root @ c1 @ root)))
        assert w2_gaussian(m1, c1, m2, c2, squared=True) == pytest.approx(ref, rel=1e-8)
        # symmetric, and zero between identical Gaussians
        assert w2_gaussian(m1, c1, m2, c2) == pytest.approx(w2_gaussian(m2, c2, m1, c1), rel=1e-8)
        assert w2_gaussian(m1, c1, m1, c1) == pytest.approx(0.0, abs=1e-6)


def test_w2_gaussian_one_dimensional_closed_form_and_batching():
    mu = np.array([[0.0], [1.0], [-2.0]])
    sd = np.array([1.0, 0.5, 3.0])
    got = w2_gaussian(mu, sd[:, None, None] ** 2, np.zeros(1), np.eye(1))
    np.testing.assert_allclose(got, np.sqrt(mu[:, 0] ** 2 + (sd - 1) ** 2), rtol=1e-10)


def test_fit_and_pool_equal_numpy_on_points():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((4, 30, 3))
    mean, cov = fit_gaussian(gaussian_stats(x))
    np.testing.assert_allclose(cov[2], np.cov(x[2].T), rtol=1e-12)  # unbiased, MAD Eq. 1
    pooled = pool_gaussian_stats([gaussian_stats(x[:, :10]), gaussian_stats(x[:, 10:25]), gaussian_stats(x[:, 25:])])
    whole = gaussian_stats(x)
    assert pooled.n == 30
    np.testing.assert_allclose(pooled.mean, whole.mean, atol=1e-12)
    np.testing.assert_allclose(pooled.scatter, whole.scatter, atol=1e-10)


@pytest.mark.parametrize("n", [3, 50])  # n - 1 < d uses the singular Wishart, n - 1 >= d Bartlett
def test_exact_statistics_match_scipy_wishart_and_normal(n):
    rng = np.random.default_rng(2)
    d, runs, lam = 4, 20000, 0.7
    cov = _random_spd(rng, d)
    mu = rng.standard_normal(d)
    st = sample_gaussian_stats(np.tile(mu, (runs, 1)), np.tile(cov, (runs, 1, 1)), n, lam, rng)
    # The sample mean is N(mu, lam cov / n): a KS test on a standardised projection.
    v = rng.standard_normal(d)
    z = (st.mean - mu) @ v / np.sqrt(lam * v @ cov @ v / n)
    assert stats.kstest(z, "norm").pvalue > 1e-3
    # The scatter's trace against scipy's own Wishart sampler.
    ref = stats.wishart(df=n - 1, scale=lam * cov).rvs(size=runs, random_state=3) if n - 1 >= d else \
        np.einsum("rki,rkj->rij", *(2 * [rng.standard_normal((runs, n - 1, d)) @ linalg.cholesky(lam * cov)]))
    assert stats.ks_2samp(np.trace(st.scatter, axis1=1, axis2=2), np.trace(ref, axis1=1, axis2=2)).pvalue > 1e-3
    np.testing.assert_allclose(st.scatter.mean(0), (n - 1) * lam * cov, rtol=0.05, atol=0.05)


def test_exact_and_naive_families_agree_in_distribution():
    runs, d = 4000, 3
    cov = np.diag([1.0, 2.0, 0.5])
    spec = LoopSpec("fully_synthetic", generations=5, n_synth=8, lam=0.9)
    fast = run_loop(GaussianFamily(np.zeros(d), cov, runs), spec, seed=4, progress=False)
    naive = run_loop(GaussianFamily(np.zeros(d), cov, runs, exact=False), spec, seed=5, progress=False)
    for key in ("tr_cov", "w2"):
        assert stats.ks_2samp(fast.records[key][-1], naive.records[key][-1]).pvalue > 1e-3


def test_mad_eq2_supermartingale_and_martingale():
    runs, n_s, lam = 20000, 20, 0.8
    res = run_loop(GaussianFamily(np.zeros(2), np.eye(2), runs), LoopSpec("fully_synthetic", 4, n_s, lam), seed=6,
                   progress=False)
    tr = res.records["tr_cov"] / 2
    for t in range(1, 5):
        se = lam ** t * np.sqrt(trace_relative_variance_bound(n_s, t) / runs)
        assert abs(tr[t].mean() - lam ** t) < 4 * se
    step = res.records["mean"][3] - res.records["mean"][2]
    assert np.all(np.abs(step.mean(0)) < 4 * step.std(0) / np.sqrt(runs))
    d2 = (res.records["mean"][4] ** 2).sum(-1)
    se = np.sqrt(mean_drift_sq_variance_bound(2, n_s, lam, 4) / runs)
    assert abs(d2.mean() - expected_mean_drift_sq(2, n_s, lam, 4)) < 4 * se


def test_mad_proposition_collapse_rate_one_dimension():
    """At lambda = 1 the mean variance is preserved while E log sigma_t^2 falls as the digamma formula says."""
    runs, n_s, t = 20000, 10, 30
    res = run_loop(GaussianFamily([0.0], [[1.0]], runs), LoopSpec("fully_synthetic", t, n_s, 1.0), seed=7,
                   progress=False)
    log_ratio = np.log(res.records["tr_cov"][-1])
    expected = expected_log_variance_ratio_1d(n_s, 1.0, t)
    assert expected < -2.0
    assert abs(log_ratio.mean() - expected) < 4 * log_ratio.std() / np.sqrt(runs)


def test_variance_bound_is_exact_in_one_dimension():
    runs, n_s = 200000, 6
    res = run_loop(GaussianFamily([0.0], [[1.0]], runs), LoopSpec("fully_synthetic", 3, n_s, 1.0), seed=8,
                   progress=False)
    rel_var = res.records["tr_cov"][3].var()
    assert rel_var == pytest.approx(trace_relative_variance_bound(n_s, 3), rel=0.1)


def test_bad_input_names_the_parameter():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="mean must be a vector of dimension d >= 1"):
        GaussianFamily(np.zeros(0), np.eye(0), 3)
    with pytest.raises(ValueError, match="cov must be positive definite"):
        GaussianFamily(np.zeros(2), np.array([[1.0, 2.0], [2.0, 1.0]]), 3)
    with pytest.raises(ValueError, match="cov must be symmetric"):
        GaussianFamily(np.zeros(2), np.array([[1.0, 0.5], [0.0, 1.0]]), 3)
    with pytest.raises(ValueError, match="n must be an integer >= 2"):
        sample_gaussian_stats(np.zeros((1, 2)), np.eye(2)[None], 1, 1.0, rng)
    for lam in (0.0, 1.5, -0.1):
        with pytest.raises(ValueError, match=r"lam must lie in \(0, 1\]"):
            sample_gaussian_points(np.zeros((1, 2)), np.eye(2)[None], 5, lam, rng)
    with pytest.raises(ValueError, match="runs must be an integer >= 1"):
        GaussianFamily(np.zeros(2), np.eye(2), 0)
