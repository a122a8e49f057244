"""ReDiFine's trait model (Sec. 4, App. D) against independent facts: scipy's truncated normal,
the closed forms of Theorem 1, and the deterministic recursion for the Monte Carlo population."""

import numpy as np
import pytest
from scipy.stats import norm, truncnorm

from madlib.theory.traits import (CFG_PRESETS, FIG4B_START, asymptotic_mean_shift, breed_next_generation,
                                  breeders_equation, exponential_tail_keep_probability, heritability,
                                  selection_ratios, simulate_population, stationary_phenotypic_variance,
                                  trait_recursion, truncated_normal_moments, truncation_constants,
                                  truncation_selection, truncation_zone)

PAIRS = [*CFG_PRESETS.values(), (0.5, 0.0), (0.0, 0.3), (0.2, 0.2), (0.1, 0.5), (0.6, 0.3)]


@pytest.mark.parametrize("r1, r2", PAIRS)
def test_redifine_eq7_9_constants_match_scipy_truncnorm(r1, r2):
    alpha, beta = norm.ppf(r1), norm.ppf(1 - r2)
    mean, var = truncnorm.stats(alpha, beta, moments="mv")
    c1, c2 = truncation_constants(r1, r2)
    assert c1 == pytest.approx(abs(float(mean)), rel=1e-9, abs=1e-12)
    assert c2 == pytest.approx(float(var), rel=1e-9)
    assert 0 < c2 < 1
    mu_sel, var_sel = truncated_normal_moments(1.5, 2.0, (r1, r2))
    assert mu_sel == pytest.approx(1.5 + 2.0 * float(mean), abs=1e-12)  # the sign as well
    assert var_sel == pytest.approx(4.0 * float(var), rel=1e-9)


def test_presets_follow_sec4_2_not_the_reversed_app_d22_list():
    assert CFG_PRESETS == {"cfg7.5": (0.95, 0.0002), "cfg2.5": (0.5, 0.09), "cfg1.0": (0.025, 0.675)}
    assert selection_ratios("cfg7.5") == (0.95, 0.0002)
    sigma_E = FIG4B_START["sigma_E"]
    shift = {k: asymptotic_mean_shift(k, sigma_E) for k in CFG_PRESETS}
    assert shift["cfg7.5"] > shift["cfg2.5"] > 0 > shift["cfg1.0"]
    assert shift["cfg2.5"] / shift["cfg7.5"] == pytest.approx(0.30, abs=0.01)  # paper-targets RDF-2


def test_no_selection_leaves_the_mean_unchanged():
    assert truncation_constants(0.0, 0.0) == pytest.approx((0.0, 1.0))
    rec = trait_recursion((0.0, 0.0), 5, mu0=0.3, sigma_G0=0.1, sigma_E=0.2)
    np.testing.assert_array_equal(rec.mean, 0.3)
    np.testing.assert_allclose(np.diff(rec.var_G), 0.2**2)  # sigma_G,t+1^2 = sigma_P,t^2 grows by sigma_E^2
    assert stationary_phenotypic_variance((0, 0), 0.2) == np.inf and asymptotic_mean_shift((0, 0), 0.2) == 0.0
    sim = simulate_population((0.0, 0.0), 4, mu0=0.3, sigma_G0=0.1, sigma_E=0.2, population=2000, runs=200, seed=1)
    assert np.all(sim.kept == 1.0)
    step = sim.shift.reshape(-1)
    assert abs(step.mean()) < 4 * step.std() / np.sqrt(step.size)


@pytest.mark.parametrize("selection", [*CFG_PRESETS, (0.2, 0.2), (0.3, 0.1), (0.1, 0.4)])
@pytest.mark.parametrize("sigma_M", [0.0, 0.1])
def test_thm1_recursion_reaches_the_closed_form_limits(selection, sigma_M):
    rec = trait_recursion(selection, 60, mu0=0.027, sigma_G0=0.056, sigma_E=0.25, sigma_M=sigma_M)
    assert rec.var_P[-1] == pytest.approx(stationary_phenotypic_variance(selection, 0.25), rel=1e-10)
    assert rec.shift[-1] == pytest.approx(asymptotic_mean_shift(selection, 0.25, sigma_M), rel=1e-9, abs=1e-15)
    r1, r2 = selection_ratios(selection)
    assert np.sign(rec.shift[-1]) == np.sign(r1 - r2)  # upward iff r1 > r2 (Theorem 1's erratum)


def test_thm1_closed_forms_against_the_formula_of_the_paper():
    c1, c2 = truncation_constants(0.95, 0.0002)
    assert stationary_phenotypic_variance("cfg7.5", 0.25) == pytest.approx(0.25**2 / (1 - c2))
    assert asymptotic_mean_shift("cfg7.5", 0.25) == pytest.approx(c1 * c2 * 0.25 / np.sqrt(1 - c2))
    assert asymptotic_mean_shift("cfg1.0", 0.25) == pytest.approx(
        -np.prod(truncation_constants(0.025, 0.675)) * 0.25 / np.sqrt(1 - truncation_constants(0.025, 0.675)[1]))


def test_redifine_eq12_variance_converges_geometrically():
    c1, c2 = truncation_constants(0.3, 0.1)
    rec = trait_recursion((0.3, 0.1), 8, mu0=0.0, sigma_G0=0.5, sigma_E=0.25)
    limit = stationary_phenotypic_variance((0.3, 0.1), 0.25)
    np.testing.assert_allclose(rec.var_P - limit, c2 ** np.arange(9) * (rec.var_P[0] - limit), rtol=1e-10)


def test_eq5_eq16_heritability_and_breeders_equation():
    assert heritability(0.03, 0.1) == pytest.approx(0.03 / 0.04)
    assert heritability(0.03, 0.1, 0.1) == pytest.approx(0.03 / 0.05)
    assert breeders_equation(1.0, 3.0, 0.25) == pytest.approx(1.5)


@pytest.mark.parametrize("name", list(CFG_PRESETS))
def test_simulated_mean_converges_to_the_recursion(name):
    rec = trait_recursion(name, 5, **FIG4B_START)
    sim = simulate_population(name, 5, **FIG4B_START, population=200_000, runs=3, seed=0)
    np.testing.assert_allclose(sim.mean.mean(0), rec.mean, atol=4e-3)
    np.testing.assert_allclose(sim.var_P.mean(0), rec.var_P, rtol=0.02)


def test_simulated_error_shrinks_as_the_population_grows():
    rec = trait_recursion("cfg7.5", 4, **FIG4B_START)
    err = [np.abs(simulate_population("cfg7.5", 4, **FIG4B_START, population=n, runs=20, seed=3).mean - rec.mean).mean()
           for n in (100, 10_000)]
    assert err[1] < err[0] / 3


def test_hard_truncation_keeps_the_middle_ranks():
    p = np.random.default_rng(0).normal(size=(3, 1000))
    keep = truncation_selection(p, (0.1, 0.25))
    assert np.all(keep.sum(-1) == 1000 - 100 - 250)
    ranks = p.argsort(-1).argsort(-1)
    np.testing.assert_array_equal(keep, (ranks >= 100) & (ranks < 750))
    keep_1d = truncation_selection(p[0], (0.1, 0.25))  # one population [N]
    np.testing.assert_array_equal(keep_1d, keep[0])
    low, high = truncation_zone(p, (0.1, 0.25))
    assert low.shape == (3,) and np.all(low < high)


def test_soft_selection_keeps_the_tail_with_exponential_probability():
    p = np.random.default_rng(1).normal(size=(4, 20_000))
    low, high = truncation_zone(p, (0.5, 0.1))
    prob = exponential_tail_keep_probability(p, low, high, 0.7, "phenotype")
    inside = (p >= low[:, None]) & (p <= high[:, None])
    assert np.all(prob[inside] == 1.0)
    d = np.maximum(low[:, None] - p, 0) + np.maximum(p - high[:, None], 0)
    np.testing.assert_allclose(prob, np.exp(-0.7 * d))
    # "sd" measures d in each run's standard deviations: invariant to rescaling the phenotype
    np.testing.assert_allclose(exponential_tail_keep_probability(5 * p, 5 * low, 5 * high, 0.7, "sd"),
                               exponential_tail_keep_probability(p, low, high, 0.7, "sd"))
    keep = truncation_selection(p, (0.5, 0.1), alpha=0.7, distance_unit="phenotype", rng=2)
    outside = ~inside
    hits = keep[outside].astype(float) - prob[outside]
    assert abs(hits.mean()) < 4 * hits.std() / np.sqrt(hits.size)
    assert np.all(truncation_selection(p, (0.5, 0.1), alpha=0.0, rng=0))  # alpha = 0 keeps everyone
    np.testing.assert_array_equal(truncation_selection(p, (0.5, 0.1), alpha=1e6, rng=0), inside)


@pytest.mark.parametrize("inheritance", ["gaussian", "resample"])
def test_offspring_follow_the_breeders_equation_and_the_selected_variance(inheritance):
    rng = np.random.default_rng(4)
    p = rng.normal(0.0, 1.0, size=(2, 100_000))
    keep = truncation_selection(p, (0.7, 0.1))
    g = breed_next_generation(p, keep, 0.5, inheritance=inheritance, rng=5)
    mu_sel = np.array([p[r][keep[r]].mean() for r in range(2)])
    var_sel = np.array([p[r][keep[r]].var(ddof=1) for r in range(2)])
    np.testing.assert_allclose(g.mean(-1), p.mean(-1) + 0.5 * (mu_sel - p.mean(-1)), atol=0.01)
    np.testing.assert_allclose(g.var(-1), var_sel, rtol=0.03)


def test_seed_gives_reproducible_runs_and_runs_lead():
    kw = dict(mu0=0.0, sigma_G0=0.1, sigma_E=0.2, population=500, runs=4, alpha=0.1, sigma_M=0.1)
    a = simulate_population("cfg2.5", 3, **kw, seed=7)
    b = simulate_population("cfg2.5", 3, **kw, seed=np.random.default_rng(7))
    np.testing.assert_array_equal(a.mean, b.mean)
    assert a.mean.shape == a.var_G.shape == a.var_P.shape == (4, 4) and a.kept.shape == (4, 3)


@pytest.mark.parametrize("call, match", [
    (lambda: truncation_constants(0.6, 0.4), r"r1 \+ r2 must be < 1"),
    (lambda: truncation_constants(-0.1, 0.2), "r1"),
    (lambda: truncation_constants(0.1, -0.2), "r2"),
    (lambda: selection_ratios("cfg3.0"), "selection must be one of"),
    (lambda: selection_ratios(0.5), r"selection must be a pair \(r1, r2\)"),
    (lambda: trait_recursion("cfg7.5", 3, mu0=0, sigma_G0=0.1, sigma_E=-0.2), "sigma_E"),
    (lambda: trait_recursion("cfg7.5", 3, mu0=0, sigma_G0=-0.1, sigma_E=0.2), "sigma_G0"),
    (lambda: trait_recursion("cfg7.5", 3, mu0=0, sigma_G0=0.1, sigma_E=0.2, sigma_M=-1), "sigma_M"),
    (lambda: trait_recursion("cfg7.5", -1, mu0=0, sigma_G0=0.1, sigma_E=0.2), "iterations"),
    (lambda: simulate_population("cfg2.5", 3, mu0=0, sigma_G0=0.1, sigma_E=0.2, population=1), "population"),
    (lambda: simulate_population("cfg7.5", 3, mu0=0, sigma_G0=0.1, sigma_E=0.2, population=20), "population = 20"),
    (lambda: simulate_population("cfg2.5", 3, mu0=0, sigma_G0=0.1, sigma_E=0.2, runs=0), "runs"),
    (lambda: simulate_population("cfg2.5", 3, mu0=0, sigma_G0=0.1, sigma_E=0.2, alpha=-1.0), "alpha"),
    (lambda: simulate_population("cfg2.5", 3, mu0=0, sigma_G0=0.1, sigma_E=0.2, distance_unit="px"), "distance_unit"),
    (lambda: simulate_population("cfg2.5", 3, mu0=0, sigma_G0=0.1, sigma_E=0.2, inheritance="clone"), "inheritance"),
    (lambda: heritability(-0.1, 0.2), "var_G"),
    (lambda: truncation_selection(np.zeros((2, 3, 4)), "cfg2.5"), "phenotypes"),
    (lambda: truncation_selection([1.0, np.nan, 2.0], (0.0, 0.0)), "phenotypes must be finite"),
    (lambda: breed_next_generation(np.zeros((2, 5)), np.ones((2, 4), bool), 0.5), "keep"),
    (lambda: breed_next_generation(np.zeros((2, 5)), np.zeros((2, 5), bool), 0.5), "at least 2"),
])
def test_bad_input_is_rejected_with_the_parameter_named(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call()
