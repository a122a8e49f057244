"""Distances between samples: Fréchet distance of features (FID), empirical and Gaussian W2, collapse rate.

References:
[1] M. Heusel, H. Ramsauer, T. Unterthiner, B. Nessler, S. Hochreiter, "GANs Trained by a Two Time-Scale
    Update Rule Converge to a Local Nash Equilibrium", NeurIPS 2017 (FID), Eq. 6.
[2] D. C. Dowson, B. V. Landau, "The Fréchet distance between multivariate normal distributions",
    J. Multivariate Anal. 1982 (the Gaussian closed form, :func:`madlib.theory.gaussian.w2_gaussian`).
[3] R. Flamary et al., "POT: Python Optimal Transport", JMLR 2021 (``ot.emd2``, exact network simplex).
[4] ReDiFine (``../shared/papers/003_8ee2c13a5868339c.txt``), Sec. 3, Eq. 3 (collapse rate).
[5] M. Bińkowski, D. J. Sutherland, M. Arbel, A. Gretton, "Demystifying MMD GANs", ICLR 2018, Eq. 3-4
    (KID: the unbiased squared MMD with k(x, y) = (x.y / d + 1)^3).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from madlib._checks import check_int
from madlib.theory.gaussian import w2_gaussian

__all__ = ["FrechetDistance", "W2Distance", "feature_statistics", "frechet_distance", "w2_empirical",
           "w2_gaussian", "collapse_rate", "kid", "fid_to_reference", "total_variation",
           "polynomial_kernel_sum"]


@dataclass(frozen=True)
class FrechetDistance:
    """``float(result)`` is the distance; n_a, n_b: sample sizes; dim: feature dimension."""

    value: float
    n_a: int
    n_b: int
    dim: int

    def __float__(self) -> float:
        return self.value


@dataclass(frozen=True)
class W2Distance:
    """``float(result)`` is the distance (W2, or W2^2 if ``squared``); n_a, n_b: sample sizes."""

    value: float
    n_a: int
    n_b: int
    squared: bool

    def __float__(self) -> float:
        return self.value


def _features(name: str, x) -> torch.Tensor:
    x = torch.as_tensor(x)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"{name} must be a [n, d] array with n >= 2; got shape {tuple(x.shape)}")
    return x.double()


def feature_statistics(features) -> tuple[np.ndarray, np.ndarray]:
    """Mean [d] and unbiased covariance [d, d] (divisor n - 1, as ``np.cov``) of features [n, d].

    Computed in float64 on the features' device, returned as numpy arrays.
    """
    x = _features("features", features)
    mu = x.mean(0)
    dev = x - mu
    cov = dev.T @ dev / (x.shape[0] - 1)  # [d, d]
    return mu.cpu().numpy(), cov.cpu().numpy()


def frechet_distance(features_a, features_b) -> FrechetDistance:
    """Fréchet distance between Gaussians fitted to two feature sets (FID when the features are a network's) [1].

    d^2 = |mu_a - mu_b|^2 + tr(S_a) + tr(S_b) - 2 tr((S_b^1/2 S_a S_b^1/2)^1/2),
    with mu, S the sample mean and unbiased covariance; this is the squared Gaussian W2 of [2], computed by
    :func:`madlib.theory.gaussian.w2_gaussian` (an eigendecomposition, stable for singular S).
    Like FID, the value is the *squared* distance.

    Args:
        features_a: [n_a, d]; features_b: [n_b, d] (torch tensors or arrays).

    Returns:
        :class:`FrechetDistance` (value, n_a, n_b, dim); ``float()`` gives the value.
    """
    a, b = _features("features_a", features_a), _features("features_b", features_b)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"features_a and features_b must have the same dimension; got {a.shape[1]} and {b.shape[1]}")
    mu_a, cov_a = feature_statistics(a)
    mu_b, cov_b = feature_statistics(b)
    value = float(w2_gaussian(mu_a, cov_a, mu_b, cov_b, squared=True))
    return FrechetDistance(value, a.shape[0], b.shape[0], a.shape[1])


def w2_empirical(x, y, *, squared: bool = False, num_iter_max: int = 10_000_000) -> W2Distance:
    """Exact Wasserstein-2 distance between two point clouds with uniform weights [3].

    W2^2 = min_{P in U(a, b)} sum_ij P_ij |x_i - y_j|^2, a = 1/n, b = 1/m, solved exactly by
    ``ot.emd2`` (network simplex) on the squared Euclidean cost; W2 = sqrt(W2^2). Cost O(n m) memory
    and roughly O(n^3) time: meant for up to a few thousand points.

    Args:
        x: [n, d]; y: [m, d]; squared: return W2^2 instead of W2.
        num_iter_max: simplex iteration cap (POT's default 1e5 is too small beyond ~1000 points).

    Returns:
        :class:`W2Distance`.
    """
    import ot  # POT, the metrics extra; imported here because `import ot` takes seconds

    xa = torch.as_tensor(x).double().cpu().numpy()
    ya = torch.as_tensor(y).double().cpu().numpy()
    if xa.ndim != 2 or ya.ndim != 2 or xa.shape[1] != ya.shape[1]:
        raise ValueError(f"x and y must be [n, d] and [m, d] with the same d; got {xa.shape} and {ya.shape}")
    cost = ot.dist(xa, ya, metric="sqeuclidean")  # [n, m]
    a = np.full(xa.shape[0], 1.0 / xa.shape[0])
    b = np.full(ya.shape[0], 1.0 / ya.shape[0])
    w2_sq = max(float(ot.emd2(a, b, cost, numItermax=check_int("num_iter_max", num_iter_max, minimum=1))), 0.0)
    return W2Distance(w2_sq if squared else float(np.sqrt(w2_sq)), xa.shape[0], ya.shape[0], squared)


def collapse_rate(fids) -> float:
    """ReDiFine's collapse rate (Eq. 3): (FID_K - FID_1) / (K - 1) for FID_1..FID_K of a chain [4].

    Args:
        fids: [K] FID of iterations 1..K against the original set (K >= 2), in order.
    """
    fids = np.asarray(fids, dtype=float)
    if fids.ndim != 1 or fids.shape[0] < 2:
        raise ValueError(f"fids must hold FID_1..FID_K with K >= 2; got shape {fids.shape}")
    return float((fids[-1] - fids[0]) / (fids.shape[0] - 1))


def total_variation(p, q) -> np.ndarray:
    """Total variation 1/2 sum_i |p_i - q_i| between histograms along the last axis (e.g. class shares [..., classes])."""
    return 0.5 * np.abs(np.asarray(p, float) - np.asarray(q, float)).sum(-1)


def fid_to_reference(features, mu_ref: np.ndarray, cov_ref: np.ndarray) -> float:
    """Fréchet distance of features [n, d] to a reference given by its mean [d] and covariance [d, d] (FID, Eq. 6
    of Heusel et al. 2017): |mu - mu_ref|^2 + tr(C + C_ref - 2 (C C_ref)^(1/2)). Fast enough to bootstrap."""
    x = np.asarray(features, float)
    mu, cov = x.mean(0), np.cov(x, rowvar=False)
    return float(w2_gaussian(mu, cov, mu_ref, cov_ref, squared=True))


def polynomial_kernel_sum(x, y=None, *, rows: int = 1024) -> float:
    """sum_ij (x_i . y_j / d + 1)^3 over x [m, d] and y [n, d] (KID's kernel), in row blocks so that 10^4 real
    images never build a 10^4 x 10^4 matrix; with ``y`` None, the sum over i != j of x with itself."""
    x = np.asarray(x, float)
    other = x if y is None else np.asarray(y, float)
    d, total = x.shape[1], 0.0
    for start in range(0, len(x), rows):
        rows_x = x[start:start + rows]
        total += ((rows_x @ other.T / d + 1) ** 3).sum()  # [rows, n] summed
        if y is None:  # leave out i = j
            total -= ((np.einsum("ij,ij->i", rows_x, rows_x) / d + 1) ** 3).sum()
    return float(total)


def kid(real_features, fake_features) -> float:
    """Unbiased squared MMD with the cubic polynomial kernel k(x, y) = (x.y / d + 1)^3 over all pairs (KID) [5].

    real_features [m, d], fake_features [n, d] (m, n >= 2). Unbiased: the within-set sums leave out i = j, so
    two sets from one distribution read 0 on average whatever their sizes. Computed in float64.
    """
    x, y = np.asarray(real_features, float), np.asarray(fake_features, float)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1] or min(len(x), len(y)) < 2:
        raise ValueError(f"real_features and fake_features must be [m, d] and [n, d] with m, n >= 2; got "
                         f"{x.shape} and {y.shape}")
    m, n = len(x), len(y)
    return (polynomial_kernel_sum(x) / (m * (m - 1)) + polynomial_kernel_sum(y) / (n * (n - 1))
            - 2 * polynomial_kernel_sum(x, y) / (m * n))
