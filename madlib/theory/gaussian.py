"""Gaussian closed forms and exact-statistics Monte Carlo for the MAD loops.

Reference: Alemohammad et al., "Self-Consuming Generative Models Go MAD" (ICLR 2024),
Sec. 3.1, Eq. 1-2 and App. A (``../shared/papers/001_95093755c443ee8d.txt``, lines 143-159, 341-349).

Batch convention: independent runs lead, ``mean [R, d]``, ``cov [R, d, d]``.
A sample of n points is represented by its sufficient statistics (n, sample mean, scatter
matrix), which are drawn exactly, so the cost of a generation does not grow with n.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import digamma

from madlib._checks import check_int, check_interval

__all__ = [
    "GaussianStats",
    "psd_factor",
    "psd_sqrt",
    "w2_gaussian",
    "gaussian_stats",
    "sample_gaussian_stats",
    "sample_gaussian_points",
    "pool_gaussian_stats",
    "fit_gaussian",
    "expected_trace_ratio",
    "expected_mean_drift_sq",
    "trace_relative_variance_bound",
    "mean_drift_sq_variance_bound",
    "expected_log_variance_ratio_1d",
]


@dataclass(frozen=True)
class GaussianStats:
    """Sufficient statistics of R independent samples of n points each.

    n: points per sample (the same for every run); mean: [R, d] sample means;
    scatter: [R, d, d] sums of outer products of deviations from the sample mean.
    """

    n: int
    mean: np.ndarray
    scatter: np.ndarray


def psd_factor(cov: np.ndarray) -> np.ndarray:
    """A matrix L with L L^T = cov for a batch [..., d, d] of PSD matrices.

    Cholesky when every matrix is positive definite, else the symmetric square root
    (a collapsed covariance of the loop can be singular).
    """
    try:
        return np.linalg.cholesky(cov)
    except np.linalg.LinAlgError:
        return psd_sqrt(cov)


def psd_sqrt(cov: np.ndarray) -> np.ndarray:
    """Symmetric square root of a batch [..., d, d] of PSD matrices (eigenvalues clipped at 0)."""
    w, v = np.linalg.eigh(cov)
    return (v * np.sqrt(np.clip(w, 0.0, None))[..., None, :]) @ np.swapaxes(v, -1, -2)


def w2_gaussian(mu1, cov1, mu2, cov2, *, squared: bool = False) -> np.ndarray:
    """Wasserstein-2 distance between N(mu1, cov1) and N(mu2, cov2), batched over leading axes.

    W2^2 = |mu1 - mu2|^2 + tr(cov1) + tr(cov2) - 2 tr((cov2^1/2 cov1 cov2^1/2)^1/2)
    (Dowson & Landau 1982; Givens & Shortt 1984; the distance MAD Sec. 2.4 approximates by FID).

    mu1, mu2: [..., d]; cov1, cov2: [..., d, d] (broadcastable). Returns [...] (W2, or W2^2 if
    ``squared``).
    """
    mu1, mu2 = np.asarray(mu1, float), np.asarray(mu2, float)
    cov1, cov2 = np.asarray(cov1, float), np.asarray(cov2, float)
    root2 = psd_sqrt(cov2)
    cross = np.linalg.eigvalsh(root2 @ cov1 @ root2)  # [..., d]
    trace_term = np.trace(cov1, axis1=-2, axis2=-1) + np.trace(cov2, axis1=-2, axis2=-1)
    w2_sq = np.sum((mu1 - mu2) ** 2, axis=-1) + trace_term - 2.0 * np.sqrt(np.clip(cross, 0, None)).sum(-1)
    w2_sq = np.clip(w2_sq, 0.0, None)  # round-off can leave -1e-16
    return w2_sq if squared else np.sqrt(w2_sq)


def gaussian_stats(x: np.ndarray) -> GaussianStats:
    """Sufficient statistics of points x [R, n, d]."""
    x = np.asarray(x, float)
    mean = x.mean(axis=1)
    dev = x - mean[:, None, :]
    return GaussianStats(n=x.shape[1], mean=mean, scatter=np.einsum("rni,rnj->rij", dev, dev))


def _standard_wishart(runs: int, dim: int, df: int, rng: np.random.Generator) -> np.ndarray:
    """W ~ Wishart_d(I, df) for R runs, [R, d, d].

    Bartlett decomposition W = A A^T (A lower triangular, A_ii^2 ~ chi2(df - i), A_ij ~ N(0, 1))
    when df >= d; otherwise the singular Wishart Z^T Z of a [df, d] standard normal matrix.
    """
    if df >= dim:
        a = np.tril(rng.standard_normal((runs, dim, dim)), k=-1)
        diag = np.sqrt(rng.chisquare(df - np.arange(dim), size=(runs, dim)))
        idx = np.arange(dim)
        a[:, idx, idx] = diag
        return a @ np.swapaxes(a, -1, -2)
    z = rng.standard_normal((runs, df, dim))
    return np.swapaxes(z, -1, -2) @ z


def sample_gaussian_stats(mean, cov, n: int, lam: float, rng: np.random.Generator) -> GaussianStats:
    """Exact sufficient statistics of n points drawn from N(mean, lam * cov), per run.

    MAD Eq. 1-2: the sample mean is N(mean, lam cov / n) and the scatter matrix is
    Wishart_d(lam cov, n - 1), independent of each other. mean [R, d], cov [R, d, d].
    """
    n = check_int("n", n, minimum=2, why="the covariance needs two points")
    lam = check_interval("lam", lam, 0.0, 1.0, low_open=True)
    mean, cov = np.asarray(mean, float), np.asarray(cov, float)
    runs, dim = mean.shape
    factor = psd_factor(lam * cov)  # [R, d, d]
    z = rng.standard_normal((runs, dim, 1))
    sample_mean = mean + (factor @ z)[..., 0] / np.sqrt(n)
    wishart = _standard_wishart(runs, dim, n - 1, rng)
    scatter = factor @ wishart @ np.swapaxes(factor, -1, -2)
    return GaussianStats(n=n, mean=sample_mean, scatter=scatter)


def sample_gaussian_points(mean, cov, n: int, lam: float, rng: np.random.Generator) -> np.ndarray:
    """n points per run from N(mean, lam * cov): [R, n, d]. The naive reference to the above."""
    n = check_int("n", n, minimum=1)
    lam = check_interval("lam", lam, 0.0, 1.0, low_open=True)
    mean, cov = np.asarray(mean, float), np.asarray(cov, float)
    factor = psd_factor(lam * cov)
    z = rng.standard_normal((mean.shape[0], n, mean.shape[1]))
    return mean[:, None, :] + z @ np.swapaxes(factor, -1, -2)


def pool_gaussian_stats(parts) -> GaussianStats:
    """Statistics of the union of several samples (pairwise update, Chan et al. 1979)."""
    parts = list(parts)
    if not parts:
        raise ValueError("parts must hold at least one GaussianStats")
    n, mean, scatter = parts[0].n, parts[0].mean, parts[0].scatter
    for p in parts[1:]:
        total = n + p.n
        delta = p.mean - mean  # [R, d]
        scatter = scatter + p.scatter + (n * p.n / total) * delta[:, :, None] * delta[:, None, :]
        mean = mean + delta * (p.n / total)
        n = total
    return GaussianStats(n=n, mean=mean, scatter=scatter)


def fit_gaussian(stats: GaussianStats) -> tuple[np.ndarray, np.ndarray]:
    """Sample mean and unbiased covariance, scatter / (n - 1) (MAD Eq. 1)."""
    if stats.n < 2:
        raise ValueError(f"fitting a covariance needs n >= 2 points; got n = {stats.n}")
    return stats.mean, stats.scatter / (stats.n - 1)


# Closed forms of the fully synthetic loop started at G^0 = P_r = N(mu_0, Sigma_0).

def expected_trace_ratio(lam: float, t) -> np.ndarray:
    """E[tr Sigma_t] / tr Sigma_0 = lam^t (MAD Eq. 2 iterated)."""
    return float(lam) ** np.asarray(t, float)


def expected_mean_drift_sq(trace0: float, n_s: int, lam: float, t) -> np.ndarray:
    """E|mu_t - mu_0|^2 = tr(Sigma_0) / n_s * sum_{s=1..t} lam^s (from MAD Eq. 1-2).

    Each step adds lam tr(Sigma_{s-1}) / n_s of variance and E tr Sigma_{s-1} = lam^(s-1) tr Sigma_0.
    For lam = 1 it grows like t / n_s (a random walk); for lam < 1 it levels off at
    tr Sigma_0 lam / (n_s (1 - lam)).
    """
    t = np.asarray(t, float)
    lam = float(lam)
    geometric = t if lam == 1.0 else lam * (1.0 - lam ** t) / (1.0 - lam)
    return trace0 / n_s * geometric


def trace_relative_variance_bound(n_s: int, t) -> np.ndarray:
    """Upper bound on Var[tr Sigma_t] / E[tr Sigma_t]^2: (1 + 2 / (n_s - 1))^t - 1.

    From E[(tr Sigma_t)^2 | Sigma_{t-1}] = lam^2 ((tr Sigma)^2 + 2 tr(Sigma^2) / (n_s - 1)) and
    tr(Sigma^2) <= (tr Sigma)^2; equality for d = 1. Gives a Monte Carlo error bar that does not
    rely on the heavy-tailed sample variance.
    """
    return (1.0 + 2.0 / (n_s - 1)) ** np.asarray(t, float) - 1.0


def mean_drift_sq_variance_bound(trace0: float, n_s: int, lam: float, t) -> np.ndarray:
    """Upper bound on Var|mu_t - mu_0|^2, for an error bar robust to the heavy tail at lam = 1.

    Given the covariance path, mu_t - mu_0 ~ N(0, V_t) with tr V_t = lam / n_s sum_{s<=t} tr Sigma_{s-1},
    so E|mu_t - mu_0|^4 = E[(tr V)^2 + 2 tr V^2] <= 3 E[(tr V)^2], and Minkowski's inequality with
    :func:`trace_relative_variance_bound` bounds E[(tr V)^2]^(1/2) by
    lam tr Sigma_0 / n_s * sum_{s=1..t} lam^(s-1) (1 + 2 / (n_s - 1))^((s-1)/2).
    """
    out = []
    for ti in np.atleast_1d(np.asarray(t, int)):
        s = np.arange(ti)
        root = lam * trace0 / n_s * np.sum(lam ** s * (1.0 + 2.0 / (n_s - 1)) ** (s / 2.0))
        out.append(3.0 * root ** 2 - expected_mean_drift_sq(trace0, n_s, lam, ti) ** 2)
    return np.asarray(out).reshape(np.shape(t))


def expected_log_variance_ratio_1d(n_s: int, lam: float, t) -> np.ndarray:
    """E[log(sigma_t^2 / sigma_0^2)] for d = 1: t (log lam + psi((n_s-1)/2) - log((n_s-1)/2)).

    Negative for every lam <= 1, so the median variance decays geometrically even though
    E[sigma_t^2] = sigma_0^2 at lam = 1: the collapse of MAD's Proposition (App. A).
    """
    k = (n_s - 1) / 2.0
    return np.asarray(t, float) * (np.log(lam) + digamma(k) - np.log(k))
