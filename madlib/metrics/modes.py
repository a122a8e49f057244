"""Mode coverage and per-mode variance of samples from a known mixture (MAD App. B.2, Fig. 14-15).

Each sample belongs to the *cell* of its nearest mode centre. A sample is *high quality* when it lies
within ``radius_std`` (default 3) mode standard deviations of that centre (the convention of the
25-Gaussian GAN benchmarks). Mode m is *covered* when at least ``min_share * n / M`` of the n samples are
high-quality samples of its cell (default: a tenth of its share under equal weights). The *mode
variance* is the trace of the unbiased covariance of the samples in the cell (0 with fewer than 2),
and the average over all M modes is MAD Fig. 15's "average per-mode variance" (a lost mode counts 0).
Batched over runs by :func:`mode_statistics`; :func:`mode_coverage` is its one-run view.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from madlib._checks import check_interval

__all__ = ["ModeCoverage", "mode_coverage", "mode_statistics"]


@dataclass(frozen=True)
class ModeCoverage:
    covered: int  # number of covered modes
    n_modes: int
    covered_mask: np.ndarray  # [M] bool
    counts: np.ndarray  # [M] samples per cell
    mode_variance: np.ndarray  # [M] trace of the covariance of each cell's samples
    mean_mode_variance: float
    high_quality: float  # share of samples within radius_std * std of their nearest centre
    n: int


def mode_coverage(samples, means, std: float, *, radius_std: float = 3.0, min_share: float = 0.1) -> ModeCoverage:
    """Covered modes, per-mode variance and sample quality of samples [n, d] from a mixture with means [M, d].

    Args:
        samples: [n, d] points (e.g. a model's samples).
        means: [M, d] mode centres (e.g. ``grid_mixture().means``).
        std: standard deviation of each mode (e.g. ``grid_mixture().std``).
        radius_std: high-quality radius in units of ``std``.
        min_share: a mode is covered with at least ``min_share * n / M`` high-quality samples.
    """
    std = check_interval("std", std, 0.0, np.inf, low_open=True)
    radius_std = check_interval("radius_std", radius_std, 0.0, np.inf, low_open=True)
    x = np.asarray(samples.cpu() if hasattr(samples, "cpu") else samples, float)
    mu = np.asarray(means.cpu() if hasattr(means, "cpu") else means, float)
    if x.ndim != 2 or mu.ndim != 2 or x.shape[1] != mu.shape[1]:
        raise ValueError(f"samples must be [n, d] and means [M, d]; got {x.shape} and {mu.shape}")
    stats = {k: v[0] for k, v in mode_statistics(x[None], mu, radius_std * std, min_share=min_share).items()}
    return ModeCoverage(covered=int(stats["covered"]), n_modes=mu.shape[0], covered_mask=stats["covered_mask"],
                        counts=stats["counts"].astype(int), mode_variance=stats["mode_variance"],
                        mean_mode_variance=float(stats["mean_mode_variance"]),
                        high_quality=float(stats["high_quality"]), n=x.shape[0])


def mode_statistics(points, centres, radius: float, *, min_share: float = 0.1) -> dict[str, np.ndarray]:
    """Which modes of a known mixture the samples cover, and the variance within each mode.

    Each point belongs to the cell of its nearest centre. Mode m is *covered* when at least
    ``min_share * n / M`` of the n points lie in its cell within ``radius`` of its centre (a tenth of its
    share under equal weights, by default). The *mode variance* is the trace of the covariance of the
    points of its cell, 0 for a cell with fewer than 2 points (a lost mode has no spread).

    Args:
        points: [R, n, d] samples of each run's model.
        centres: [M, d] the modes of P_r.
        radius: distance from a centre within which a point counts for coverage (e.g. 3 std of a mode).

    Returns:
        ``covered`` [R] (number of covered modes), ``covered_mask`` [R, M], ``mode_variance`` [R, M], ``counts`` [R, M],
        ``mean_mode_variance`` [R] (average over all M modes), ``high_quality`` [R] (share of points within
        ``radius`` of their nearest centre).
    """
    points = np.asarray(points, float)
    centres = np.asarray(centres, float)
    if points.ndim != 3 or centres.ndim != 2 or points.shape[-1] != centres.shape[-1]:
        raise ValueError(f"points must be [R, n, d] and centres [M, d]; got {points.shape} and {centres.shape}")
    radius = check_interval("radius", radius, 0.0, np.inf, low_open=True)
    min_share = check_interval("min_share", min_share, 0.0, 1.0)
    R, n, d = points.shape
    M = centres.shape[0]
    d2 = ((points[:, :, None, :] - centres) ** 2).sum(-1)  # [R, n, M]
    cell = d2.argmin(-1)  # [R, n]
    near = np.take_along_axis(d2, cell[..., None], -1)[..., 0] <= radius**2  # [R, n]
    onehot = (cell[..., None] == np.arange(M)).astype(float)  # [R, n, M]
    hits = (onehot * near[..., None]).sum(1)  # [R, M]
    covered_mask = hits >= min_share * n / M
    count = onehot.sum(1)  # [R, M]
    safe = np.maximum(count, 1.0)
    mean = np.einsum("rnm,rnd->rmd", onehot, points) / safe[..., None]
    sq = np.einsum("rnm,rn->rm", onehot, (points**2).sum(-1)) / safe
    var = np.where(count >= 2, (sq - (mean**2).sum(-1)) * count / np.maximum(count - 1, 1.0), 0.0)
    var = np.maximum(var, 0.0)
    return {"covered": covered_mask.sum(-1), "covered_mask": covered_mask, "mode_variance": var, "counts": count,
            "mean_mode_variance": var.mean(-1), "high_quality": near.mean(-1)}
