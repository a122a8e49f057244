"""The Gaussian fresh-data loop (MAD Sec. 5, Eq. 3-4, App. G) against independent facts."""

from collections import Counter

import numpy as np
import pytest

from madlib.loops import LoopSpec, run_loop
from madlib.methods.mad_fresh import (admissible_threshold, effective_sample_grid, fresh_limits, fresh_trajectories,
                                 growing_bias_floor, growing_trajectories, mixing_time, real_only_baseline, solve_effective_sample_size,
                                 w2_to_standard_normal)
from madlib.theory.gaussian import fit_gaussian, gaussian_stats, w2_gaussian

Z_MAX = 4.0


@pytest.fixture(scope="module")
def baseline3():
    return real_only_baseline(3, n_max=10 ** 4, points=40, runs=4000, seed=1)


def test_w2_to_standard_normal_is_the_closed_form():
    rng = np.random.default_rng(0)
    mean = rng.standard_normal((6, 4))
    a = rng.standard_normal((6, 4, 4))
    cov = a @ np.swapaxes(a, -1, -2)
    cov[0] = np.diag([2.0, 1.0, 0.0, 0.0])  # singular, as a fit on few points is
    np.testing.assert_allclose(w2_to_standard_normal(mean, cov), w2_gaussian(mean, cov, np.zeros(4), np.eye(4)),
                               atol=1e-10)


def test_baseline_matches_fitting_drawn_points():
    """E[dist(G(n), P_r)] by drawing n points and fitting them: the slow, obvious reference."""
    dim, runs = 3, 4000
    baseline = real_only_baseline(dim, n_values=[2, 5, 20, 60], runs=runs, seed=2)
    rng = np.random.default_rng(3)
    for n, mean, se in zip(baseline.n, baseline.mean, baseline.se):
        mu, cov = fit_gaussian(gaussian_stats(rng.standard_normal((runs, n, dim))))
        w2 = w2_gaussian(mu, cov, np.zeros(dim), np.eye(dim))
        z = (w2.mean() - mean) / np.hypot(se, w2.std(ddof=1) / np.sqrt(runs))
        assert abs(z) < Z_MAX, (n, w2.mean(), mean)


def test_mad_eq4_no_synthetic_data_is_plain_fresh_estimation(baseline3):
    """lambda = 1, n_s = 0: every generation fits n_r fresh real points, so the expected distance is the
    real-only baseline at n_r at every generation, and n_e = n_r."""
    n_r = 20
    traj = fresh_trajectories(7, n_r, 0, 1.0, dim=3, generations=6, runs=3000, seed=4)
    w2 = traj.w2[1:, 0]  # generations 2..6, [G, R]
    z = (w2.mean(1) - baseline3(n_r)) / np.hypot(w2.std(1, ddof=1) / np.sqrt(w2.shape[1]), baseline3.se_at(n_r))
    assert np.all(np.abs(z) < Z_MAX), z
    (limit,) = fresh_limits(n_r, 0, 1.0, dim=3, runs=400, seed=5)
    n_e, se, bound = solve_effective_sample_size(limit.wd, limit.se, baseline3)
    assert bound == "" and abs(n_e - n_r) < Z_MAX * se, (n_e, se)
    assert se < 0.1 * n_r


def test_effective_sample_size_inverts_the_baseline(baseline3):
    for n in (3.0, 17.5, 400.0):
        n_e, se, bound = solve_effective_sample_size(float(baseline3(n)), 0.0, baseline3)
        assert bound == "" and n_e == pytest.approx(n, rel=1e-6) and se >= 0
    assert solve_effective_sample_size(1e3, 0.1, baseline3)[2] == "<"
    assert solve_effective_sample_size(1e-6, 0.0, baseline3)[2] == ">"


def test_mad_eq3_limit_does_not_depend_on_n_ini():
    kw = dict(dim=3, runs=300, burn_mixing=6.0)
    small = fresh_limits(20, 60, (1.0, 0.8), n_ini=4, seed=6, **kw)
    large = fresh_limits(20, 60, (1.0, 0.8), n_ini=2000, seed=7, **kw)
    for a, b in zip(small, large):
        assert a.window == b.window and a.window[0] > 6 * a.mixing_time - 1
        assert abs(a.wd - b.wd) < Z_MAX * np.hypot(a.se, b.se), (a, b)
    assert small[1].wd > small[0].wd  # the bias moves the limit away from P_r


def test_mixing_time():
    assert mixing_time(100, 900, 1.0) == pytest.approx(10.0)  # max(1 / (1 - 0.81), 1 / (1 - 0.9))
    assert mixing_time(100, 900, 0.5) == pytest.approx(1 / (1 - 0.81))
    assert mixing_time(10, 0, 1.0) == 1.0
    assert mixing_time(0, 10, 1.0) == np.inf
    # K = 2: the largest root of z^2 = (a / 2)(z + 1)
    a = 0.9
    root = (a / 2 + np.sqrt(a ** 2 / 4 + 2 * a)) / 2
    assert mixing_time(100, 900, 1.0, last_k=2) == pytest.approx(max(1 / (1 - root ** 2), 1 / (1 - root)))


def test_admissible_threshold():
    n_s = [10, 100, 1000, 10000]
    assert admissible_threshold(n_s, [1.5, 1.2, 0.8, 0.5]) == pytest.approx(10 ** 2.5)
    assert admissible_threshold(n_s, [0.9, 1.2, 1.0, 0.5]) == pytest.approx(1000.0)  # the largest, not the first
    assert admissible_threshold(n_s, [1.5, 1.2, 1.1, 1.0]) == np.inf
    assert admissible_threshold(n_s, [0.9, 0.8, 0.7, 0.5]) == 0.0


def test_grid_batches_lambdas_and_runs(baseline3):
    grid = effective_sample_grid([20], [10, 200], [1.0, 0.7], baseline=baseline3, runs=64, seed=8)
    assert grid.ratio.shape == (2, 1, 2)
    # lambda = 1: synthetic data carry past real data, n_e >= n_r; strong bias at n_s = 10 n_r: n_e < n_r
    assert np.all(grid.ratio[0] > 1.0)
    assert grid.ratio[1, 0, 1] < 1.0 and grid.threshold[1, 0] < 200
    assert np.all(grid.window_first[..., 1] > 5 * grid.mixing_time[0, :, 1] - 1)


@pytest.mark.parametrize("call, match", [
    (lambda: fresh_limits(-1, 10, dim=2, runs=2, seed=0), "n_r"),
    (lambda: fresh_limits(10, -3, dim=2, runs=2, seed=0), "n_s"),
    (lambda: fresh_limits(1, 0, dim=2, runs=2, seed=0), r"n_r \+ n_s"),
    (lambda: fresh_trajectories(5, 0, 1, dim=2, generations=3, runs=2, seed=0), r"n_r \+ n_s"),
    (lambda: mixing_time(10, 10, 1.0, last_k=0), "last_k"),
    (lambda: fresh_limits(10, 10, dim=2, runs=2, seed=0, last_k=0), "last_k"),
    (lambda: fresh_limits(10, 10, 1.5, dim=2, runs=2, seed=0), "lam"),
    (lambda: fresh_limits(0, 10, dim=2, runs=2, seed=0), "n_r"),  # no limit: the loop collapses
    (lambda: growing_trajectories(1.2, [10, 20], dim=2, runs=2, seed=0), "real_fraction"),
    (lambda: growing_trajectories(-0.1, [10, 20], dim=2, runs=2, seed=0), "real_fraction"),
    (lambda: LoopSpec("growing", 2, n_synth=0, real_fraction=2.0, sizes=(4, 4)), "real_fraction"),
    (lambda: LoopSpec("growing", 2, n_synth=0, sizes=(4, 4)), "real_fraction"),
    (lambda: LoopSpec("growing", 3, n_synth=0, real_fraction=0.5, sizes=(4, 4)), "sizes"),
    (lambda: LoopSpec("growing", 2, n_synth=0, real_fraction=0.5, sizes=(4, 1)), r"sizes\[1\]"),
    (lambda: LoopSpec("fresh", 2, n_synth=4, n_real=2, real_fraction=0.5), "real_fraction"),
])
def test_bad_input_names_the_parameter(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call()


class CountFamily:
    """Data are Counters of where each point came from; a model is its generation number."""

    def __init__(self):
        self.fitted = []

    def true_model(self):
        return 0

    def draw_real(self, n, rng):
        return Counter(real=n)

    def sample(self, model, n, lam, rng):
        return Counter({f"G{model}": n})

    def concat(self, parts):
        return sum(parts, Counter())

    def fit(self, data):
        self.fitted.append(data)
        return len(self.fitted)

    def summary(self, model):
        return {"generation": np.array([model])}


@pytest.mark.parametrize("p", [0.0, 0.3, 0.5, 1.0])
def test_growing_loop_trains_on_a_real_fraction_p_of_n_t(p):
    """MAD App. G exp. 2: |D^t| = n_t, n_r = p n_t (nearest integer, halves up), n_s = n_t - n_r from G^{t-1}."""
    sizes = (5, 10, 15, 40, 41)
    family = CountFamily()
    run_loop(family, LoopSpec("growing", len(sizes), n_synth=0, real_fraction=p, sizes=sizes), seed=0, progress=False)
    for t, (n_t, data) in enumerate(zip(sizes, family.fitted), start=1):
        real = int(p * n_t + 0.5)
        expected = Counter({"real": real, f"G{t - 1}": n_t - real})
        assert data == +expected, (t, data)  # unary + drops zero counts: a part of 0 points is left out
    family = CountFamily()
    run_loop(family, LoopSpec("growing", 3, n_synth=0, real_fraction=p, sizes=(99, 10, 20), n_ini=6),
             seed=0, progress=False)
    assert family.fitted[0] == Counter(real=6)  # generation 1: n_ini real points, as in every loop


def test_growing_loop_with_real_fraction_one_is_the_baseline(baseline3):
    sizes = [4, 9, 30, 200, 1000]
    traj = growing_trajectories(1.0, sizes, dim=3, runs=3000, seed=9)
    w2 = traj.w2[:, 0]  # [G, R]
    z = (w2.mean(1) - baseline3(sizes)) / np.hypot(w2.std(1, ddof=1) / np.sqrt(w2.shape[1]), baseline3.se_at(sizes))
    assert np.all(np.abs(z) < Z_MAX), z


def test_growing_loop_with_bias_levels_off():
    """lambda < 1 with p < 1: the covariance settles at c I, c = p / (1 - (1 - p) lambda) < 1, so the
    distance stops falling at d (1 - sqrt c)^2 under W2^2 however large n_t grows (MAD Fig. 31 right)."""
    p, lam, dim = 0.5, 0.8, 3
    sizes = [10 ** 6] * 30
    traj = growing_trajectories(p, sizes, lam, dim=dim, runs=200, seed=10)
    c = p / (1 - (1 - p) * lam)
    floor = np.sqrt(dim) * (1 - np.sqrt(c))
    assert traj.w2[-10:].mean() == pytest.approx(floor, rel=0.05)
    assert growing_bias_floor(dim, p, lam) == pytest.approx(floor)
    assert growing_bias_floor(dim, p, 1.0) == 0.0 and growing_bias_floor(dim, 1.0, lam) == 0.0
