"""SIMS's distance ratios against hand-computed values."""

import numpy as np
import pytest

from madlib.loops import bootstrap_runs, madness_ratios


def test_madness_ratios_of_a_known_sequence():
    scale = np.array([2.0, 3.0, 4.0, 4.0])  # E[dist(G_t)] = scale[t] * 1.5 for every run and weight
    dist = scale[:, None, None] * np.full((4, 2, 5), 1.5)
    curve, conv = madness_ratios(dist, conv_from=3)
    np.testing.assert_allclose(curve[:, 0], scale / 2.0)
    np.testing.assert_allclose(conv, [2.0, 2.0])  # mean of 4/2 and 4/2
    with pytest.raises(ValueError, match="conv_from <= generations"):
        madness_ratios(dist, conv_from=5)


def test_bootstrap_of_identical_runs_has_no_spread_and_of_distinct_runs_does():
    rng = np.random.default_rng(0)
    same = bootstrap_runs(lambda d: d.mean(-1), np.ones((3, 6)), draws=50, rng=rng)
    assert same.shape == (50, 3) and np.all(same == 1)
    spread = bootstrap_runs(lambda d: d.mean(-1), np.arange(6.0), draws=2000, rng=rng)
    assert spread.std() == pytest.approx(np.arange(6.0).std() / np.sqrt(6), rel=0.1)  # the s.e. of a mean
