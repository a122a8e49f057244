"""The multivariate Gaussian model family of MAD Sec. 3.1, batched over independent runs.

Fit = sample mean and unbiased covariance (MAD Eq. 1); sampling bias lambda = N(mu, lambda Sigma)
(MAD Sec. 2.3). Two interchangeable data representations:

- ``exact=True`` (default): a sample is its sufficient statistics drawn exactly
  (:func:`madlib.theory.gaussian.sample_gaussian_stats`); cost independent of the sample size.
- ``exact=False``: the naive reference, which draws the points [R, n, d] and fits them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from madlib._checks import check_covariance, check_int
from madlib.theory.gaussian import (
    GaussianStats,
    fit_gaussian,
    gaussian_stats,
    pool_gaussian_stats,
    sample_gaussian_points,
    sample_gaussian_stats,
    w2_gaussian,
)


@dataclass(frozen=True)
class GaussianModel:
    """R fitted Gaussians: mean [R, d], cov [R, d, d]."""

    mean: np.ndarray
    cov: np.ndarray


class GaussianFamily:
    """Gaussian model family for :func:`madlib.loops.run_loop` with P_r = N(mean, cov).

    Args:
        mean: [d] mean of the reference distribution P_r.
        cov: [d, d] positive-definite covariance of P_r.
        runs: number of independent loops simulated together (R).
        exact: draw sufficient statistics exactly (fast) or draw the points (naive reference).
    """

    def __init__(self, mean, cov, runs: int, *, exact: bool = True):
        mean = np.atleast_1d(np.asarray(mean, float))
        if mean.ndim != 1 or mean.shape[0] < 1:
            raise ValueError(f"mean must be a vector of dimension d >= 1; got shape {mean.shape}")
        self.mean = mean
        self.cov = check_covariance("cov", np.atleast_2d(cov), dim=mean.shape[0])
        self.runs = check_int("runs", runs, minimum=1)
        self.exact = bool(exact)

    @property
    def dim(self) -> int:
        return self.mean.shape[0]

    def fingerprint(self) -> str:
        """Identifies P_r, the number of runs and the representation (for checkpoints)."""
        digest = hashlib.sha256(self.mean.tobytes() + self.cov.tobytes()).hexdigest()[:16]
        return f"GaussianFamily(d={self.dim}, runs={self.runs}, exact={self.exact}, P_r={digest})"

    def true_model(self) -> GaussianModel:
        return GaussianModel(np.broadcast_to(self.mean, (self.runs, self.dim)).copy(),
                             np.broadcast_to(self.cov, (self.runs, self.dim, self.dim)).copy())

    def sample(self, model: GaussianModel, n: int, lam: float, rng: np.random.Generator):
        if self.exact:
            return sample_gaussian_stats(model.mean, model.cov, n, lam, rng)
        return sample_gaussian_points(model.mean, model.cov, n, lam, rng)

    def draw_real(self, n: int, rng: np.random.Generator):
        return self.sample(self.true_model(), n, 1.0, rng)

    def concat(self, parts):
        parts = list(parts)
        if self.exact:
            return pool_gaussian_stats(parts)
        return np.concatenate(parts, axis=1)

    def fit(self, data) -> GaussianModel:
        stats = data if isinstance(data, GaussianStats) else gaussian_stats(data)
        mean, cov = fit_gaussian(stats)
        return GaussianModel(mean, cov)

    def summary(self, model: GaussianModel) -> dict[str, np.ndarray]:
        """Per-run records of one generation: mean [R, d], tr_cov [R], w2 to P_r [R]."""
        return {
            "mean": model.mean,
            "tr_cov": np.trace(model.cov, axis1=-2, axis2=-1),
            "w2": w2_gaussian(model.mean, model.cov, self.mean, self.cov),
        }
